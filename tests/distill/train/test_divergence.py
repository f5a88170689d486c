"""A run whose weights turn NaN stops at the next logging step; the best checkpoint before it is the final model,
and without one the run ends in one line instead of a final model of NaN weights."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from distill.train.divergence import TrainingDiverged
from tests.helpers import EVERY_2, add_to_trainers, sft_main, tiny_sft_args

pytestmark = pytest.mark.slow


class PoisonAt(TrainerCallback):
    """Fills one weight with NaN after step `step`, as an overflow would."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(math.nan)


@pytest.fixture
def poisoned(monkeypatch, request):
    add_to_trainers(monkeypatch, PoisonAt(getattr(request, "param", 5)))


def _args(model, db, out, *extra):
    return tiny_sft_args(model, db, out, "--learning_rate", "1e-3", *extra)


def test_the_best_checkpoint_before_a_divergence_is_the_final_model(poisoned, tiny_model_dir, train_store, tmp_path):
    out = tmp_path / "sft"
    res = sft_main(_args(tiny_model_dir, train_store, out, *EVERY_2))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().replace("NaN", "null").splitlines()]
    assert res["status"] == "diverged"
    assert max(r["step"] for r in rows) == 6  # stopped at the first log after the poisoned step
    assert [r["step"] for r in rows if "eval_accuracy" in r] == [2, 4]  # the NaN weights were never evaluated
    assert not (out / "checkpoint-6").exists() and res["best_step"] in (2, 4)
    final = load_file(Path(res["final"]) / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in final.values())
    assert (out / "checkpoint-4" / "distill_student.json").is_file()  # every checkpoint carries the card
    from store import open_store

    [run] = [r for r in open_store(train_store).train_runs() if r["id"] == res["run_id"]]
    assert run["status"] == "diverged"


def test_a_divergence_without_a_validated_checkpoint_is_one_line(poisoned, tiny_model_dir, train_store, tmp_path):
    out = tmp_path / "sft"
    with pytest.raises(TrainingDiverged, match=r"diverged at step 6 \(grad_norm non-finite at learning_rate 0.001\)"):
        sft_main(_args(tiny_model_dir, train_store, out, "--eval_strategy", "no", "--save_strategy", "no"))
    assert not (out / "final").exists()


@pytest.mark.parametrize("poisoned", [4], indirect=True)
def test_weights_that_evaluate_to_nan_are_never_the_best_nor_saved(poisoned, tiny_model_dir, train_store, tmp_path):
    """Poisoned after step 4's update: step 4's training loss is finite, its evaluation is not. Evaluations every 2
    steps, logs every 3: the step is logged before it is evaluated, the NaN evaluation is not the best, and its
    checkpoint is not written."""
    out = tmp_path / "sft"
    res = sft_main(_args(tiny_model_dir, train_store, out, *EVERY_2, "--logging_steps", "3"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().replace("NaN", "null").splitlines()]
    assert [r["step"] for r in rows if "eval_loss" in r] == [2, 4]
    assert [r["eval_loss"] is None for r in rows if "eval_loss" in r] == [False, True]
    assert res["status"] == "diverged" and res["best_step"] == 2 and not (out / "checkpoint-4").exists()
    assert all(torch.isfinite(t).all() for t in load_file(Path(res["final"]) / "model.safetensors").values())
