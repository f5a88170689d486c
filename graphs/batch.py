"""One process's items through the graph. Each (item, sample) is one pass; LangGraph's batch keeps `concurrency`
passes in flight. An item's traces and status are written in one transaction once all its samples are in, and then
`on_item` hears how it ended (a progress bar, or a worker's report to its parent)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from agents.settings import TeacherConfig
from distill.backends.base import Backend
from distill.data.items import Item
from graphs.context import Context
from graphs.graph import build_graph, recursion_limit
from graphs.writer import StoreWriter
from store.db import Store

log = logging.getLogger(__name__)


def item_status(traces: list[dict], error: str | None) -> str:
    if error:
        return "failed"
    if any(t["verdict"] == "accepted" for t in traces):
        return "accepted"
    if any(t["verdict"] == "rejected" for t in traces):
        return "rejected"
    return "cannot_judge"


async def run_batch(
    store: Store,
    items: list[Item],
    settings: TeacherConfig,
    reasoner: Backend,
    describer: Backend | None,
    run_id: str,
    on_item: Callable[[str], None],
) -> None:
    writes = StoreWriter(store.path)
    try:
        graph = build_graph(settings)
        ctx = Context(settings, reasoner, describer, store, writes, run_id)
        attempts = {it.key: store.next_item_attempt(run_id, it.key) for it in items}
        passes = [(it, s) for it in items for s in range(settings.samples)]
        inputs = [
            {"item": it, "sample": s, "item_attempt": attempts[it.key], "attempt": 0, "hinted": False, "traces": []}
            for it, s in passes
        ]
        pending = {it.key: settings.samples for it in items}
        traces: dict[str, list[dict]] = {it.key: [] for it in items}
        errors: dict[str, str] = {}
        async for i, out in graph.abatch_as_completed(
            inputs,
            {"max_concurrency": settings.concurrency, "recursion_limit": recursion_limit(settings)},
            return_exceptions=True,
            context=ctx,
        ):
            item = passes[i][0]
            if isinstance(out, Exception):
                if not isinstance(out, (RuntimeError, ValueError, OSError, TimeoutError)):
                    log.warning("item %s: %s", item.key, out, exc_info=out)
                errors.setdefault(item.key, f"{type(out).__name__}: {out}")
            else:
                traces[item.key].extend(out.get("traces", []))
            pending[item.key] -= 1
            if pending[item.key]:
                continue
            error = errors.get(item.key)
            status = item_status(traces[item.key], error)
            await writes.finish_item(run_id, item.key, attempts[item.key], status, traces[item.key], error)
            on_item(status)
    finally:
        writes.close()
