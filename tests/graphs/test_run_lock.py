"""Two `distill graph` processes on one run: the second is refused with one line while the first lives, and a
resume after the first was killed (kill -9) goes ahead."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from tests.fake_openai import FakeTeacher

pytestmark = pytest.mark.slow


def test_a_second_process_on_a_running_run_is_refused(tmp_path, sample_dir):
    with FakeTeacher() as teacher:
        teacher.hold.set()  # the first process's requests hang until released
        reasoner = {"backend": "openai", "base_url": teacher.url, "model": "fake", "max_retries": 0, "timeout_s": 120}
        cfg = {
            "db": str(tmp_path / "t.db"),
            "data": {"train": [str(sample_dir / "image2text_train.json")]},
            "teacher": {"reasoner": reasoner, "limit": 4, "max_attempts": 1, "min_words": 1, "concurrency": 2},
        }
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        cmd = [sys.executable, "-m", "distill.cli", "graph", "-c", str(tmp_path / "r.yaml")]

        def distill(*args):
            return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, timeout=300)

        first = subprocess.Popen(cmd + ["--run-id", "r1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            deadline = time.time() + 120
            while teacher.requests == 0 and first.poll() is None and time.time() < deadline:
                time.sleep(0.1)
            assert teacher.requests > 0, first.stderr.read().decode()[-2000:] if first.poll() is not None else ""
            for second in (distill("--resume", "r1"), distill("--run-id", "r1")):
                assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr[-2000:]
                errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
                assert len(errors) == 1 and "run 'r1' is in progress in another process" in errors[0], second.stderr
                assert f"pid {first.pid}" in errors[0]
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        teacher.hold.clear()
        resumed = distill("--resume", "r1")  # the killed holder's lock went with it
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "IntegrityError" not in resumed.stderr and "Traceback" not in resumed.stderr
    with sqlite3.connect(tmp_path / "t.db") as con:
        counts = con.execute("select count(*), count(distinct item_key) from item_runs where run_id = 'r1'")
        assert counts.fetchone() == (4, 4)
        assert con.execute("select status, invocations from runs where id = 'r1'").fetchone() == ("done", 2)
