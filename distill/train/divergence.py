"""A run whose weights turn non-finite is stopped instead of training NaN weights to the end: its loss, gradient
norm or validation loss is checked at every logging step, and a step that evaluates or saves is always logged
first, so NaN weights are never evaluated as the best nor saved. The best checkpoint from before the divergence
stays the run's final model; without one, nothing usable is left to keep."""

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

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_evaluate or control.should_save:  # look at the step before evaluating or saving it
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._check(state, control, logs or {}, WATCHED)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        # weights that score finite training losses can still evaluate to NaN: such an evaluation is never the best
        if self._check(state, control, metrics or {}, ("eval_loss",)) and args.metric_for_best_model:
            key = args.metric_for_best_model
            metrics[key if key.startswith("eval_") else f"eval_{key}"] = math.nan

    def _check(self, state, control, logs: dict, keys) -> bool:
        if self.step is not None:
            return True
        bad = next((k for k in keys if isinstance(logs.get(k), float) and not math.isfinite(logs[k])), None)
        if bad is None:
            return False
        self.step, self.metric = state.global_step, bad
        control.should_training_stop = True
        control.should_evaluate = False
        control.should_save = False
        log.error(
            "step %d: %s is %s: training stopped (the weights after this step are not usable; a lower "
            "--learning_rate or --max_grad_norm usually avoids it)",
            state.global_step,
            bad,
            logs[bad],
        )
        return True

    def outcome(self, state, learning_rate: float) -> str:
        """'done', or 'diverged' when the best checkpoint (before the divergence) is kept; raises when there is
        none to keep."""
        if self.step is None:
            return "done"
        best = state.best_model_checkpoint
        if not best:
            raise TrainingDiverged(
                f"training diverged at step {self.step} ({self.metric} non-finite at learning_rate "
                f"{learning_rate:g}) and no validated checkpoint precedes it: start again (--overwrite) with a lower "
                "--learning_rate (--resume would keep the checkpoint's optimizer and schedule), with evaluations "
                "and checkpoints on the same steps so the best weights before a divergence are kept"
            )
        log.warning(
            "training diverged at step %d; the final model is the best checkpoint before it (step %s, accuracy %.3f)",
            self.step,
            state.best_global_step,
            state.best_metric,
        )
        return "diverged"
