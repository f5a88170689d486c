"""Opening the store (WAL, migrations on open) and the reads and writes the pipeline needs."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Iterable

import sqlite_utils

from distill.items import Item, Option
from store.migrations import MIGRATIONS

SECRET_KEYS = {"api_key", "authorization", "Authorization", "x-api-key", "token", "password"}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def scrub(obj):
    """Drop secrets and inline image bytes from a request before it is stored."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if k in SECRET_KEYS else scrub(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("data:image/"):
        return f"<image data url, {len(obj)} chars>"
    return obj


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def migrate(db: sqlite_utils.Database, upto: int | None = None) -> list[str]:
    """Apply the migrations not yet applied (the first `upto` only, when given); return their names."""
    if "_migrations" not in db.table_names():
        db["_migrations"].create({"name": str, "applied_at": str}, pk="name")
    done = {r["name"] for r in db["_migrations"].rows}
    applied = []
    for fn in MIGRATIONS[:upto]:
        if fn.__name__ in done:
            continue
        with db.conn:
            fn(db)
            db["_migrations"].insert({"name": fn.__name__, "applied_at": now()})
        applied.append(fn.__name__)
    return applied


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        migrate(self.db)

    def close(self) -> None:
        self.db.close()

    # --- runs -------------------------------------------------------------------------------
    def start_run(self, kind: str, config: dict, models: dict | None = None, run_id: str | None = None) -> str:
        from distill import __version__

        run_id = run_id or f"{kind}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{new_id()[:4]}"
        with self.db.conn:
            self.db["runs"].insert({"id": run_id, "kind": kind, "config": _dumps(scrub(config)),
                                    "models": _dumps(scrub(models or {})), "code_version": __version__,
                                    "started_at": now(), "status": "running"}, replace=True)
        return run_id

    def end_run(self, run_id: str, status: str, summary: dict | None = None) -> None:
        with self.db.conn:
            self.db["runs"].update(run_id, {"ended_at": now(), "status": status, "summary": _dumps(summary or {})})

    def reopen_run(self, run_id: str) -> dict:
        try:
            run = self.db["runs"].get(run_id)
        except sqlite_utils.db.NotFoundError:
            raise KeyError(f"no run {run_id!r} in {self.path}") from None
        with self.db.conn:
            self.db["runs"].update(run_id, {"status": "running", "ended_at": None})
        return run

    # --- items and images ---------------------------------------------------------------------
    def add_items(self, items: Iterable[Item]) -> int:
        rows = [{"id": it.id, "task": it.task, "split": it.split, "source": it.source, "system": it.system,
                 "input": it.input, "options": _dumps([o.model_dump() for o in it.options]),
                 "images": _dumps(it.images), "gold": it.gold, "journal": it.journal,
                 "parents": _dumps(it.parents), "transform": it.transform} for it in items]
        with self.db.conn:
            self.db["items"].upsert_all(rows, pk="id")
        return len(rows)

    def get_item(self, item_id: str) -> Item:
        r = self.db["items"].get(item_id)
        return Item(id=r["id"], task=r["task"], split=r["split"], source=r["source"], system=r["system"] or "",
                    input=r["input"], options=[Option(**o) for o in json.loads(r["options"])],
                    images=json.loads(r["images"]), gold=r["gold"], journal=r["journal"],
                    parents=json.loads(r["parents"] or "[]"), transform=r["transform"])

    def items(self, split: str | None = None, task: str | None = None) -> list[Item]:
        where, args = [], []
        if split:
            where.append("split = ?")
            args.append(split)
        if task:
            where.append("task = ?")
            args.append(task)
        ids = [r["id"] for r in self.db["items"].rows_where(" and ".join(where) or None, args, select="id",
                                                             order_by="rowid")]
        return [self.get_item(i) for i in ids]

    def add_images(self, rows: list[dict]) -> None:
        with self.db.conn:
            self.db["images"].upsert_all(rows, pk="sha256")

    # --- agent calls, descriptions, traces ---------------------------------------------------------
    @staticmethod
    def call_row(run_id: str, item_id: str | None, agent: str, model: str, request: dict, response: str | None,
                 prompt_tokens: int | None, completion_tokens: int | None, duration_ms: float,
                 error: str | None = None) -> dict:
        return {"id": new_id(), "run_id": run_id, "item_id": item_id, "agent": agent, "model": model,
                "request": _dumps(scrub(request)), "response": response, "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens, "duration_ms": duration_ms, "error": error,
                "created_at": now()}

    def description(self, sha: str, model: str, prompt_version: str) -> str | None:
        rows = list(self.db["descriptions"].rows_where(
            "image_sha256 = ? and model = ? and prompt_version = ?", [sha, model, prompt_version], limit=1))
        return rows[0]["text"] if rows else None

    def save_description(self, sha: str, model: str, prompt_version: str, text: str, call: dict) -> None:
        with self.db.conn:
            self.db["calls"].insert(call)
            self.db["descriptions"].upsert({"image_sha256": sha, "model": model, "prompt_version": prompt_version,
                                            "text": text, "call_id": call["id"], "created_at": now()},
                                           pk=("image_sha256", "model", "prompt_version"))

    def finish_item(self, run_id: str, item_id: str, status: str, calls: list[dict], traces: list[dict],
                    error: str | None = None) -> None:
        """Everything an item produced, in one transaction: a kill never leaves half an item."""
        for t in traces:
            t.setdefault("id", new_id())
            t.setdefault("created_at", now())
            for key in ("descriptions", "consistency", "letter_probs"):
                if key in t and not isinstance(t[key], (str, type(None))):
                    t[key] = _dumps(t[key])
            t["run_id"], t["item_id"] = run_id, item_id
        with self.db.conn:
            self.db["traces"].delete_where("run_id = ? and item_id = ?", [run_id, item_id])
            self.db["calls"].delete_where("run_id = ? and item_id = ? and agent != 'describer'", [run_id, item_id])
            if calls:
                self.db["calls"].insert_all(calls)
            if traces:
                self.db["traces"].insert_all(traces, alter=True)
            self.db["item_runs"].upsert({
                "run_id": run_id, "item_id": item_id, "status": status,
                "accepted": sum(t["verdict"] == "accepted" for t in traces),
                "rejected": sum(t["verdict"] == "rejected" for t in traces),
                "error": error, "finished_at": now()}, pk=("run_id", "item_id"))

    def done_items(self, run_id: str) -> set[str]:
        """Items a run has finished; failed ones (backend errors) are retried on resume."""
        return {r["item_id"] for r in self.db["item_runs"].rows_where("run_id = ? and status != 'failed'", [run_id],
                                                                      select="item_id")}

    def traces(self, run_id: str | None = None, task: str | None = None, verdict: str | None = None,
               query: str | None = None, limit: int | None = None, item_id: str | None = None) -> list[dict]:
        sql = ["select t.*, i.task as task from traces t join items i on i.id = t.item_id"]
        where, args = [], []
        if query:
            sql.append("join traces_fts f on f.rowid = t.rowid")
            where.append("traces_fts match ?")
            args.append(query)
        for col, val in (("t.run_id", run_id), ("i.task", task), ("t.verdict", verdict), ("t.item_id", item_id)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        if where:
            sql.append("where " + " and ".join(where))
        sql.append("order by t.created_at desc, t.rowid desc")
        if limit:
            sql.append(f"limit {int(limit)}")
        return [dict(r) for r in self.db.query(" ".join(sql), args)]

    def stats(self) -> list[dict]:
        return list(self.db.query(
            """select t.run_id, i.task, t.verdict, count(*) as n from traces t join items i on i.id = t.item_id
               group by 1, 2, 3 order by 1, 2, 3"""))


def open_store(path: str | Path) -> Store:
    return Store(path)
