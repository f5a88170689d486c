"""`teacher.workers`: several processes share one run, each on items of its own; every item is done exactly once, and
a run killed with its workers resumes without duplicates."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agents.settings import TeacherConfig
from distill.data.items import Item
from graphs.workers import shards, worker_settings
from tests.fake_openai import FakeTeacher


def _items(n: int) -> list[Item]:
    return [Item(id=f"i{k}", task="image2text", system="", input="A. a\nB. b", options=[], images=[]) for k in range(n)]


def test_item_k_goes_to_worker_k_mod_n():
    items = _items(7)
    parts = shards(items, 3)
    assert [[it.id for it in part] for part in parts] == [["i0", "i3", "i6"], ["i1", "i4"], ["i2", "i5"]]
    assert len(shards(items[:2], 4)) == 2  # never an idle worker


def test_workers_share_the_runs_limits_on_what_is_in_flight():
    server = {"backend": "openai", "base_url": "http://x/v1", "model": "m", "concurrency": 64}
    local = {"backend": "transformers", "model": "m", "concurrency": 8}
    share = worker_settings(TeacherConfig(reasoner=server, describer=local, concurrency=30, workers=4), 4)
    assert (share.concurrency, share.reasoner.concurrency, share.workers) == (8, 16, 1)
    assert share.describer.concurrency == 8  # an in-process model's batch is its own


def _recipe(tmp_path: Path, sample_dir: Path, url: str, limit: int) -> Path:
    reasoner = {"backend": "openai", "base_url": url, "model": "fake", "max_retries": 0, "timeout_s": 120}
    cfg = {
        "db": str(tmp_path / "t.db"),
        "data": {"train": [str(sample_dir / "image2text_train.json"), str(sample_dir / "text2image_train.json")]},
        "teacher": {"reasoner": reasoner, "limit": limit, "max_attempts": 1, "min_words": 1, "concurrency": 4},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "r.yaml"


def _graph(recipe: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "distill.cli", "graph", "-c", str(recipe), "--workers", "2", *args]


def _workers_of(pid: int) -> list[int]:
    """The live worker processes `pid` started (multiprocessing's spawned children)."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
            cmdline = (d / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in cmdline:
            found.append(int(d.name))
    return found


def _wait(what, timeout: float = 120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def _finished(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("select count(*) from item_runs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _assert_each_item_once(db: Path, n: int) -> None:
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("select count(*), count(distinct item_key) from item_runs").fetchone() == (n, n)
        dupes = con.execute(
            "select item_key, item_attempt, sample, attempt from traces group by 1, 2, 3, 4 having count(*) > 1"
        ).fetchall()
        assert dupes == []
        current = con.execute(
            "select count(distinct t.item_key) from traces t join item_runs r on r.run_id = t.run_id and "
            "r.item_key = t.item_key and t.item_attempt = r.attempts"
        ).fetchone()[0]
        assert current == n
        assert con.execute("select status from runs").fetchone() == ("done",)


@pytest.mark.slow
def test_two_workers_do_every_item_exactly_once(tmp_path, sample_dir):
    with FakeTeacher() as teacher:
        teacher.hold.set()  # the requests wait until both workers are seen
        recipe = _recipe(tmp_path, sample_dir, teacher.url, 24)
        proc = subprocess.Popen(_graph(recipe, "--run-id", "r1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            workers = _wait(lambda: len(_workers_of(proc.pid)) == 2 and teacher.requests >= 2)
            assert workers
            teacher.hold.clear()
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    _assert_each_item_once(tmp_path / "t.db", 24)
    out, err = out.decode(), err.decode()
    assert out.count("run r1") == 1 and "items accepted" in out  # one summary for the whole run
    assert "teacher graph: 24/24 items" in err.splitlines()[-1]  # one progress for the whole run


@pytest.mark.slow
def test_a_killed_run_with_workers_resumes_without_duplicates(tmp_path, sample_dir):
    db = tmp_path / "t.db"
    with FakeTeacher() as teacher:
        teacher.hold.set()
        recipe = _recipe(tmp_path, sample_dir, teacher.url, 40)
        proc = subprocess.Popen(_graph(recipe, "--run-id", "r1"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            workers = _wait(lambda: len(_workers_of(proc.pid)) == 2 and _workers_of(proc.pid))
            teacher.hold.clear()
            _wait(lambda: _finished(db) >= 3)
            teacher.hold.set()  # the rest wait: the run is killed in the middle
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
        # the workers ended with the process that held the run's lock
        _wait(lambda: not any(_alive(pid) for pid in workers), timeout=10)
        before = _finished(db)
        assert 3 <= before < 40
        teacher.hold.clear()
        resumed = subprocess.run(_graph(recipe, "--resume", "r1"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{before} items already done" in " ".join(resumed.stderr.split())
    _assert_each_item_once(db, 40)
    with sqlite3.connect(db) as con:
        assert con.execute("select invocations from runs where id = 'r1'").fetchone() == (2,)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
