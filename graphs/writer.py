"""The graph's writes to the store, made by a thread of their own on a connection of their own.

A write waits for its commit, and for the store's lock while another worker process holds it, without holding up the
event loop (SQLite releases the interpreter while it works and waits), so requests keep flowing meanwhile. The node
that writes still goes on only once its write is in the store: calls are recorded as they return, and an item's
traces and status land in one transaction, as before."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from store.db import Store


class StoreWriter:
    def __init__(self, path: Path):
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._store: Store | None = None  # opened in the writer's thread, which alone uses it

    async def record_call(self, call: dict) -> None:
        await self._run("record_call", call)

    async def record_calls(self, calls: list[dict]) -> None:
        await self._run("record_calls", calls)

    async def save_description(self, sha: str, model: str, prompt_version: str, text: str, call: dict) -> str:
        return await self._run("save_description", sha, model, prompt_version, text, call)

    async def finish_item(
        self, run_id: str, item_key: str, attempt: int, status: str, traces: list[dict], error: str | None
    ) -> None:
        await self._run("finish_item", run_id, item_key, attempt, status, traces, error)

    async def _run(self, method: str, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._write, method, args)

    def _write(self, method: str, args: tuple):
        if self._store is None:
            self._store = Store(self.path)
        return getattr(self._store, method)(*args)

    def close(self) -> None:
        """After the writes asked for so far."""
        if self._store is not None:
            self._thread.submit(self._store.close).result()
        self._thread.shutdown()
