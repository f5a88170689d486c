"""A run resumed from its last checkpoint with a higher cap trains as one unbroken run to that cap would have
(under a schedule that does not depend on the cap): the same losses, the same validations, and early stopping
where the unbroken run stopped (the count of evaluations without gain goes on from the checkpoint)."""

import json

import pytest

from tests.helpers import EVERY_2, sft_main, tiny_sft_args


def logged(out):
    """Each logged step's loss and each validation, without the runtimes."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = ("loss", "grad_norm", "eval_accuracy", "eval_loss")
    return [(r["step"], {k: r[k] for k in keys if k in r}) for r in rows if any(k in r for k in keys)]


@pytest.mark.slow
def test_a_run_continued_to_a_raised_cap_is_the_unbroken_run(tiny_model_dir, train_store, tmp_path):
    flags = [*EVERY_2, "--early_stopping_patience", "2", "--learning_rate", "3e-3", "--lr_scheduler_type", "constant"]
    unbroken = sft_main(tiny_sft_args(tiny_model_dir, train_store, tmp_path / "unbroken", *flags, "--max_steps", "20"))
    curve = [(step, m["eval_accuracy"]) for step, m in logged(tmp_path / "unbroken") if "eval_accuracy" in m]
    stopped = curve[-1][0]
    assert stopped < 20  # its patience ended it
    # the cap: an evaluation without gain, so the continued run starts with one evaluation already waited
    cap = next(step for step, acc in curve[1:] if acc <= max(a for s, a in curve if s < step))
    assert cap < stopped
    out = tmp_path / "raised"
    sft_main(tiny_sft_args(tiny_model_dir, train_store, out, *flags, "--max_steps", str(cap)))
    at_cap = json.loads((out / f"checkpoint-{cap}" / "trainer_state.json").read_text())
    assert at_cap["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"]["early_stopping_patience_counter"] == 1
    again = tiny_sft_args(tiny_model_dir, train_store, out, *flags, "--max_steps", "20", "--resume", "true")
    continued = sft_main(again)
    assert logged(out) == logged(tmp_path / "unbroken")  # every loss, gradient norm and validation, and where it ended
    assert continued["best_step"] == unbroken["best_step"]


def test_a_checkpoint_left_half_written_is_not_resumed_from(tmp_path):
    from distill.train.arguments import DistillArguments
    from distill.train.outputs import prepare_output_dir

    for step in (4, 6):  # the run was killed while saving step 6: its trainer state, written last, is missing
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"")
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    checkpoint, _ = prepare_output_dir(str(tmp_path), DistillArguments(db="x.db", resume=True))
    assert checkpoint == str(tmp_path / "checkpoint-4")


def test_a_validation_off_the_schedule_without_gain_is_not_counted_when_continuing():
    from distill.train.outputs import early_stopping

    def state(step, waited, best, validated=True):
        log = [{"step": step, "loss": 0.5}, *([{"step": step, "eval_accuracy": 0.4}] if validated else [])]
        early = {"args": {"early_stopping_patience": 3}, "attributes": {"early_stopping_patience_counter": waited}}
        return {"global_step": step, "eval_steps": 2, "best_global_step": best, "log_history": log,
                "stateful_callbacks": {"EarlyStoppingCallback": early}}  # fmt: skip

    assert early_stopping(state(5, 2, best=2)) == (1, 3)  # the limit's validation at 5 found no gain
    assert early_stopping(state(5, 0, best=5)) == (0, 3)  # it found one: nothing to count out
    assert early_stopping(state(5, 1, best=2, validated=False)) == (1, 3)  # saved there, not validated
    assert early_stopping(state(6, 2, best=2)) == (2, 3)  # on the schedule: it counts
    assert early_stopping(state(5, 2, best=2), every_n_steps=False) == (2, 3)  # an epoch schedule: kept as saved
