"""A run with a time budget (`max_train_minutes`) stops at the first optimizer step past it, and that step is
validated and saved like an evaluation step: the best checkpoint so far becomes the final model and the run is
recorded `time_limit`. A user with a deadline, or one shard of a study that must end inside a machine's lease,
gets a tested model instead of a killed process. A resumed run counts its own minutes. Under accelerate the ranks
agree on the step (rank clocks differ; one rank stopping alone would leave the others waiting)."""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

log = logging.getLogger("distill.train")
clock = time.monotonic  # a module attribute, so a test can run the clock forward


def keep_last_checkpoint(trainer, minutes: float) -> None:
    """A run stopped by its limit resumes from its last checkpoint, not its best: under `save_total_limit: 1`
    transformers deletes every checkpoint but the best when a run ends, so a time-limited run keeps two."""
    if minutes and trainer.save_total_limit == 1:
        trainer.save_total_limit = 2
        log.info("save_total_limit: 1 -> 2 (the step the time limit stops at is kept beside the best, to resume from)")


class StopAtTimeLimit(TrainerCallback):
    def __init__(self, minutes: float):
        self.seconds = minutes * 60
        self.started = 0.0
        self.step: int | None = None  # where the limit stopped the run

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = clock()

    def on_step_end(self, args, state, control, **kwargs):
        if self.step is not None or state.global_step >= state.max_steps or not self._reached(args):
            return  # (a run that ends at its cap anyway ends as usual)
        self.step = state.global_step
        control.should_training_stop = True
        control.should_evaluate = args.eval_strategy != "no"
        control.should_save = args.save_strategy != "no"
        log.warning(
            "step %d: the time limit of %g min is reached: this step is validated and saved, then training stops",
            state.global_step,
            self.seconds / 60,
        )

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.step == state.global_step:  # validated and saved already: not again for an `epoch` strategy
            control.should_evaluate = control.should_save = False

    def _reached(self, args) -> bool:
        import torch.distributed as dist

        reached = clock() - self.started >= self.seconds
        if args.world_size > 1 and dist.is_available() and dist.is_initialized():
            import torch

            flag = torch.tensor([float(reached)], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            reached = bool(flag.item())
        return reached
