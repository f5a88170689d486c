"""Routing of the teacher graph, driven by a scripted model."""

import asyncio
import json

import pytest

from agents.prompts import DESCRIBER_VERSION, REASONER_VERSION
from agents.settings import TeacherConfig
from distill.data.records import load_json
from graphs.runner import run_items
from tests.scripted import RATIONALE, ScriptedBackend, request_text


@pytest.fixture
def items(sample_dir, store):
    items = load_json(sample_dir / "text2image_dev.json").items[:3]
    store.add_items(items)
    return items


def _wrong(item):
    return next(L for L in item.letters if item.gold != L)


def _run(store, items, reasoner, describer_backend=None, **cfg):
    """One invocation of run "run" (a resume after the first)."""
    resume = "run" if store.db["runs"].count_where("id = 'run'") else None
    return asyncio.run(
        run_items(
            store,
            items,
            TeacherConfig(**cfg),
            reasoner,
            describer_backend,
            run_id="run",
            resume=resume,
            show_progress=False,
        )
    )


def _gold_of(req, items):
    text = request_text(req)
    return next(it for it in items if it.input in text or it.input.split("<image>")[0] in text)


def test_accept_on_first_try(store, items):
    reasoner = ScriptedBackend(lambda req, n: f"{RATIONALE}\nAnswer: {_gold_of(req, items).gold}")
    s = _run(store, items, reasoner, concurrency=1)
    assert (s.accepted, s.rejected, s.accepted_items) == (3, 0, 3)
    traces = store.traces(run_id="run")
    assert all(t["verdict"] == "accepted" and t["attempt"] == 0 and not t["hinted"] for t in traces)
    assert store.db["calls"].count == 3
    config = json.loads(store.db["runs"].get("run")["config"])
    assert config["prompts"] == {"describer": DESCRIBER_VERSION, "reasoner": REASONER_VERSION}  # provenance


def test_reject_then_accept_after_feedback(store, items):
    item = items[0]

    def reply(req, n):
        if "reviewer rejected" in request_text(req):
            return f"{RATIONALE}\nAnswer: {item.gold}"
        return f"{RATIONALE}\nAnswer: {_wrong(item)}"

    s = _run(store, [item], ScriptedBackend(reply))
    traces = sorted(store.traces(run_id="run"), key=lambda t: t["attempt"])
    assert [(t["attempt"], t["verdict"], t["reason"]) for t in traces] == [
        (0, "rejected", "wrong_answer"),
        (1, "accepted", "ok"),
    ]
    assert s.accepted_items == 1


def test_all_attempts_fail_then_rationalization(store, items):
    item = items[0]

    def reply(req, n):
        if "matching option is" in request_text(req):
            return f"{RATIONALE}\nAnswer: {item.gold}"
        return f"{RATIONALE}\nAnswer: {_wrong(item)}"

    _run(store, [item], ScriptedBackend(reply), max_attempts=2)
    traces = sorted(store.traces(run_id="run"), key=lambda t: t["attempt"])
    assert [(t["hinted"], t["verdict"]) for t in traces] == [(0, "rejected"), (0, "rejected"), (1, "accepted")]


def test_hinted_rationale_that_leaks_is_rejected(store, items):
    item = items[0]

    def reply(req, n):
        if "matching option is" in request_text(req):
            return f"Since the hint says {item.gold}, {RATIONALE}\nAnswer: {item.gold}"
        return f"{RATIONALE}\nAnswer: {_wrong(item)}"

    s = _run(store, [item], ScriptedBackend(reply), max_attempts=1)
    last = max(store.traces(run_id="run"), key=lambda t: t["attempt"])
    assert (last["hinted"], last["verdict"], last["reason"]) == (1, "rejected", "hint_leak")
    assert s.accepted_items == 0 and s.rejected_items == 1


def test_unparseable_answer_is_rejected_with_feedback(store, items):
    s = _run(
        store,
        items[:1],
        ScriptedBackend(lambda req, n: "I cannot decide between these covers."),
        max_attempts=2,
        rationalize=False,
    )
    traces = store.traces(run_id="run")
    assert len(traces) == 2 and {t["reason"] for t in traces} == {"no_answer"}
    assert all("Answer: X" in t["feedback"] for t in traces)
    assert s.rejected_items == 1


def test_backend_failure_is_recorded_not_dropped(store, items):
    s = _run(store, items[:1], ScriptedBackend(lambda req, n: RuntimeError("HTTP 500 after 5 retries")))
    assert s.failed == 1 and "HTTP 500" in s.errors[0]
    row = store.db["item_runs"].get(("run", items[0].key))
    assert row["status"] == "failed" and "HTTP 500" in row["error"]
    [call] = list(store.db["calls"].rows)
    assert "HTTP 500" in call["error"] and call["item_key"] == items[0].key and call["item_attempt"] == 1


def test_each_cover_is_described_once(store, items):
    describer = ScriptedBackend(lambda req, n: f"a cover, description {n}", model="desc")
    reasoner = ScriptedBackend(lambda req, n: f"{RATIONALE}\nAnswer: A")
    _run(store, items + items, reasoner, describer)  # the same covers twice over
    distinct = {p for it in items for p in it.images}
    assert len(describer.requests) == len(distinct)
    assert store.db["descriptions"].count == len(distinct)
    t = store.traces(run_id="run")[0]
    assert len(json.loads(t["descriptions"])) == 4
    # the reasoner saw the descriptions
    assert "description" in request_text(reasoner.requests[0])


def test_consistency_check_rejects_position_following(store, items):
    item = items[0]
    # always answers the gold's letter, even when the options are rotated: position, not content
    s = _run(
        store,
        [item],
        ScriptedBackend(lambda req, n: f"{RATIONALE}\nAnswer: {item.gold}"),
        consistency=True,
        max_attempts=1,
        rationalize=False,
    )
    [t] = store.traces(run_id="run")
    assert t["reason"] == "inconsistent" and json.loads(t["consistency"])["consistent"] is False
    assert s.accepted == 0


def test_several_samples_per_item(store, items):
    reasoner = ScriptedBackend(lambda req, n: f"{RATIONALE}\nAnswer: {items[0].gold}")
    _run(store, items[:1], reasoner, samples=3)
    assert sorted(t["sample"] for t in store.traces(run_id="run")) == [0, 1, 2]


def test_failed_items_are_retried_on_resume_and_history_stays(store, items):
    _run(store, items[:1], ScriptedBackend(lambda req, n: RuntimeError("connection refused")))
    s = _run(store, items[:1], ScriptedBackend(lambda req, n: f"{RATIONALE}\nAnswer: {items[0].gold}"))
    assert (s.todo, s.skipped, s.accepted_items, s.failed, s.invocations) == (1, 0, 1, 0, 2)
    assert store.db["item_runs"].get(("run", items[0].key))["status"] == "accepted"
    calls = [(c["item_attempt"], c["error"]) for c in store.db.query("select * from calls order by created_at")]
    assert calls[0] == (1, "connection refused") and calls[-1] == (2, None)  # the failure is still on record
    s = _run(store, items[:1], ScriptedBackend(lambda req, n: RuntimeError("must not be called")))
    assert (s.todo, s.skipped) == (0, 1)


def test_blank_descriptions_are_retried_then_fail_the_item(store, items):
    describer = ScriptedBackend(lambda req, n: "   \n", model="desc")
    reasoner = ScriptedBackend(lambda req, n: f"{RATIONALE}\nAnswer: A")
    s = _run(store, items[:1], reasoner, describer, describer={"max_retries": 2})
    assert s.failed == 1 and "blank description" in s.errors[0]
    assert store.db["descriptions"].count == 0 and not reasoner.requests
    # the first cover was asked 3 times (1 + max_retries), each a failed call on record
    assert store.db["calls"].count_where("error like '%blank description%'") >= 3
