"""One process at a time works on a teacher run; a holder that dies (kill -9 included) leaves the run free."""

import os
import signal
import subprocess
import sys

import pytest

from store.db import RunInProgress, Store


def _lock_files(store):
    return [p for p in store.path.parent.iterdir() if p.name.endswith(".lock")]


def test_a_run_has_one_holder(store):
    other = Store(store.path)  # another connection: as another process would hold its own lock file handle
    with store.run_lock("r1"):
        with (
            pytest.raises(RunInProgress, match=r"run 'r1' is in progress in another process \(pid \d+"),
            other.run_lock("r1"),
        ):
            pass
        with other.run_lock("r2"):  # other runs are free
            pass
    with other.run_lock("r1"):  # released at the end of the block
        pass
    assert _lock_files(store) == []  # nothing left beside the store
    long_id = "x" * 100_000
    with store.run_lock(long_id), pytest.raises(RunInProgress), other.run_lock(long_id):
        pass


@pytest.mark.slow
def test_a_killed_holder_leaves_the_run_free(store):
    code = (
        "import sys, time\n"
        "from store.db import Store\n"
        "with Store(sys.argv[1]).run_lock('r1'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(store.path)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunInProgress, match=f"pid {proc.pid}"), store.run_lock("r1"):
            pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _lock_files(store)  # the killed holder could not tidy up: its file is stale, not held
    with store.run_lock("r1"):
        pass
