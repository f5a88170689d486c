import json
import sqlite3

import pytest
import sqlite_utils

from distill.data.records import load_json
from distill.errors import UserError
from store import open_store
from store.db import StoreError, call_row
from store.migrations import MIGRATIONS

# The schema, exactly: every table's columns with their types, as the migrations leave it.
SCHEMA = {
    "_migrations": {"name": "TEXT", "applied_at": "TEXT"},
    "runs": {
        "id": "TEXT",
        "kind": "TEXT",
        "config": "TEXT",
        "models": "TEXT",
        "code_version": "TEXT",
        "started_at": "TEXT",
        "ended_at": "TEXT",
        "status": "TEXT",
        "summary": "TEXT",
        "seconds": "FLOAT",
        "invocations": "INTEGER",
    },
    "items": {
        "key": "TEXT",
        "id": "TEXT",
        "task": "TEXT",
        "split": "TEXT",
        "source": "TEXT",
        "system": "TEXT",
        "input": "TEXT",
        "options": "TEXT",
        "images": "TEXT",
        "gold": "TEXT",
        "journal": "TEXT",
        "parents": "TEXT",
        "transform": "TEXT",
        "meta": "TEXT",
        "system_turn": "INTEGER",
    },
    "images": {"sha256": "TEXT", "path": "TEXT", "width": "INTEGER", "height": "INTEGER", "bytes": "INTEGER"},
    "calls": {
        "id": "TEXT",
        "run_id": "TEXT",
        "item_key": "TEXT",
        "item_attempt": "INTEGER",
        "agent": "TEXT",
        "model": "TEXT",
        "request": "TEXT",
        "response": "TEXT",
        "prompt_tokens": "INTEGER",
        "completion_tokens": "INTEGER",
        "duration_ms": "FLOAT",
        "error": "TEXT",
        "created_at": "TEXT",
    },
    "descriptions": {
        "image_sha256": "TEXT",
        "model": "TEXT",
        "prompt_version": "TEXT",
        "text": "TEXT",
        "call_id": "TEXT",
        "created_at": "TEXT",
    },
    "traces": {
        "id": "TEXT",
        "run_id": "TEXT",
        "item_key": "TEXT",
        "item_attempt": "INTEGER",
        "sample": "INTEGER",
        "attempt": "INTEGER",
        "hinted": "INTEGER",
        "descriptions": "TEXT",
        "rationale": "TEXT",
        "answer": "TEXT",
        "verdict": "TEXT",
        "reason": "TEXT",
        "feedback": "TEXT",
        "call_id": "TEXT",
        "consistency": "TEXT",
        "created_at": "TEXT",
    },
    "item_attempts": {
        "run_id": "TEXT",
        "item_key": "TEXT",
        "attempt": "INTEGER",
        "status": "TEXT",
        "error": "TEXT",
        "finished_at": "TEXT",
    },
    "item_runs": {
        "run_id": "TEXT",
        "item_key": "TEXT",
        "attempts": "INTEGER",
        "status": "TEXT",
        "accepted": "INTEGER",
        "rejected": "INTEGER",
        "error": "TEXT",
        "finished_at": "TEXT",
    },
    "train_runs": {
        "id": "TEXT",
        "kind": "TEXT",
        "config": "TEXT",
        "dataset": "TEXT",
        "output_dir": "TEXT",
        "best_step": "INTEGER",
        "metrics": "TEXT",
        "started_at": "TEXT",
        "ended_at": "TEXT",
        "status": "TEXT",
        "allow_leakage": "INTEGER",
        "audit": "TEXT",
    },
}
PRIMARY_KEYS = {
    "runs": ["id"],
    "items": ["key"],
    "images": ["sha256"],
    "calls": ["id"],
    "traces": ["id"],
    "descriptions": ["image_sha256", "model", "prompt_version"],
    "item_runs": ["run_id", "item_key"],
    "item_attempts": ["run_id", "item_key", "attempt"],
    "train_runs": ["id"],
    "_migrations": ["name"],
}
FOREIGN_KEYS = {
    ("calls", "run_id", "runs", "id"),
    ("calls", "item_key", "items", "key"),
    ("traces", "run_id", "runs", "id"),
    ("traces", "item_key", "items", "key"),
    ("traces", "call_id", "calls", "id"),
    ("descriptions", "call_id", "calls", "id"),
    ("descriptions", "image_sha256", "images", "sha256"),
    ("item_runs", "run_id", "runs", "id"),
    ("item_runs", "item_key", "items", "key"),
    ("item_attempts", "run_id", "runs", "id"),
    ("item_attempts", "item_key", "items", "key"),
}


def _schema(path) -> dict:
    db = sqlite_utils.Database(path)
    return {t.name: {c.name: c.type for c in t.columns} for t in db.tables if not t.name.startswith("traces_fts")}


def _structure(path) -> tuple:
    db = sqlite_utils.Database(path)
    indexes = {
        (t.name, tuple(i.columns), i.unique)
        for t in db.tables
        for i in t.indexes
        if not i.name.startswith("sqlite_autoindex")
    }
    fks = {(t.name, fk.column, fk.other_table, fk.other_column) for t in db.tables for fk in t.foreign_keys}
    pks = {t.name: t.pks for t in db.tables if not t.name.startswith("traces_fts")}
    triggers = {t.name for t in db.triggers}
    return indexes, fks, pks, triggers


def test_fresh_store_has_exactly_the_schema(tmp_path):
    s = open_store(tmp_path / "a.db")
    assert _schema(tmp_path / "a.db") == SCHEMA
    indexes, fks, pks, triggers = _structure(tmp_path / "a.db")
    assert pks == PRIMARY_KEYS
    assert fks == FOREIGN_KEYS
    assert {
        ("items", ("task", "id"), True),
        ("items", ("split", "task"), False),
        ("calls", ("run_id", "item_key"), False),
        ("traces", ("run_id", "item_key"), False),
        ("traces", ("verdict",), False),
    } == indexes
    assert triggers == {"traces_ai", "traces_ad", "traces_au"}  # full-text search kept in step with traces
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert [r["name"] for r in s.db["_migrations"].rows] == [m.__name__ for m in MIGRATIONS]


def _first_release(path, sample_dir):
    """A store as the first release wrote it, with one item and one trace."""
    old = sqlite_utils.Database(path)
    old["_migrations"].create({"name": str, "applied_at": str}, pk="name")
    for fn in MIGRATIONS[:4]:
        fn(old)
        old["_migrations"].insert({"name": fn.__name__, "applied_at": "then"})
    item = load_json(sample_dir / "image2text_dev.json").items[0]
    old["items"].insert(
        {"id": item.id, "task": item.task, "input": item.input, "options": "[]", "images": "[]", "split": "dev"}
    )
    old["runs"].insert({"id": "r", "kind": "graph", "status": "done"})
    old["traces"].insert(
        {"id": "t1", "run_id": "r", "item_id": item.id, "rationale": "old crimson lattice", "verdict": "accepted"}
    )
    old["item_runs"].insert({"run_id": "r", "item_id": item.id, "status": "accepted", "accepted": 1, "rejected": 0})
    old.close()
    return item


def test_older_store_migrates_to_the_same_schema_and_keeps_its_rows(tmp_path, sample_dir):
    item = _first_release(tmp_path / "old.db", sample_dir)
    open_store(tmp_path / "old.db").close()
    open_store(tmp_path / "new.db").close()
    assert _schema(tmp_path / "old.db") == _schema(tmp_path / "new.db")
    assert _structure(tmp_path / "old.db") == _structure(tmp_path / "new.db")
    s = open_store(tmp_path / "old.db")
    [t] = s.traces(query="crimson")  # old rows are indexed for search, keyed by (task, id) now
    assert t["id"] == "t1" and t["item_key"] == f"image2text/{item.id}"
    assert s.done_items("r") == {f"image2text/{item.id}"}


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS)))
def test_captions_link_to_their_covers_after_migrating_from_every_version(tmp_path, version):
    """A store at any earlier version, with one caption of a recorded cover and one of a cover the store never
    recorded: both captions survive, and each references its `images` row (the unrecorded cover's has no path)."""
    path = tmp_path / f"v{version}.db"
    old = sqlite_utils.Database(path)
    old["_migrations"].create({"name": str, "applied_at": str}, pk="name")
    for fn in MIGRATIONS[:version]:
        fn(old)
        old["_migrations"].insert({"name": fn.__name__, "applied_at": "then"})
    old["images"].insert({"sha256": "a1" * 32, "path": "covers/crimson.png", "width": 64, "height": 64, "bytes": 9})
    for sha, text in (("a1" * 32, "crimson hexagons in a lattice"), ("b2" * 32, "violet diamonds in a ring")):
        old["descriptions"].insert({"image_sha256": sha, "model": "m", "prompt_version": "v1", "text": text})
    old.close()
    s = open_store(path)
    open_store(tmp_path / "fresh.db").close()
    assert _schema(path) == _schema(tmp_path / "fresh.db") and _structure(path) == _structure(tmp_path / "fresh.db")
    [link] = [r for r in s.db.execute("PRAGMA foreign_key_list(descriptions)").fetchall() if r[3] == "image_sha256"]
    assert (link[2], link[4]) == ("images", "sha256")
    assert s.db.execute("PRAGMA foreign_key_check").fetchall() == []
    rows = s.db.execute(
        "select d.text, i.path from descriptions d join images i on i.sha256 = d.image_sha256 order by d.text"
    ).fetchall()
    assert rows == [("crimson hexagons in a lattice", "covers/crimson.png"), ("violet diamonds in a ring", None)]


def test_a_caption_of_a_cover_saved_before_its_image_references_it(store):
    run = store.start_run("graph", {})
    call = call_row(run, None, "describer", "m", {}, "teal stripes", 1, 1, 1.0)
    store.save_description("c3" * 32, "m", "v1", "teal stripes", call)
    assert store.db.execute("select path from images where sha256 = ?", ["c3" * 32]).fetchall() == [(None,)]
    store.add_images([{"sha256": "c3" * 32, "path": "covers/teal.png", "width": 8, "height": 8, "bytes": 1}])
    assert store.image_hashes() == {"covers/teal.png": "c3" * 32}  # ingest fills the row in
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.db.execute("delete from images")


def test_items_and_traces_round_trip_and_survive_reopen(tmp_path, sample_dir):
    items = load_json(sample_dir / "text2image_dev.json").items
    items[0].meta = {"difficulty_hint": 3}
    s = open_store(tmp_path / "t.db")
    s.add_items(items)
    run = s.start_run("graph", {"teacher": {"api_key": "sk-secret"}})
    call = call_row(run, items[0].key, "reasoner", "m", {"messages": [], "api_key": "sk-secret"}, "text", 5, 2, 1.0)
    s.record_call(call | {"item_attempt": 1})
    s.finish_item(
        run,
        items[0].key,
        1,
        "accepted",
        [
            {
                "sample": 0,
                "attempt": 0,
                "hinted": 0,
                "rationale": "hexagons tile a lattice",
                "answer": "B",
                "verdict": "accepted",
                "reason": "ok",
                "descriptions": {"a.png": "hexagons"},
                "call_id": call["id"],
            }
        ],
    )
    s.close()
    s = open_store(tmp_path / "t.db")
    assert s.get_item(items[0].key) == items[0]  # every field, meta included
    assert s.items(split="dev", task="text2image") == items
    [t] = s.traces(run_id=run)
    assert t["answer"] == "B" and t["task"] == "text2image"
    trace, item, calls = s.get_trace(t["id"])
    assert item == items[0] and [c["id"] for c in calls] == [call["id"]]
    assert s.done_items(run) == {items[0].key}
    raw = (tmp_path / "t.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("t.db-wal"))
    assert b"sk-secret" not in raw  # secrets never land in the database
    assert sqlite3.connect(tmp_path / "t.db").execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_retry_keeps_the_history_and_training_reads_the_latest_attempt(store, sample_dir):
    item = load_json(sample_dir / "image2text_dev.json").items[0]
    store.add_items([item])
    run = store.start_run("graph", {})
    assert store.next_item_attempt(run, item.key) == 1
    store.record_call(
        call_row(run, item.key, "reasoner", "m", {}, None, None, None, 5.0, "HTTP 500") | {"item_attempt": 1}
    )
    store.finish_item(run, item.key, 1, "failed", [], "reasoner: HTTP 500")
    assert store.next_item_attempt(run, item.key) == 2 and item.key not in store.done_items(run)
    trace = {
        "sample": 0,
        "attempt": 0,
        "hinted": 0,
        "rationale": "r",
        "answer": "A",
        "verdict": "rejected",
        "reason": "wrong_answer",
    }
    store.finish_item(run, item.key, 2, "rejected", [dict(trace)])
    store.end_run(run, "done", 1.5)
    store.reopen_run(run)
    store.finish_item(run, item.key, 3, "rejected", [dict(trace)])
    summary = store.end_run(run, "done", 2.0)
    assert len(store.traces(run_id=run)) == 1  # the latest attempt's
    assert len(store.traces(run_id=run, history=True)) == 2
    attempts = [
        (r["attempt"], r["status"], r["error"]) for r in store.db.query("select * from item_attempts order by attempt")
    ]
    assert attempts == [(1, "failed", "reasoner: HTTP 500"), (2, "rejected", None), (3, "rejected", None)]
    assert summary["failed_calls"] == 1 and summary["seconds"] == pytest.approx(3.5)
    assert summary["invocations"] == 2 and summary["rejected_items"] == 1
    assert json.loads(store.run(run)["summary"])["seconds"] == pytest.approx(3.5)


def test_the_first_description_of_a_cover_is_kept(store):
    run = store.start_run("graph", {})
    first = store.save_description(
        "sha", "m", "v1", "crimson hexagons", call_row(run, None, "describer", "m", {}, "crimson hexagons", 1, 1, 1.0)
    )
    second = store.save_description(
        "sha", "m", "v1", "something else", call_row(run, None, "describer", "m", {}, "something else", 1, 1, 1.0)
    )
    assert first == second == "crimson hexagons" and store.description("sha", "m", "v1") == "crimson hexagons"
    assert store.db["calls"].count == 2  # both calls are on record


def test_held_out_items_never_move_to_training(store, sample_dir):
    item = load_json(sample_dir / "image2text_test.json").items[0]
    store.add_items([item])
    with pytest.raises(UserError, match="held-out items never move"):
        store.add_items([item.model_copy(update={"split": "train", "gold": "A"})])
    assert store.get_item(item.key).split == "test"


def test_files_that_are_not_stores_are_refused_in_one_line(tmp_path):
    (tmp_path / "notes.db").write_text("not a database at all, just some text " * 100)
    with pytest.raises(StoreError, match=r"notes.db is not a cover-distill store \(file is not a database\)"):
        open_store(tmp_path / "notes.db")
    other = sqlite_utils.Database(tmp_path / "other.db")
    other["people"].insert({"name": "x"})
    other.close()
    with pytest.raises(StoreError, match="not a cover-distill store .*people"):
        open_store(tmp_path / "other.db")
    assert "_migrations" not in sqlite_utils.Database(tmp_path / "other.db").table_names()  # untouched


def test_moved_covers_are_re_pointed_one_path_at_a_time(store, sample_dir):
    [a, b] = load_json(sample_dir / "image2text_test.json").items[:2]
    a = a.model_copy(update={"images": ["/old/W1/data/images/a.jpg"]})
    b = b.model_copy(update={"images": ["/old/W1/copy/data/images/b.jpg"]})  # under the old folder, not moved
    store.add_items([a, b], images=[
        {"sha256": "a1" * 32, "path": "/old/W1/data/images/a.jpg", "width": 8, "height": 8, "bytes": 1},
        {"sha256": "b2" * 32, "path": "/old/W1/copy/data/images/b.jpg", "width": 8, "height": 8, "bytes": 1},
    ])  # fmt: skip
    store.save_description("c3" * 32, "m", "v1", "a caption of a cover with no path yet", {"id": "call-1"})
    assert store.move_images({"/old/W1/data/images/a.jpg": "/new/w1/data/images/a.jpg"}) == 1
    assert {p: sha for p, sha in store.image_hashes().items() if p} == {
        "/new/w1/data/images/a.jpg": "a1" * 32,
        "/old/W1/copy/data/images/b.jpg": "b2" * 32,
    }
    assert store.get_item(a.key).images == ["/new/w1/data/images/a.jpg"]
    assert store.get_item(b.key).images == ["/old/W1/copy/data/images/b.jpg"]


def test_a_text2image_items_option_covers_move_with_the_covers(store, sample_dir):
    [t] = load_json(sample_dir / "text2image_test.json").items[:1]
    old = [f"/old/W1/data/images/t-{k}.jpg" for k in range(len(t.options))]
    t = t.model_copy(update={"options": [o.model_copy(update={"image": p}) for o, p in zip(t.options, old)]})
    store.add_items([t], images=[
        {"sha256": f"{k}" * 64, "path": p, "width": 8, "height": 8, "bytes": 1} for k, p in enumerate(old)
    ])  # fmt: skip
    moves = {p: p.replace("/old/W1/", "/new/w1/") for p in old[:-1]}  # the last cover is not moved
    assert store.move_images(moves) == len(old) - 1
    moved = store.get_item(t.key)
    assert [o.image for o in moved.options] == [*moves.values(), old[-1]]
    assert [o.text for o in moved.options] == [o.text for o in t.options]  # nothing else about an option changes
