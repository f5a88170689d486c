"""`distill graph`: the teacher graph over every training item, concurrent, resumable, stored.

Each (item, sample) is one pass of the graph; LangGraph's batch runs them with `max_concurrency` passes in
flight. An item's traces and status are written in one transaction once all its samples are in. A resumed run
skips finished items and redoes failed or interrupted ones as a new attempt; earlier attempts stay in the store."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agents.prompts import DESCRIBER_VERSION, REASONER_VERSION
from agents.settings import TeacherConfig
from distill.backends.base import Backend
from distill.data.items import Item
from graphs.context import Context
from graphs.graph import build_graph, recursion_limit
from store.db import Store, run_name

log = logging.getLogger(__name__)


PROMPT_VERSIONS = {"describer": DESCRIBER_VERSION, "reasoner": REASONER_VERSION}  # recorded with each run


@dataclass
class RunSummary:
    """The run as the store sees it, across every invocation, plus what this invocation did."""

    run_id: str
    todo: int = 0  # items this invocation worked on
    skipped: int = 0  # items an earlier invocation finished
    items: int = 0
    accepted_items: int = 0
    rejected_items: int = 0
    cannot_judge_items: int = 0
    failed: int = 0
    accepted: int = 0
    rejected: int = 0
    cannot_judge: int = 0
    hinted_accepted: int = 0
    calls: int = 0
    failed_calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    invocations: int = 1
    errors: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, stored: dict, **extra) -> RunSummary:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (stored | extra).items() if k in names})

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def item_status(traces: list[dict], error: str | None) -> str:
    if error:
        return "failed"
    if any(t["verdict"] == "accepted" for t in traces):
        return "accepted"
    if any(t["verdict"] == "rejected" for t in traces):
        return "rejected"
    return "cannot_judge"


async def run_items(
    store: Store,
    items: list[Item],
    settings: TeacherConfig,
    reasoner: Backend,
    describer: Backend | None,
    *,
    run_id: str | None = None,
    resume: str | None = None,
    config: dict | None = None,
    show_progress: bool = True,
) -> RunSummary:
    """Run (or resume) a teacher run over `items`, which must be in the store. One process at a time works on a
    run: a second one (a resume of a run that is still going) gets RunInProgress before it touches anything."""
    run_id = resume or run_id or run_name("graph")
    with store.run_lock(run_id):
        return await _invocation(
            store, items, settings, reasoner, describer, run_id, bool(resume), config, show_progress
        )


async def _invocation(
    store: Store,
    items: list[Item],
    settings: TeacherConfig,
    reasoner: Backend,
    describer: Backend | None,
    run_id: str,
    resume: bool,
    config: dict | None,
    show_progress: bool,
) -> RunSummary:
    if resume:
        store.reopen_run(run_id)
    else:
        store.start_run(
            "graph",
            (config or {"teacher": settings.model_dump()}) | {"prompts": PROMPT_VERSIONS},
            {"reasoner": reasoner.model_name, "describer": describer.model_name if describer else None},
            run_id=run_id,
        )
    started = time.perf_counter()
    try:
        todo, skipped = await _run(store, items, settings, reasoner, describer, run_id, show_progress)
    except BaseException:
        store.end_run(run_id, "interrupted", time.perf_counter() - started)
        raise
    failed = bool(store.run_summary(run_id)["failed"])
    stored = store.end_run(run_id, "done_with_failures" if failed else "done", time.perf_counter() - started)
    return RunSummary.of(stored, todo=todo, skipped=skipped)


async def _run(
    store: Store,
    items: list[Item],
    settings: TeacherConfig,
    reasoner: Backend,
    describer: Backend | None,
    run_id: str,
    show_progress: bool,
) -> tuple[int, int]:
    done = store.done_items(run_id)
    todo = [it for it in items if it.key not in done]
    if len(items) > len(todo):
        log.info("resuming %s: %d items already done, %d to go", run_id, len(items) - len(todo), len(todo))
    graph = build_graph(settings)
    ctx = Context(settings=settings, reasoner=reasoner, describer=describer, store=store, run_id=run_id)
    attempts = {it.key: store.next_item_attempt(run_id, it.key) for it in todo}
    passes = [(it, s) for it in todo for s in range(settings.samples)]
    inputs = [
        {"item": it, "sample": s, "item_attempt": attempts[it.key], "attempt": 0, "hinted": False, "traces": []}
        for it, s in passes
    ]
    pending = {it.key: settings.samples for it in todo}
    traces: dict[str, list[dict]] = {it.key: [] for it in todo}
    errors: dict[str, str] = {}
    counts = {"accepted": 0, "rejected": 0, "failed": 0}
    t0 = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]teacher graph"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
        disable=not show_progress,
    )
    with progress:
        bar = progress.add_task("graph", total=len(todo), stats="")
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
            status = item_status(traces[item.key], errors.get(item.key))
            store.finish_item(run_id, item.key, attempts[item.key], status, traces[item.key], errors.get(item.key))
            counts["failed" if status == "failed" else "accepted" if status == "accepted" else "rejected"] += 1
            rate = sum(counts.values()) / max(1e-9, time.perf_counter() - t0)
            progress.update(
                bar,
                advance=1,
                stats=f"accepted {counts['accepted']} rejected {counts['rejected']} "
                f"failed {counts['failed']}  {rate:.2f} items/s",
            )
    return len(todo), len(items) - len(todo)
