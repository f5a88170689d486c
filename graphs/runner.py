"""`distill graph`: the teacher graph over every training item, concurrent, resumable, stored.

One process at a time holds a run (its lock); it works on the items itself, or has `teacher.workers` processes share
them (graphs/workers.py). Each item's traces and status are written in one transaction when it finishes. A resumed
run skips finished items and redoes failed or interrupted ones as a new attempt; earlier attempts stay in the
store."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields

from agents.prompts import DESCRIBER_VERSION, REASONER_VERSION
from agents.settings import TeacherConfig
from distill.backends.base import Backend
from distill.data.items import Item
from graphs.batch import run_batch
from graphs.progress import ItemProgress
from graphs.workers import run_workers
from store.db import Store, run_name

log = logging.getLogger(__name__)


PROMPT_VERSIONS = {"describer": DESCRIBER_VERSION, "reasoner": REASONER_VERSION}  # recorded with each run

# How the summary names what it counts: an item is accepted when one of its traces is; its traces are its attempts
# (retries, a hinted one) of each sample, so an item accepted on its second try has a rejected trace too.
SUMMARY_ROWS = {
    "todo": "items this invocation worked on",
    "skipped": "items an earlier invocation finished",
    "items": "items (every invocation)",
    "accepted_items": "items accepted",
    "rejected_items": "items rejected",
    "cannot_judge_items": "items the critic cannot judge",
    "failed": "items failed",
    "accepted": "traces accepted",
    "rejected": "traces rejected",
    "cannot_judge": "traces the critic cannot judge",
    "hinted_accepted": "traces accepted with a hint",
    "calls": "calls",
    "failed_calls": "calls failed",
    "tokens": "tokens",
    "seconds": "seconds",
    "invocations": "invocations",
}


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

    @property
    def all_failed(self) -> bool:
        """Every item of the run failed: it holds no trace."""
        return self.items > 0 and self.failed == self.items

    def rows(self) -> list[tuple[str, int | float]]:
        """(what, value) for each count, named so that items and traces are never confused."""
        return [(label, getattr(self, name)) for name, label in SUMMARY_ROWS.items()]


def run_status(summary: dict) -> str:
    if summary["items"] and summary["failed"] == summary["items"]:
        return "failed"
    return "done_with_failures" if summary["failed"] else "done"


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
    run: a second one (a resume of a run that is still going) gets RunInProgress before it touches anything. With
    `settings.workers` > 1 the items are shared among worker processes, which build their backends from `settings`
    (`reasoner` and `describer` are then not used)."""
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
    status = run_status(store.run_summary(run_id))
    stored = store.end_run(run_id, status, time.perf_counter() - started)
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
    with ItemProgress(len(todo), enabled=show_progress) as progress:
        if settings.workers > 1 and len(todo) > 1:
            await run_workers(store.path, todo, settings, run_id, progress.item_done)
        else:
            await run_batch(store, todo, settings, reasoner, describer, run_id, progress.item_done)
    return len(todo), len(items) - len(todo)
