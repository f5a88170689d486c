"""A run whose gradients turn non-finite is stopped at the next logging step instead of training NaN weights to
the end (transformers' logging_nan_inf_filter shows such a window's loss as 0; its grad_norm says NaN). The
best checkpoint from before it stays the run's final model; without one, nothing usable is left to keep."""

from __future__ import annotations

import logging
import math

from transformers import TrainerCallback

from distill.errors import UserError

log = logging.getLogger("distill.train")
WATCHED = ("grad_norm", "loss")


class TrainingDiverged(UserError):
    pass


class StopOnNonFinite(TrainerCallback):
    """Stops training at the first logged non-finite gradient norm or loss, before that step's evaluation and
    checkpoint (weights past it are NaN and must not become the best or the last checkpoint)."""

    def __init__(self):
        self.step: int | None = None
        self.metric: str | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.step is not None or not logs:
            return
        bad = next((k for k in WATCHED if isinstance(logs.get(k), float) and not math.isfinite(logs[k])), None)
        if bad is None:
            return
        self.step, self.metric = state.global_step, bad
        control.should_training_stop = True
        control.should_evaluate = False
        control.should_save = False
        log.error(
            "step %d: %s is %s: training stopped (the weights after this step are not usable; "
            "a lower --learning_rate or --max_grad_norm usually avoids it)",
            state.global_step,
            bad,
            logs[bad],
        )

    def outcome(self, state, learning_rate: float) -> str:
        """'done', or 'diverged' when the best checkpoint (before the divergence) is kept; raises when there is
        none to keep."""
        if self.step is None:
            return "done"
        best = state.best_model_checkpoint
        if not best:
            raise TrainingDiverged(
                f"training diverged at step {self.step} ({self.metric} non-finite at learning_rate "
                f"{learning_rate:g}) and no validated checkpoint precedes it: lower --learning_rate, or set "
                "--eval_strategy steps so the best weights before a divergence are kept"
            )
        log.warning(
            "training diverged at step %d; the final model is the best checkpoint before it (step %s, accuracy %.3f)",
            self.step,
            state.best_global_step,
            state.best_metric,
        )
        return "diverged"
