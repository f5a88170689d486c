"""`teacher.workers` > 1: several processes share one run, each on items of its own (item k goes to worker k mod N),
each with its own event loop, backends and store connection, so the client's work per request (encoding, HTTP, the
graph's bookkeeping, the store's writes) spreads over cores. The run's limits on what is in flight (`concurrency`,
and an OpenAI-compatible server's connections) are shared among the workers.

The parent holds the run's lock, starts and ends the run and shows the progress; each worker tells it how each of
its items ended. A worker ends when its parent does, however the parent ends (kill -9 included), so no worker
outlives the lock and a resume never runs beside an orphan."""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agents.settings import TeacherConfig
from distill.backends.config import BackendConfig
from distill.data.items import Item
from distill.errors import UserError

log = logging.getLogger(__name__)
REPORT_WAIT_S = 5.0  # how long the parent waits for the last words of a worker that died


class WorkerFailed(RuntimeError):
    """A worker process ended without finishing its items (its error, or how it died)."""


class WorkerUserError(UserError, WorkerFailed):
    """A worker met a user's error (a store that cannot be written, a backend that cannot be built): its one line."""


def shards(items: list[Item], workers: int) -> list[list[Item]]:
    """Item k goes to worker k mod N: disjoint shards of nearly equal size."""
    n = max(1, min(workers, len(items)))
    return [items[k::n] for k in range(n)]


def worker_settings(settings: TeacherConfig, workers: int) -> TeacherConfig:
    """One worker's share of the run's limits: passes in flight, and an OpenAI-compatible server's connections (an
    in-process model's batch is its own: each worker holds one)."""

    def share(cfg: BackendConfig | None) -> BackendConfig | None:
        if cfg is None or cfg.backend != "openai":
            return cfg
        return cfg.model_copy(update={"concurrency": math.ceil(cfg.concurrency / workers)})

    return settings.model_copy(
        update={
            "concurrency": math.ceil(settings.concurrency / workers),
            "reasoner": share(settings.reasoner),
            "describer": share(settings.describer),
            "workers": 1,
        }
    )


async def run_workers(
    store_path: Path, items: list[Item], settings: TeacherConfig, run_id: str, on_item: Callable[[str], None]
) -> None:
    """Run `items` in `settings.workers` processes, each building its backends from `settings`; returns when every
    worker has finished its items, and raises when one fails (the others are stopped: the run resumes)."""
    parts = shards(items, settings.workers)
    share = worker_settings(settings, len(parts))
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no event loop, lock or connection inherited
    reports = spawn.Queue()
    procs = [
        spawn.Process(
            target=work,
            args=(str(store_path), part, share, run_id, reports, os.getpid()),
            name=f"distill-graph-worker-{k}",
            daemon=True,
        )
        for k, part in enumerate(parts)
    ]
    try:
        for p in procs:
            p.start()
        await _follow(procs, reports, on_item)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            if p.pid is not None:
                p.join()
        reports.close()


async def _follow(procs: list, reports, on_item: Callable[[str], None]) -> None:
    """Hand each item's outcome to `on_item` until every worker has said it is done."""
    finished = 0
    while finished < len(procs):
        try:
            kind, value = reports.get_nowait()
        except queue.Empty:
            dead = next((p for p in procs if p.exitcode not in (None, 0)), None)
            if dead is not None:
                _last_words(reports, on_item, dead)
            await asyncio.sleep(0.05)
            continue
        if kind == "item":
            on_item(value)
        elif kind == "done":
            finished += 1
        else:
            raise _failure(*value)


def _last_words(reports, on_item: Callable[[str], None], dead) -> None:
    """A worker died: read what it (and the others) still said; its error if it said one, else how it died."""
    deadline = time.monotonic() + REPORT_WAIT_S
    while time.monotonic() < deadline:
        try:
            kind, value = reports.get(timeout=0.1)
        except queue.Empty:
            continue
        if kind == "item":
            on_item(value)
        elif kind == "failed":
            raise _failure(*value)
    raise WorkerFailed(f"graph worker {dead.name} died (exit code {dead.exitcode}); the run can be resumed")


def _failure(user_error: bool, message: str) -> WorkerFailed:
    return WorkerUserError(message) if user_error else WorkerFailed(f"a graph worker failed: {message}")


# --- in the worker -------------------------------------------------------------------------------------------
def work(store_path: str, items: list[Item], settings: TeacherConfig, run_id: str, reports, parent: int) -> None:
    """A worker process's life: its items through the graph, each outcome reported, then "done" (or "failed")."""
    from distill import logs

    _end_with(parent)
    logs.setup()
    try:
        asyncio.run(_work(Path(store_path), items, settings, run_id, reports))
    except BaseException as exc:
        reports.put(("failed", (isinstance(exc, UserError), f"{type(exc).__name__}: {exc}")))
        raise SystemExit(1) from None
    reports.put(("done", None))


async def _work(store_path: Path, items: list[Item], settings: TeacherConfig, run_id: str, reports) -> None:
    from graphs.backends import teacher_backends
    from graphs.batch import run_batch
    from store.db import Store

    store = Store(store_path)
    reasoner, describer = teacher_backends(settings)
    try:
        await run_batch(store, items, settings, reasoner, describer, run_id, lambda st: reports.put(("item", st)))
    finally:
        for backend in {id(b): b for b in (reasoner, describer) if b is not None}.values():
            await backend.aclose()
        store.close()


def _end_with(parent: int) -> None:
    """End this process when `parent` ends: at once on Linux (the kernel's parent-death signal), else within a
    second (a thread that watches for a new parent)."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent:  # the parent ended before the signal was asked for
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
