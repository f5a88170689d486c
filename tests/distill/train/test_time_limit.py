"""A run with `max_train_minutes` stops at the first step past the limit; that step is validated and saved, the
best checkpoint so far is the final model, and the run is recorded `time_limit`. The clock is run forward a minute
a step, so where the run stops does not depend on this machine's speed."""

import itertools

import pytest

from distill.errors import UserError
from distill.train.metrics import read_metrics, validation_curve
from tests.helpers import EVERY_2, sft_main, tiny_sft_args


@pytest.fixture
def a_minute_a_step(monkeypatch):
    import distill.train.time_limit as time_limit

    minutes = itertools.count(0, 60)  # read once when training begins, then once at every step's end
    monkeypatch.setattr(time_limit, "clock", lambda: next(minutes))


@pytest.mark.slow
def test_the_step_past_the_limit_is_validated_and_saved(a_minute_a_step, tiny_model_dir, train_store, tmp_path):
    out = tmp_path / "sft"
    res = sft_main(tiny_sft_args(tiny_model_dir, train_store, out, *EVERY_2, "--max_train_minutes", "2.5"))
    rows = read_metrics(out / "metrics.jsonl")
    assert res["status"] == "time_limit"
    assert max(r["step"] for r in rows) == 3  # 3 minutes at step 3: past 2.5, not at the 12-step cap
    evals = validation_curve(rows)
    assert [step for step, _ in evals] == [2, 3]  # step 3 validated off the 2-step schedule, once
    assert any(r["step"] == 3 and "loss" in r for r in rows)  # logged (and checked for NaN) before it was validated
    assert (out / "checkpoint-3").is_dir() and (out / "final" / "model.safetensors").is_file()
    best = max(evals, key=lambda e: e[1])[0]  # the first of the highest: the trainer's best needs a strict gain
    assert res["best_step"] == best
    from store import open_store

    [run] = [r for r in open_store(train_store).train_runs() if r["id"] == res["run_id"]]
    assert run["status"] == "time_limit"


@pytest.mark.slow
def test_a_run_that_reaches_its_cap_as_the_limit_passes_is_done(a_minute_a_step, tiny_model_dir, train_store, tmp_path):
    limited = ["--max_steps", "3", "--max_train_minutes", "2.5"]
    res = sft_main(tiny_sft_args(tiny_model_dir, train_store, tmp_path / "sft", *limited))
    assert res["status"] == "done"  # step 3 is past 2.5 minutes, and the cap: the run is complete, not cut short


def test_a_negative_time_limit_is_refused_in_one_line(tiny_model_dir, train_store, tmp_path):
    with pytest.raises(UserError, match="max_train_minutes must be 0 .no limit. or more, not -1"):
        sft_main(tiny_sft_args(tiny_model_dir, train_store, tmp_path / "sft", "--max_train_minutes", "-1"))


@pytest.mark.slow
def test_a_run_stopped_by_its_limit_resumes_where_it_stopped(a_minute_a_step, tiny_model_dir, train_store, tmp_path):
    # save_total_limit 1 is what the demo recipes keep; at a run's end transformers then deletes every checkpoint
    # but the best, and a resumed shard would go back to its best step and train those steps again
    out = tmp_path / "sft"
    every_step = ["--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1"]
    every_step += ["--logging_steps", "1"]
    leg = tiny_sft_args(tiny_model_dir, train_store, out, *every_step, "--save_total_limit", "1")
    first = sft_main([*leg, "--max_train_minutes", "4.5"])
    assert first["status"] == "time_limit" and (out / "checkpoint-5").is_dir()
    second = sft_main([*leg, "--max_train_minutes", "2.5", "--resume", "true"])
    assert second["status"] == "time_limit"
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6, 7, 8]  # 6-8 after 5, none trained twice
    assert (out / "checkpoint-8").is_dir()


@pytest.mark.slow
def test_patience_resumed_after_the_limit_ends_where_the_unbroken_run_ended(
    a_minute_a_step, tiny_model_dir, train_store, tmp_path
):
    # at learning rate 0 no validation gains, so patience 2 ends an unbroken run at its second evaluation after its
    # first; the limit's validation at step 3, off the 2-step schedule, must not count as one of them
    flags = [*EVERY_2, "--early_stopping_patience", "2", "--learning_rate", "0", "--lr_scheduler_type", "constant"]
    unbroken = tmp_path / "unbroken"
    sft_main(tiny_sft_args(tiny_model_dir, train_store, unbroken, *flags))
    assert validated(unbroken) == [2, 4, 6]
    out = tmp_path / "legs"
    first = sft_main(tiny_sft_args(tiny_model_dir, train_store, out, *flags, "--max_train_minutes", "2.5"))
    assert first["status"] == "time_limit" and validated(out) == [2, 3]
    second = sft_main(tiny_sft_args(tiny_model_dir, train_store, out, *flags, "--resume", "true"))
    assert second["status"] == "done" and validated(out) == [2, 3, 4, 6]


def validated(out) -> list[int]:
    return [step for step, _ in validation_curve(read_metrics(out / "metrics.jsonl"))]
