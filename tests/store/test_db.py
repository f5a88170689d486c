import sqlite3

import sqlite_utils

from distill.loaders import load_json
from store import open_store
from store.db import migrate
from store.migrations import MIGRATIONS


def _schema(path):
    db = sqlite_utils.Database(path)
    return {t.name: {c.name for c in t.columns} for t in db.tables if not t.name.startswith("traces_fts")}


def test_fresh_db_has_every_table(tmp_path):
    s = open_store(tmp_path / "a.db")
    names = set(s.db.table_names())
    assert {"runs", "items", "images", "calls", "descriptions", "traces", "item_runs", "traces_fts",
            "train_runs", "_migrations"} <= names
    assert {"parents", "transform"} <= {c.name for c in s.db["items"].columns}
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r["name"] for r in s.db["_migrations"].rows] == [m.__name__ for m in MIGRATIONS]


def test_older_db_migrates_to_the_same_schema(tmp_path, sample_dir):
    old = sqlite_utils.Database(tmp_path / "old.db")
    migrate(old, upto=1)  # a store written by the first release
    item = load_json(sample_dir / "image2text_dev.json").items[0]
    old["items"].insert({"id": item.id, "task": item.task, "input": item.input, "options": "[]", "images": "[]"})
    old["traces"].insert({"id": "t1", "run_id": "r", "item_id": item.id, "rationale": "old crimson lattice",
                          "verdict": "accepted"})
    old.close()
    migrated = open_store(tmp_path / "old.db")
    migrated.close()
    open_store(tmp_path / "new.db").close()
    assert _schema(tmp_path / "old.db") == _schema(tmp_path / "new.db")
    s = open_store(tmp_path / "old.db")
    assert [t["id"] for t in s.traces(query="crimson")] == ["t1"]  # old rows are indexed for search


def test_items_and_traces_round_trip_and_survive_reopen(tmp_path, sample_dir):
    items = load_json(sample_dir / "text2image_dev.json").items
    s = open_store(tmp_path / "t.db")
    s.add_items(items)
    run = s.start_run("graph", {"teacher": {"api_key": "sk-secret"}})
    call = s.call_row(run, items[0].id, "reasoner", "m", {"messages": [], "api_key": "sk-secret"}, "text", 5, 2, 1.0)
    s.finish_item(run, items[0].id, "accepted", [call], [
        {"sample": 0, "attempt": 0, "hinted": 0, "rationale": "hexagons tile a lattice", "answer": "B",
         "verdict": "accepted", "reason": "ok", "descriptions": {"a.png": "hexagons"}}])
    s.close()
    s = open_store(tmp_path / "t.db")
    assert s.get_item(items[0].id) == items[0]
    [t] = s.traces(run_id=run)
    assert t["answer"] == "B" and t["task"] == "text2image"
    assert s.done_items(run) == {items[0].id}
    raw = (tmp_path / "t.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("t.db-wal"))
    assert b"sk-secret" not in raw  # secrets never land in the database
    assert sqlite3.connect(tmp_path / "t.db").execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_finishing_an_item_twice_replaces_not_duplicates(store, sample_dir):
    item = load_json(sample_dir / "image2text_dev.json").items[0]
    store.add_items([item])
    trace = {"sample": 0, "attempt": 0, "hinted": 0, "rationale": "r", "answer": "A", "verdict": "rejected",
             "reason": "wrong_answer"}
    store.finish_item("r1", item.id, "rejected", [], [dict(trace)])
    store.finish_item("r1", item.id, "rejected", [], [dict(trace)])
    assert len(store.traces(run_id="r1")) == 1
