"""Batching concurrent callers: graph nodes of many items ask one model at once; their requests queue, and one
worker per event loop drains the queue into batches, so the engine sees batches rather than one call per item."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from distill.backends.base import BackendError, ChatRequest


@dataclass
class Job:
    kind: str  # "chat" | "score"
    request: ChatRequest
    letters: list[str] | None
    future: asyncio.Future


class Batcher:
    """`run(kind, jobs) -> results` (in a worker thread) gets up to `max_batch` jobs of one group at a time;
    `group(job)` keeps apart the jobs that cannot share a batch."""

    def __init__(self, run: Callable[[str, list[Job]], list], max_batch: int, group: Callable[[Job], tuple]):
        self.run, self.max_batch, self.group = run, max_batch, group
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, kind: str, request: ChatRequest, letters: list[str] | None = None):
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():  # one queue per event loop
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._drain())
        fut = loop.create_future()
        await self._queue.put(Job(kind, request, letters, fut))
        return await fut

    async def _drain(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            for _ in range(3):  # let the other ready callers enqueue before the batch closes
                await asyncio.sleep(0)
            jobs = [job]
            while not self._queue.empty() and len(jobs) < self.max_batch:
                jobs.append(self._queue.get_nowait())
            groups: dict[tuple, list[Job]] = {}
            for j in jobs:
                groups.setdefault(self.group(j), []).append(j)
            for group in groups.values():
                try:
                    results = await asyncio.to_thread(self.run, group[0].kind, group)
                except Exception as exc:  # a failed batch fails its callers, not the worker
                    for j in group:
                        if not j.future.done():
                            j.future.set_exception(
                                exc if isinstance(exc, BackendError) else BackendError(f"{type(exc).__name__}: {exc}")
                            )
                    continue
                for j, res in zip(group, results):
                    if not j.future.done():
                        j.future.set_result(res)
