"""What `distill graph` shows while it runs: in a log, whole plain lines; items counted as items, traces as traces."""

import asyncio
import io

from rich.console import Console

from agents.settings import TeacherConfig
from distill.data.records import load_json
from graphs.progress import ItemProgress
from graphs.runner import run_items
from tests.scripted import RATIONALE, ScriptedBackend, request_text


def _log() -> Console:
    """A console like stderr redirected to a file: not a terminal, 80 columns."""
    return Console(file=io.StringIO(), force_terminal=False, width=80)


def test_a_log_gets_whole_lines_now_and_then():
    console = _log()
    with ItemProgress(128, console=console) as progress:
        for k in range(128):
            progress.item_done("failed" if k % 32 == 0 else "accepted")
    lines = console.file.getvalue().splitlines()
    assert lines[0].startswith("teacher graph: 0/128 items")
    assert lines[-1].startswith("teacher graph: 128/128 items") and "accepted 124" in lines[-1]
    assert "failed 4" in lines[-1] and "…" not in console.file.getvalue()
    assert 10 <= len(lines) <= 13  # a line a tenth of the way, not one an item
    assert all(len(line) > 80 for line in lines[1:])  # longer than the console is wide, and not cut


def test_the_bar_counts_items_and_the_summary_names_items_and_traces(sample_dir, store, monkeypatch):
    """An item rejected once, then accepted: one item accepted, its two traces one rejected and one accepted; what
    the progress says and what the summary says agree, each naming what it counts."""
    console = _log()
    monkeypatch.setattr("distill.logs.console", console)
    items = load_json(sample_dir / "image2text_dev.json").items[:2]
    store.add_items(items)

    def reply(req, n):
        item = next(it for it in items if it.input[-60:] in request_text(req))
        wrong = next(x for x in item.letters if x != item.gold)
        letter = item.gold if "reviewer rejected" in request_text(req) else wrong
        return f"{RATIONALE}\nAnswer: {letter}"

    summary = asyncio.run(
        run_items(store, items, TeacherConfig(max_attempts=2), ScriptedBackend(reply), None, run_id="r")
    )
    last = console.file.getvalue().splitlines()[-1]
    assert "2/2 items" in last and "items accepted 2, rejected 0" in last
    rows = dict(summary.rows())
    assert rows["items accepted"] == 2 and rows["traces accepted"] == 2 and rows["traces rejected"] == 2
    assert all(label.startswith(("items", "traces", "calls", "tokens", "seconds", "invocations")) for label in rows)
