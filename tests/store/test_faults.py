"""Fault injection on the real SQLite file: a process killed between any two statements of a write, or of the
first open, and two processes opening a new store at once."""

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from distill.data.records import load_json
from store import open_store
from store.migrations import MIGRATIONS

pytestmark = pytest.mark.slow

# Runs `action` in a child process that SIGKILLs itself when SQLite is about to run statement number `kill_at`
# of the action (counted from the action's start); kill_at 0 never kills and prints how many statements ran.
CHILD = textwrap.dedent("""
    import json, os, signal, sqlite3, sys
    db, kill_at, action = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    count = 0
    def trace(sql):
        global count
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    connect = sqlite3.connect
    def traced(*a, **k):
        conn = connect(*a, **k)
        conn.set_trace_callback(trace)
        return conn
    if action == "open":
        sqlite3.connect = traced
        from store.db import Store
        Store(db).close()
    else:
        from store.db import Store
        s = Store(db)
        key = s.items()[0].key
        s.db.conn.set_trace_callback(trace)
        traces = [{"sample": 0, "attempt": k, "hinted": 0, "rationale": f"r{k}", "answer": "A",
                   "verdict": "rejected", "reason": "wrong_answer"} for k in range(3)]
        s.finish_item("run", key, 1, "rejected", traces)
    print(count)
""")


def _child(tmp_path, db, kill_at: int, action: str) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.run(
        [sys.executable, str(script), str(db), str(kill_at), action],
        capture_output=True,
        text=True,
        cwd=os.getcwd(),
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )


def test_a_kill_between_any_two_statements_of_finish_item_leaves_nothing_or_everything(tmp_path, sample_dir):
    base = tmp_path / "base.db"
    s = open_store(base)
    s.add_items(load_json(sample_dir / "image2text_dev.json").items[:1])
    s.start_run("graph", {}, run_id="run")
    s.close()
    full = _child(tmp_path, shutil.copy(base, tmp_path / "full.db"), 0, "finish")
    assert full.returncode == 0, full.stderr
    statements = int(full.stdout.split()[-1])
    assert statements >= 4  # BEGIN IMMEDIATE, the inserts, COMMIT
    with sqlite3.connect(tmp_path / "full.db") as con:
        state = tuple(
            con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("traces", "item_runs", "item_attempts")
        )
    assert state == (3, 1, 1)  # the uninterrupted write: three traces, the item's status, its attempt
    seen = set()
    for n in range(1, statements + 1):
        db = shutil.copy(base, tmp_path / f"k{n}.db")
        res = _child(tmp_path, db, n, "finish")
        assert res.returncode == -9, res.stderr  # killed, as planned
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        state = tuple(
            con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("traces", "item_runs", "item_attempts")
        )
        assert state in {(0, 0, 0), (3, 1, 1)}, (n, state)
        seen.add(state)
        con.close()
        open_store(db).close()  # and the store opens again
    assert seen == {(0, 0, 0)}  # a kill before COMMIT returns leaves nothing; the full run left everything


def test_a_kill_during_the_first_open_never_breaks_the_store(tmp_path):
    full = _child(tmp_path, tmp_path / "full.db", 0, "open")
    assert full.returncode == 0, full.stderr
    statements = int(full.stdout.split()[-1])
    for n in range(1, statements + 1, max(1, statements // 25)):
        db = tmp_path / f"k{n}.db"
        res = _child(tmp_path, db, n, "open")
        assert res.returncode == -9, res.stderr
        s = open_store(db)  # a later open finishes the job: never "duplicate column name"
        assert {"items", "traces", "item_runs"} <= set(s.db.table_names())
        s.close()


RACER = textwrap.dedent("""
    import os, sys, time
    from store.db import Store
    db, go = sys.argv[1], sys.argv[2]
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    Store(db).close()
""")


def test_concurrent_first_opens_serialize(tmp_path):
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    failures = []
    for race in range(20):
        db, go = tmp_path / f"race{race}.db", tmp_path / f"go{race}"
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(db), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(2)
        ]
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=120)
            if p.returncode != 0:
                failures.append(err.strip().splitlines()[-1])
    assert failures == []
    s = open_store(tmp_path / "race0.db")
    applied = [r[0] for r in s.db.execute("select name from _migrations order by rowid")]
    assert applied == [m.__name__ for m in MIGRATIONS]  # each migration once, in order, whoever won the race


def test_a_damaged_store_is_refused_and_left_untouched(tmp_path, sample_dir):
    from store.db import StoreError

    db = tmp_path / "d.db"
    s = open_store(db)
    s.add_items(load_json(sample_dir / "image2text_dev.json").items)
    s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()
    raw = db.read_bytes()
    page = 4096
    db.write_bytes(raw[:page] + os.urandom(len(raw) - page))  # the header survives, every other page is noise
    before = (db.read_bytes(), db.stat().st_mtime)
    time.sleep(0.01)
    with pytest.raises(StoreError, match="(damaged|not a cover-distill store)"):
        open_store(db)
    assert (db.read_bytes(), db.stat().st_mtime) == before
