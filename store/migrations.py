"""Append-only schema migrations, applied in order on every open (never edit a released one)."""

from __future__ import annotations

import sqlite_utils

MIGRATIONS = []


def migration(fn):
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": str,
            "kind": str,
            "config": str,
            "models": str,
            "code_version": str,
            "started_at": str,
            "ended_at": str,
            "status": str,
            "summary": str,
        },
        pk="id",
    )
    db["items"].create(
        {
            "id": str,
            "task": str,
            "split": str,
            "source": str,
            "system": str,
            "input": str,
            "options": str,
            "images": str,
            "gold": str,
            "journal": str,
        },
        pk="id",
    )
    db["images"].create({"sha256": str, "path": str, "width": int, "height": int, "bytes": int}, pk="sha256")
    db["calls"].create(
        {
            "id": str,
            "run_id": str,
            "item_id": str,
            "agent": str,
            "model": str,
            "request": str,
            "response": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "duration_ms": float,
            "error": str,
            "created_at": str,
        },
        pk="id",
    )
    db["descriptions"].create(
        {"image_sha256": str, "model": str, "prompt_version": str, "text": str, "call_id": str, "created_at": str},
        pk=("image_sha256", "model", "prompt_version"),
    )
    db["traces"].create(
        {
            "id": str,
            "run_id": str,
            "item_id": str,
            "sample": int,
            "attempt": int,
            "hinted": int,
            "descriptions": str,
            "rationale": str,
            "answer": str,
            "verdict": str,
            "reason": str,
            "feedback": str,
            "call_id": str,
            "created_at": str,
        },
        pk="id",
    )
    db["item_runs"].create(
        {
            "run_id": str,
            "item_id": str,
            "status": str,
            "accepted": int,
            "rejected": int,
            "error": str,
            "finished_at": str,
        },
        pk=("run_id", "item_id"),
    )
    db["calls"].create_index(["run_id", "item_id"])
    db["traces"].create_index(["run_id", "item_id"])
    db["traces"].create_index(["verdict"])


@migration
def m002_provenance_and_consistency(db: sqlite_utils.Database) -> None:
    db["items"].add_column("parents", str)
    db["items"].add_column("transform", str)
    db["traces"].add_column("consistency", str)
    db["traces"].add_column("letter_probs", str)


@migration
def m003_trace_search(db: sqlite_utils.Database) -> None:
    db["traces"].enable_fts(["rationale", "reason"], create_triggers=True, tokenize="porter")


@migration
def m004_training_runs(db: sqlite_utils.Database) -> None:
    db["train_runs"].create(
        {
            "id": str,
            "kind": str,
            "config": str,
            "dataset": str,
            "output_dir": str,
            "best_step": int,
            "metrics": str,
            "started_at": str,
            "ended_at": str,
            "status": str,
        },
        pk="id",
    )


@migration
def m005_item_keys_history_foreign_keys(db: sqlite_utils.Database) -> None:
    """Items are keyed by (task, id) — MAC ids repeat across tasks — as `key` = "task/id". Every attempt at an
    item keeps its calls and traces (`item_attempt`); foreign keys link traces, calls and descriptions to their
    rows. Tables are rebuilt, existing rows carried over."""
    import json

    db.execute("""create table items_new (
        key TEXT primary key, id TEXT not null, task TEXT not null, split TEXT, source TEXT, system TEXT,
        input TEXT, options TEXT, images TEXT, gold TEXT, journal TEXT, parents TEXT, transform TEXT, meta TEXT)""")
    keys = {}
    for r in db.query("select * from items"):
        key = f"{r['task']}/{r['id']}"
        keys[r["id"]] = key
        db.execute(
            "insert into items_new values (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                key,
                r["id"],
                r["task"],
                r["split"],
                r["source"],
                r["system"],
                r["input"],
                r["options"],
                r["images"],
                r["gold"],
                r["journal"],
                None,
                r["transform"],
                "{}",
            ],
        )
    for r in db.query("select id, parents from items where parents is not null"):
        parents = [keys.get(p, p) for p in json.loads(r["parents"] or "[]")]
        db.execute("update items_new set parents = ? where key = ?", [json.dumps(parents), keys[r["id"]]])
    db.execute("alter table runs add column seconds FLOAT")
    db.execute("alter table runs add column invocations INTEGER")
    db.execute("""create table calls_new (
        id TEXT primary key, run_id TEXT references runs(id), item_key TEXT references items(key),
        item_attempt INTEGER, agent TEXT, model TEXT, request TEXT, response TEXT, prompt_tokens INTEGER,
        completion_tokens INTEGER, duration_ms FLOAT, error TEXT, created_at TEXT)""")
    db.execute("""insert into calls_new select c.id, c.run_id, i.key, case when c.item_id is null then null else 1
        end, c.agent, c.model, c.request, c.response, c.prompt_tokens, c.completion_tokens, c.duration_ms, c.error,
        c.created_at from calls c left join items_new i on i.id = c.item_id""")
    db.execute("""create table descriptions_new (
        image_sha256 TEXT, model TEXT, prompt_version TEXT, text TEXT, call_id TEXT references calls(id),
        created_at TEXT, primary key (image_sha256, model, prompt_version))""")
    db.execute("insert into descriptions_new select * from descriptions")
    db.execute("""create table traces_new (
        id TEXT primary key, run_id TEXT references runs(id), item_key TEXT references items(key),
        item_attempt INTEGER, sample INTEGER, attempt INTEGER, hinted INTEGER, descriptions TEXT, rationale TEXT,
        answer TEXT, verdict TEXT, reason TEXT, feedback TEXT, call_id TEXT references calls(id),
        consistency TEXT, letter_probs TEXT, created_at TEXT)""")
    db.execute("""insert into traces_new select t.id, t.run_id, i.key, 1, t.sample, t.attempt, t.hinted,
        t.descriptions, t.rationale, t.answer, t.verdict, t.reason, t.feedback, t.call_id, t.consistency,
        t.letter_probs, t.created_at from traces t join items_new i on i.id = t.item_id""")
    db.execute("""create table item_attempts (
        run_id TEXT references runs(id), item_key TEXT references items(key), attempt INTEGER, status TEXT,
        error TEXT, finished_at TEXT, primary key (run_id, item_key, attempt))""")
    db.execute("""insert into item_attempts select r.run_id, i.key, 1, r.status, r.error, r.finished_at
        from item_runs r join items_new i on i.id = r.item_id""")
    db.execute("""create table item_runs_new (
        run_id TEXT references runs(id), item_key TEXT references items(key), attempts INTEGER, status TEXT,
        accepted INTEGER, rejected INTEGER, error TEXT, finished_at TEXT, primary key (run_id, item_key))""")
    db.execute("""insert into item_runs_new select r.run_id, i.key, 1, r.status, r.accepted, r.rejected, r.error,
        r.finished_at from item_runs r join items_new i on i.id = r.item_id""")
    db["traces"].disable_fts()
    for table in ("traces", "calls", "descriptions", "item_runs", "items"):
        db.execute(f"drop table {table}")
        db.execute(f"alter table {table}_new rename to {table}")
    db["items"].create_index(["task", "id"], unique=True)
    db["items"].create_index(["split", "task"])
    db["calls"].create_index(["run_id", "item_key"])
    db["traces"].create_index(["run_id", "item_key"])
    db["traces"].create_index(["verdict"])
    db["traces"].enable_fts(["rationale", "reason"], create_triggers=True, tokenize="porter")
    db["train_runs"].add_column("allow_leakage", int)
    db["train_runs"].add_column("audit", str)


@migration
def m006_system_turn(db: sqlite_utils.Database) -> None:
    """Where LLaMA-Factory puts an item's system text: the user turn (0, the task's registry) or the system turn."""
    db.execute("alter table items add column system_turn INTEGER")
    db.execute("update items set system_turn = 0")


@migration
def m007_no_letter_probs(db: sqlite_utils.Database) -> None:
    """traces.letter_probs was never written: letter probabilities live in the answer files' details."""
    db.execute("alter table traces drop column letter_probs")


@migration
def m008_descriptions_link_their_covers(db: sqlite_utils.Database) -> None:
    """`descriptions.image_sha256` references `images(sha256)`, so a caption links to its cover (in datasette too).
    A caption whose cover the store never recorded keeps its text: its cover gets an `images` row with the sha256
    alone (path and size unknown). The table is rebuilt, its rows carried over."""
    db.execute("""insert or ignore into images (sha256) select distinct image_sha256 from descriptions
        where image_sha256 is not null""")
    db.execute("""create table descriptions_new (
        image_sha256 TEXT references images(sha256), model TEXT, prompt_version TEXT, text TEXT,
        call_id TEXT references calls(id), created_at TEXT, primary key (image_sha256, model, prompt_version))""")
    db.execute("""insert into descriptions_new select image_sha256, model, prompt_version, text, call_id, created_at
        from descriptions""")
    db.execute("drop table descriptions")
    db.execute("alter table descriptions_new rename to descriptions")
