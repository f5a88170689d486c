"""`distill graph`: the teacher graph over every training item, concurrent, resumable, stored."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from distill.backends import Backend
from distill.config import TeacherConfig
from distill.items import Item
from graphs.graph import build_graph, run_sample
from graphs.state import GraphContext, GraphSettings

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run_id: str
    items: int = 0
    skipped: int = 0  # already done in an earlier attempt of this run
    accepted_items: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_items: int = 0  # items with no accepted trace and no failure
    cannot_judge: int = 0
    failed: int = 0
    hinted_accepted: int = 0
    tokens: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["errors"] = self.errors[:20]
        return d


def settings_of(cfg: TeacherConfig) -> GraphSettings:
    return GraphSettings(max_attempts=cfg.max_attempts, rationalize=cfg.rationalize, consistency=cfg.consistency,
                         temperature=cfg.temperature,
                         max_new_tokens=cfg.max_new_tokens, describe_tokens=cfg.describe_tokens,
                         min_words=cfg.min_words, max_words=cfg.max_words)


def item_status(traces: list[dict], error: str | None) -> str:
    if any(t["verdict"] == "accepted" for t in traces):
        return "accepted"
    if error:
        return "failed"
    if any(t["verdict"] == "rejected" for t in traces):
        return "rejected"
    return "cannot_judge"


async def run_items(store, items: list[Item], run_id: str, reasoner: Backend, describer: Backend | None,
                    cfg: TeacherConfig, concurrency: int | None = None, show_progress: bool = True) -> RunSummary:
    graph = build_graph()
    ctx = GraphContext(reasoner=reasoner, describer=describer, store=store, run_id=run_id, settings=settings_of(cfg))
    done = store.done_items(run_id)
    todo = [it for it in items if it.id not in done]
    summary = RunSummary(run_id=run_id, items=len(todo), skipped=len(items) - len(todo))
    if summary.skipped:
        log.info("resuming %s: %d items already done, %d to go", run_id, summary.skipped, len(todo))
    sem = asyncio.Semaphore(concurrency or cfg.concurrency)
    started = time.perf_counter()
    progress = Progress(TextColumn("[bold]teacher graph"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[stats]}"), disable=not show_progress)

    def stats() -> str:
        rate = (summary.accepted_items + summary.failed + summary.rejected_items) / max(1e-9, time.perf_counter() - started)
        return (f"accepted {summary.accepted} rejected {summary.rejected} failed {summary.failed} "
                f"tokens {summary.tokens} {rate:.2f} items/s")

    async def one(item: Item, task_id) -> None:
        async with sem:
            traces, calls, error = [], [], None
            for sample in range(cfg.samples):
                try:
                    state = await run_sample(graph, ctx, item, sample)
                except Exception as exc:  # a bug in one item must not stop the run; it is recorded
                    log.exception("item %s failed", item.id)
                    error = f"{type(exc).__name__}: {exc}"
                    break
                traces.extend(state.get("traces", []))
                calls.extend(state.get("calls", []))
                if state.get("error"):
                    error = state["error"]
                    break
            status = item_status(traces, error)
            store.finish_item(run_id, item.id, status, calls, traces, error)
            summary.accepted += sum(t["verdict"] == "accepted" for t in traces)
            summary.hinted_accepted += sum(t["verdict"] == "accepted" and t["hinted"] for t in traces)
            summary.rejected += sum(t["verdict"] == "rejected" for t in traces)
            summary.cannot_judge += sum(t["verdict"] == "cannot_judge" for t in traces)
            summary.tokens += sum((c.get("prompt_tokens") or 0) + (c.get("completion_tokens") or 0) for c in calls)
            if status == "accepted":
                summary.accepted_items += 1
            elif status == "failed":
                summary.failed += 1
                summary.errors.append(f"{item.id}: {error}")
            else:
                summary.rejected_items += 1
            progress.update(task_id, advance=1, stats=stats())

    with progress:
        task_id = progress.add_task("graph", total=len(todo), stats="")
        await asyncio.gather(*(one(it, task_id) for it in todo))
    summary.seconds = time.perf_counter() - started
    return summary
