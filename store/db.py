"""The store: one SQLite file (WAL) holding items, agent calls, descriptions, traces and runs.

Every multi-statement write is one real transaction (`BEGIN IMMEDIATE` ... `COMMIT`): a process killed at any
moment leaves either all of a write or none of it. Migrations run in such a transaction too, so concurrent
first opens serialize and a killed first open leaves the file as it was. Nothing outside this package touches
the tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import random
import socket
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import sqlite_utils

from distill.data.items import Item
from distill.errors import UserError
from distill.secrets import redact
from store.migrations import MIGRATIONS

LOCK_WAIT_S = 60.0  # how long an open waits for other processes' locks
SECRET_KEYS = {"api_key", "authorization", "x-api-key", "token", "password", "secret"}
JSON_ITEM_FIELDS = ("options", "images", "parents", "meta")
JSON_TRACE_FIELDS = ("descriptions", "consistency")


class StoreError(UserError, RuntimeError):
    """The file cannot be used as a store (not SQLite, damaged, another program's, newer schema)."""


class UnknownRun(UserError, KeyError):
    """A run id the store does not hold."""


class UnknownRecord(UserError, KeyError):
    """An item key or trace id the store does not hold."""


class RunInProgress(StoreError):
    """Another live process is working on this run."""


class ReadOnlyStore(StoreError):
    """The store file (or its folder, or its file system) cannot be written."""


class QueryError(UserError, ValueError):
    """A full-text query that FTS5 cannot parse."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def run_name(kind: str) -> str:
    """A new run's id, when the user names none: kind, time, and a random tail."""
    return f"{kind}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{new_id()[:4]}"


def fts_words(query: str) -> str:
    """A query as plain words for FTS5: each whitespace-separated word one quoted string (its quotes doubled), all
    of them required; nothing in it is FTS syntax (`"`, AND, OR, NOT, NEAR, *, -, ^, :, parentheses)."""
    words = query.replace("\x00", " ").split()
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def scrub(obj):
    """Drop secrets and inline image bytes from a request before it is stored."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if str(k).lower() in SECRET_KEYS else scrub(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("data:image/"):
        return f"<image data url, {len(obj)} chars>"
    return obj


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def call_row(
    run_id: str | None,
    item_key: str | None,
    agent: str,
    model: str,
    request: dict,
    response: str | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    duration_ms: float,
    error: str | None = None,
) -> dict:
    """One agent call as the store keeps it: the request without secrets or image bytes."""
    return {
        "id": new_id(),
        "run_id": run_id,
        "item_key": item_key,
        "agent": agent,
        "model": model,
        "request": dumps(scrub(request)),
        "response": response,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "duration_ms": duration_ms,
        "error": redact(error),
        "created_at": now(),
    }


def item_row(item: Item) -> dict:
    row = item.model_dump(mode="json")
    for key in JSON_ITEM_FIELDS:
        row[key] = dumps(row[key])
    return {"key": item.key, **row}


def row_item(row: dict) -> Item:
    data = {k: v for k, v in row.items() if k != "key"}
    for key in JSON_ITEM_FIELDS:
        data[key] = json.loads(data[key]) if data.get(key) else ([] if key != "meta" else {})
    data["system"] = data.get("system") or ""
    data["system_turn"] = bool(data.get("system_turn"))
    return Item.model_validate(data)


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder, not a cover-distill store")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                conn = sqlite3.connect(str(self.path), timeout=LOCK_WAIT_S)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path} cannot be opened ({exc}): is its folder writable?") from None
            try:
                conn.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_S * 1000)}")
                self._check(conn)
                self.db = sqlite_utils.Database(conn)
                self.db.enable_wal()
                self.db.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
                self.db.execute("PRAGMA foreign_keys=ON")  # after migrations: they rebuild tables
                return
            except sqlite3.OperationalError as exc:
                conn.close()
                # Switching a new file to WAL, or upgrading a read lock, can meet another process's first open
                # with SQLITE_BUSY at once (SQLite skips the busy handler where waiting could deadlock). Opening
                # is idempotent (migrations are transactions), so it is tried again from the start.
                if self._read_only(exc) is not None:
                    raise self._read_only(exc) from None
                if "unable to open" in str(exc) or "disk I/O" in str(exc):
                    raise StoreError(f"{self.path} cannot be written ({exc})") from None
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise StoreError(f"{self.path} is not a cover-distill store ({exc})") from None
                if time.monotonic() > deadline:
                    raise StoreError(f"{self.path} stayed locked by another process for {LOCK_WAIT_S:.0f} s") from None
                time.sleep(random.uniform(0.02, 0.2))
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise StoreError(f"{self.path} is not a cover-distill store ({exc})") from None
            except BaseException:
                conn.close()
                raise

    def _check(self, conn: sqlite3.Connection) -> None:
        """A damaged file is never written to; another program's database is not adopted."""
        problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise StoreError(
                f"{self.path} is damaged (PRAGMA quick_check: {'; '.join(problems[:3])}); restore it from a copy"
            )
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
        if tables and "_migrations" not in tables:
            raise StoreError(
                f"{self.path} is not a cover-distill store (it holds other tables: {', '.join(sorted(tables)[:5])})"
            )

    def _migrate(self) -> list[str]:
        """Apply pending migrations, each committed together with its record; one process at a time."""
        applied = []
        with self.transaction():
            self.db.execute("create table if not exists _migrations (name text primary key, applied_at text)")
            done = {r["name"] for r in self.db.query("select name from _migrations")}
            unknown = done - {fn.__name__ for fn in MIGRATIONS}
            if unknown:
                raise StoreError(f"{self.path} was written by a newer cover-distill (migrations {sorted(unknown)})")
            for fn in MIGRATIONS:
                if fn.__name__ not in done:
                    fn(self.db)
                    self.db.execute("insert into _migrations values (?, ?)", [fn.__name__, now()])
                    applied.append(fn.__name__)
        return applied

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """All or nothing. `BEGIN IMMEDIATE` takes the write lock up front, so two writers queue instead of
        failing on a lock upgrade; sqlite-utils' own writes inside become savepoints of this transaction. A store
        that cannot be written is a ReadOnlyStore naming the file, with nothing of the block kept."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._read_only(exc) or exc from None
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as exc:
            if self.db.conn.in_transaction:
                self.db.rollback()
            read_only = self._read_only(exc) if isinstance(exc, sqlite3.OperationalError) else None
            if read_only is not None:
                raise read_only from None
            raise

    def _read_only(self, exc: sqlite3.OperationalError) -> ReadOnlyStore | None:
        if "readonly" not in str(exc) and "read-only" not in str(exc):
            return None
        return ReadOnlyStore(
            f"{self.path}: the store is read-only ({exc}); nothing was written: make the file and its folder "
            "writable, or work on a copy"
        )

    def require_writable(self) -> None:
        """Fail now, with one line naming the file, where the store cannot be written (a read-only file, folder or
        file system), before any work that would end in a write; nothing is left of the probe."""

        class _Probe(Exception):
            pass

        with contextlib.suppress(_Probe), self.transaction():
            self.db.execute("create table _write_probe (x integer)")
            raise _Probe

    def close(self) -> None:
        self.db.close()

    # --- runs -----------------------------------------------------------------------------------------
    def start_run(self, kind: str, config: dict, models: dict | None = None, run_id: str | None = None) -> str:
        from distill import __version__

        run_id = run_id or run_name(kind)
        with self.transaction():
            if self.db["runs"].count_where("id = ?", [run_id]):
                raise UserError(f"run {run_id!r} already exists in {self.path}: resume it with --resume {run_id}")
            self.db["runs"].insert(
                {
                    "id": run_id,
                    "kind": kind,
                    "config": dumps(scrub(config)),
                    "models": dumps(scrub(models or {})),
                    "code_version": __version__,
                    "started_at": now(),
                    "status": "running",
                    "seconds": 0.0,
                    "invocations": 1,
                }
            )
        return run_id

    def run(self, run_id: str) -> dict:
        rows = list(self.db.query("select * from runs where id = ?", [run_id]))
        if not rows:
            raise UnknownRun(f"no run {run_id!r} in {self.path}")
        return rows[0]

    @contextlib.contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """Hold run `run_id` for this process while the block runs; another process that asks for the same run
        meanwhile gets RunInProgress at once. The lock is an exclusive `flock` on a small file beside the store,
        which the kernel releases when the holder ends, however it ends (kill -9 included): a killed run is never
        left locked, and resuming it needs nothing cleaned up."""
        try:
            import fcntl
        except ImportError:  # no flock (Windows): runs are not guarded
            yield
            return
        digest = hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        path = self.path.parent / f".{self.path.name}.run-{digest}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                shown = run_id if len(run_id) <= 80 else run_id[:80] + "..."
                raise RunInProgress(
                    f"run {shown!r} is in progress in another process ({holder}) on {self.path}: wait for it to end "
                    "(or stop it), then resume it"
                ) from None
            try:  # a holder that just ended unlinks its file: hold the file that is there now, not an orphan
                st, now_st = os.fstat(fd), os.stat(path)
                same = (st.st_dev, st.st_ino) == (now_st.st_dev, now_st.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {now()}".encode(), 0)
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)

    def reopen_run(self, run_id: str) -> dict:
        run = self.run(run_id)
        with self.transaction():
            self.db.execute(
                "update runs set status = 'running', ended_at = null, "
                "invocations = coalesce(invocations, 1) + 1 where id = ?",
                [run_id],
            )
        return run

    def end_run(self, run_id: str, status: str, seconds: float) -> dict:
        """Close this invocation of the run; the stored summary covers every invocation so far."""
        with self.transaction():
            self.db.execute("update runs set seconds = coalesce(seconds, 0) + ? where id = ?", [seconds, run_id])
            summary = self.run_summary(run_id)
            self.db.execute(
                "update runs set ended_at = ?, status = ?, summary = ? where id = ?",
                [now(), status, dumps(summary), run_id],
            )
        return summary

    def run_summary(self, run_id: str) -> dict:
        statuses = Counter(
            {
                r["status"]: r["n"]
                for r in self.db.query(
                    "select status, count(*) as n from item_runs where run_id = ? group by status", [run_id]
                )
            }
        )
        verdicts = Counter(
            {
                r["verdict"]: r["n"]
                for r in self.db.query(
                    f"select verdict, count(*) as n from traces where run_id = ? and {_CURRENT} group by verdict",
                    [run_id],
                )
            }
        )
        hinted = self.db.execute(
            f"select count(*) from traces where run_id = ? and {_CURRENT} and verdict = 'accepted' and hinted = 1",
            [run_id],
        ).fetchone()[0]
        calls = self.db.execute(
            "select count(*), coalesce(sum(prompt_tokens), 0) + "
            "coalesce(sum(completion_tokens), 0), sum(error is not null) from calls "
            "where run_id = ?",
            [run_id],
        ).fetchone()
        errors = [
            f"{r['item_key']}: {r['error']}"
            for r in self.db.query(
                "select item_key, error from item_runs where run_id = ? and status = 'failed' order by item_key "
                "limit 20",
                [run_id],
            )
        ]
        run = self.run(run_id)
        return {
            "run_id": run_id,
            "items": sum(statuses.values()),
            "accepted_items": statuses["accepted"],
            "rejected_items": statuses["rejected"],
            "cannot_judge_items": statuses["cannot_judge"],
            "failed": statuses["failed"],
            "accepted": verdicts["accepted"],
            "rejected": verdicts["rejected"],
            "cannot_judge": verdicts["cannot_judge"],
            "hinted_accepted": hinted,
            "calls": calls[0],
            "failed_calls": calls[2] or 0,
            "tokens": calls[1],
            "seconds": run["seconds"] or 0.0,
            "invocations": run["invocations"] or 1,
            "errors": errors,
        }

    # --- items and images -------------------------------------------------------------------------------
    def add_items(self, items: Iterable[Item], images: list[dict] | None = None) -> int:
        """Insert items, or update ones already stored, with the rows of their `images`, in one transaction. An item
        may not move between a held-out split (dev, test) and one that trains (train, val): that would leak it, so
        it is an error."""
        rows = [item_row(it) for it in items]
        with self.transaction():
            known = {r["key"]: r["split"] for r in self.db.query("select key, split from items")}
            moved = [
                (r["key"], known[r["key"]], r["split"])
                for r in rows
                if r["key"] in known and _held_out(known[r["key"]]) != _held_out(r["split"])
            ]
            if moved:
                key, old, new = moved[0]
                raise UserError(
                    f"item {key} is already stored as {old}, now given as {new}: held-out items "
                    f"never move to training ({len(moved)} such item(s))"
                )
            self.db["items"].upsert_all(rows, pk="key")
            if images:
                self.db["images"].upsert_all(images, pk="sha256")
        return len(rows)

    def get_item(self, key: str) -> Item:
        rows = list(self.db.query("select * from items where key = ?", [key]))
        if not rows:
            raise UnknownRecord(f"no item {key!r} in {self.path}")
        return row_item(rows[0])

    def items(self, split: str | None = None, task: str | None = None) -> list[Item]:
        where, args = [], []
        for col, val in (("split", split), ("task", task)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "select * from items" + (" where " + " and ".join(where) if where else "") + " order by rowid"
        return [row_item(r) for r in self.db.query(sql, args)]

    def add_images(self, rows: list[dict]) -> None:
        with self.transaction():
            self.db["images"].upsert_all(rows, pk="sha256")

    def image_hashes(self) -> dict[str, str]:
        """Path -> sha256 of every image the store knows."""
        return {r["path"]: r["sha256"] for r in self.db.query("select path, sha256 from images")}

    def move_images(self, moves: dict[str, str]) -> int:
        """Image paths re-pointed, each old path to its new one (the covers were made again, or moved, elsewhere:
        another machine, another folder), in the images table and in every item (its covers, and the options' covers
        of a text2image item), in one transaction. How many image rows moved."""
        with self.transaction():
            rows = [r for r in self.db.query("select sha256, path from images") if r["path"] in moves]
            for r in rows:
                self.db["images"].update(r["sha256"], {"path": moves[r["path"]]})
            for r in list(self.db.query("select key, images, options from items")):
                paths = json.loads(r["images"] or "[]") or []
                options = json.loads(r["options"] or "[]") or []  # text2image: each option is a cover
                if any(x in moves for x in paths) or any(o.get("image") in moves for o in options):
                    self.db["items"].update(
                        r["key"],
                        {
                            "images": dumps([moves.get(x, x) for x in paths]),
                            "options": dumps(
                                [o | {"image": moves[o["image"]]} if o.get("image") in moves else o for o in options]
                            ),
                        },
                    )
        return len(rows)

    # --- agent calls, descriptions, traces ----------------------------------------------------------------
    def record_call(self, call: dict) -> None:
        """A call on its own (a failed one, before its node is retried): history that is never erased."""
        with self.transaction():
            self.db["calls"].insert(call | {"error": redact(call.get("error"))})

    def record_calls(self, calls: list[dict]) -> None:
        """Calls that returned together (a rationale and its forced letter), in one transaction."""
        with self.transaction():
            self.db["calls"].insert_all([call | {"error": redact(call.get("error"))} for call in calls])

    def description(self, sha: str, model: str, prompt_version: str) -> str | None:
        row = self.db.execute(
            "select text from descriptions where image_sha256 = ? and model = ? and prompt_version = ?",
            [sha, model, prompt_version],
        ).fetchone()
        return row[0] if row else None

    def save_description(self, sha: str, model: str, prompt_version: str, text: str, call: dict) -> str:
        """Keep the first description of a cover: a second writer's call is recorded, its text is not stored.
        Returns the stored text. A cover the store has not recorded (its items were added without their images)
        gets an `images` row with its sha256 alone, which the caption references."""
        with self.transaction():
            self.db["calls"].insert(call | {"error": redact(call.get("error"))})
            self.db.execute("insert or ignore into images (sha256) values (?)", [sha])
            self.db.execute(
                "insert or ignore into descriptions values (?, ?, ?, ?, ?, ?)",
                [sha, model, prompt_version, text, call["id"], now()],
            )
            return self.description(sha, model, prompt_version)

    def next_item_attempt(self, run_id: str, item_key: str) -> int:
        """The number the next attempt at an item in a run gets: past finished attempts and past calls (of an
        attempt that was killed before it finished) both count."""
        return (
            1
            + self.db.execute(
                "select max(coalesce((select max(attempt) from item_attempts where run_id = ? and item_key = ?), 0), "
                "coalesce((select max(item_attempt) from calls where run_id = ? and item_key = ?), 0))",
                [run_id, item_key, run_id, item_key],
            ).fetchone()[0]
        )

    def finish_item(
        self, run_id: str, item_key: str, attempt: int, status: str, traces: list[dict], error: str | None = None
    ) -> None:
        """An attempt at an item ends: its traces and status in one transaction (its calls were recorded as they
        happened). Earlier attempts stay as they are."""
        error = redact(error)
        rows = []
        for t in traces:
            row = {
                "id": new_id(),
                "created_at": now(),
                **t,
                "run_id": run_id,
                "item_key": item_key,
                "item_attempt": attempt,
            }
            for key in JSON_TRACE_FIELDS:
                if key in row and not isinstance(row[key], (str, type(None))):
                    row[key] = dumps(row[key])
            rows.append(row)
        with self.transaction():
            if rows:
                self.db["traces"].insert_all(rows)
            self.db["item_attempts"].insert(
                {
                    "run_id": run_id,
                    "item_key": item_key,
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                    "finished_at": now(),
                }
            )
            self.db["item_runs"].upsert(
                {
                    "run_id": run_id,
                    "item_key": item_key,
                    "attempts": attempt,
                    "status": status,
                    "accepted": sum(t["verdict"] == "accepted" for t in traces),
                    "rejected": sum(t["verdict"] == "rejected" for t in traces),
                    "error": error,
                    "finished_at": now(),
                },
                pk=("run_id", "item_key"),
            )

    def done_items(self, run_id: str) -> set[str]:
        """Items a run has finished; failed ones (backend errors) are redone on resume."""
        return {
            r["item_key"]
            for r in self.db.query("select item_key from item_runs where run_id = ? and status != 'failed'", [run_id])
        }

    def traces(
        self,
        run_id: str | None = None,
        task: str | None = None,
        verdict: str | None = None,
        query: str | None = None,
        limit: int | None = None,
        item_key: str | None = None,
        history: bool = False,
        fts: bool = False,
    ) -> list[dict]:
        """Traces, newest first; by default only those of each item's latest attempt in its run (what training
        reads). `history` includes earlier attempts; `query` is a full-text search over rationales: plain words,
        all required (`fts`: the query in FTS5's own syntax, where a syntax error is a QueryError). An unknown
        `run_id` is an UnknownRun, not an empty list."""
        if run_id:
            self.run(run_id)
        if query is not None and not fts:
            query = fts_words(query)
            if not query:
                raise QueryError("the search query holds no word")
        where, args = ([], []) if history else ([_CURRENT], [])
        for col, val in (("run_id", run_id), ("verdict", verdict), ("item_key", item_key)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        if task:
            where.append("item_key like ?")
            args.append(f"{task}/%")
        clause = " and ".join(where) or None
        if query is not None:  # sqlite-utils' search takes named arguments
            named = "".join(p + (f":p{k}" if k < len(args) else "") for k, p in enumerate((clause or "").split("?")))
            try:
                rows = list(
                    self.db["traces"].search(
                        query,
                        where=named or None,
                        limit=limit,
                        where_args={f"p{k}": v for k, v in enumerate(args)},
                        order_by="created_at desc",
                    )
                )
            except sqlite3.OperationalError as exc:  # the only part of this SQL the user writes is the query
                shown = query if len(query) <= 80 else query[:80] + "..."
                raise QueryError(f"search query {shown!r} is not valid FTS5 syntax ({exc})") from None
        else:
            sql = "select * from traces" + (f" where {clause}" if clause else "")
            sql += " order by created_at desc, rowid desc" + (f" limit {int(limit)}" if limit else "")
            rows = list(self.db.query(sql, args))
        for r in rows:
            r["task"] = r["item_key"].split("/", 1)[0]
        return rows

    def training_traces(self, run_id: str | None = None) -> list[dict]:
        """The traces training reads (each item's latest attempt in its run), in an order that does not depend on
        when they finished: by item, run, sample, attempt. An unknown `run_id` is an UnknownRun."""
        if run_id:
            self.run(run_id)
        sql = f"select * from traces where {_CURRENT}" + (" and run_id = ?" if run_id else "")
        rows = list(
            self.db.query(sql + " order by item_key, run_id, sample, attempt, hinted, id", [run_id] if run_id else [])
        )
        for r in rows:
            r["task"] = r["item_key"].split("/", 1)[0]
        return rows

    def descriptions(self) -> dict[str, str]:
        """Cover sha256 -> the describer's text. Descriptions are a cache shared by every run; where a cover has
        several (by model and prompt version), the first in that order."""
        rows = self.db.execute(
            "select image_sha256, text from descriptions order by image_sha256, model, prompt_version"
        )
        out: dict[str, str] = {}
        for sha, text in rows:
            out.setdefault(sha, text)
        return out

    def get_trace(self, trace_id: str) -> tuple[dict, Item, list[dict]]:
        """A trace, its item, and every call of its item's attempt (describer calls this item triggered too)."""
        rows = list(self.db.query("select * from traces where id = ?", [trace_id]))
        if not rows:
            raise UnknownRecord(f"no trace {trace_id!r} in {self.path}")
        t = rows[0]
        calls = list(
            self.db.query(
                "select * from calls where run_id = ? and item_key = ? and item_attempt = ? order by created_at",
                [t["run_id"], t["item_key"], t["item_attempt"]],
            )
        )
        return t, self.get_item(t["item_key"]), calls

    def stats(self) -> list[dict]:
        return list(
            self.db.query(
                f"""select run_id, substr(item_key, 1, instr(item_key, '/') - 1) as task, verdict, count(*) as n
                from traces where {_CURRENT} group by 1, 2, 3 order by 1, 2, 3"""
            )
        )

    # --- training runs ------------------------------------------------------------------------------------
    def record_train_run(
        self,
        kind: str,
        config: dict,
        dataset: dict,
        output_dir: str,
        best_step: int | None,
        metrics: dict,
        started_at: str,
        status: str,
        allow_leakage: bool,
        audit: dict,
    ) -> str:
        run_id = f"{kind}-{new_id()[:8]}"
        with self.transaction():
            self.db["train_runs"].insert(
                {
                    "id": run_id,
                    "kind": kind,
                    "config": dumps(scrub(config)),
                    "dataset": dumps(dataset),
                    "output_dir": output_dir,
                    "best_step": best_step,
                    "metrics": dumps(metrics),
                    "started_at": started_at,
                    "ended_at": now(),
                    "status": status,
                    "allow_leakage": int(allow_leakage),
                    "audit": dumps(audit),
                }
            )
        return run_id

    def train_runs(self) -> list[dict]:
        return list(self.db.query("select * from train_runs order by started_at"))


# A trace belongs to its item's latest attempt in its run: what training and the summaries read.
_CURRENT = (
    "traces.item_attempt = (select ir.attempts from item_runs ir where ir.run_id = traces.run_id and "
    "ir.item_key = traces.item_key)"
)


def _held_out(split: str | None) -> bool:
    return split in ("dev", "test")


def open_store(path: str | Path) -> Store:
    return Store(path)
