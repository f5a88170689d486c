"""What `distill graph` shows while it runs: items finished, by how they ended (an item is accepted when one of its
traces is; its traces are its attempts and samples, which the summary counts apart). On a terminal, a live bar; in
a log (stderr redirected to a file or a pipe), a plain line now and then, whole, never cut to a width."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from distill import logs

ITEM_OUTCOMES = ("accepted", "rejected", "cannot_judge", "failed")  # an item's status when it finishes
LINE_EVERY_S = 30.0  # a log gets a line at least this often while items finish
LINE_EVERY_SHARE = 0.1  # and one each time another tenth of the items is done


class ItemProgress:
    def __init__(self, total: int, enabled: bool = True, console: Console | None = None):
        self.total = total
        self.console = console or logs.console
        self.enabled = enabled
        self.counts = dict.fromkeys(ITEM_OUTCOMES, 0)
        self.started = self.last_line = time.perf_counter()
        self._lines_done = 0  # items done when the last plain line was written
        self._bar: Progress | None = None
        self._task = None

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def outcomes(self) -> str:
        """`items accepted 120, rejected 6, cannot judge 0, failed 2; 2.10 items/s`"""
        rate = self.done / max(1e-9, time.perf_counter() - self.started)
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.counts.items())
        return f"items {counts}; {rate:.2f} items/s"

    def __enter__(self) -> ItemProgress:
        if self.enabled and self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]teacher graph"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[stats]}"),
                console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("graph", total=self.total, stats="")
        elif self.enabled:
            self._line()
        return self

    def item_done(self, status: str) -> None:
        self.counts[status] += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, stats=self.outcomes())
        elif self.enabled and self._line_due():
            self._line()

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif self.enabled and self._lines_done != self.done:
            self._line()

    def _line_due(self) -> bool:
        step = max(1, int(self.total * LINE_EVERY_SHARE))
        return (
            self.done == self.total
            or self.done // step > self._lines_done // step
            or (time.perf_counter() - self.last_line >= LINE_EVERY_S)
        )

    def _line(self) -> None:
        elapsed = int(time.perf_counter() - self.started)
        clock = f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
        line = f"teacher graph: {self.done}/{self.total} items, {clock}: {self.outcomes()}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        self.last_line, self._lines_done = time.perf_counter(), self.done
