"""kill -9 in the middle of `distill graph`, then --resume: every item exactly once, the file intact."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_kill_and_resume(tmp_path, sample_dir, tiny_model_dir):
    db = tmp_path / "traces.db"
    model = {
        "backend": "transformers",
        "model": str(tiny_model_dir),
        "max_pixels": 50176,
        "structured": "choice",
        "concurrency": 2,
    }
    cfg = {
        "workdir": str(tmp_path),
        "db": str(db),
        "data": {
            "train": [str(sample_dir / "image2text_train.json"), str(sample_dir / "text2image_train.json")],
            "validation_fraction": 0.1,
        },
        "teacher": {
            "reasoner": model,
            "max_attempts": 2,
            "max_new_tokens": 16,
            "describe_tokens": 8,
            "min_words": 1,
            "concurrency": 2,
            "limit": 20,
        },
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "distill.cli", "graph", "-c", str(tmp_path / "cfg.yaml")]
    proc = subprocess.Popen(cmd + ["--run-id", "r1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as con:
                    done = con.execute("select count(*) from item_runs").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= 3:
                break
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as con:
        before = con.execute("select count(*) from item_runs").fetchone()[0]
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert 3 <= before < 20

    res = subprocess.run(cmd + ["--resume", "r1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{before} items already done" in " ".join(res.stderr.split())

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("select count(*), count(distinct item_key) from item_runs where run_id='r1'").fetchone() == (
        20,
        20,
    )
    dupes = con.execute("""select item_key, item_attempt, sample, attempt, count(*) from traces where run_id='r1'
                           group by 1, 2, 3, 4 having count(*) > 1""").fetchall()
    assert dupes == []
    # every item has the traces of exactly one finished attempt: the one item_runs names
    per_item = dict(
        con.execute("""select t.item_key, count(distinct t.item_attempt) from traces t join item_runs r
                                   on r.run_id = t.run_id and r.item_key = t.item_key
                                   where t.run_id='r1' and t.item_attempt = r.attempts group by 1""").fetchall()
    )
    assert len(per_item) == 20 and set(per_item.values()) == {1}
    assert con.execute("select status, invocations from runs where id='r1'").fetchone() == ("done", 2)
