"""The output folder: refused when it exists (unless resuming or overwriting; an overwritten run is only removed
once the new one is ready to train), resumed from its last checkpoint, and finished with OUTPUT_DIR/final: the
best checkpoint by validation accuracy, else the last weights."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from transformers import TrainerCallback

from distill.data.student_card import StudentCard, write_card
from distill.train.arguments import DistillArguments


def prepare_output_dir(output_dir: str, dargs: DistillArguments) -> tuple[str | None, bool]:
    """The checkpoint to resume from, if any, and whether an earlier run was set aside to be replaced. An existing,
    non-empty folder is only reused when asked."""
    out = Path(output_dir)
    used = out.is_dir() and any(out.iterdir())
    set_aside = used and dargs.overwrite
    if set_aside:  # until the new run is ready to train (discard_replaced)
        shutil.rmtree(replaced(out), ignore_errors=True)
        out.rename(replaced(out))
        used = False
    if used and not dargs.resume:
        raise FileExistsError(
            f"output folder {out} exists: pass --resume to continue it from its last checkpoint, "
            "or --overwrite to replace it"
        )
    checkpoint = last_checkpoint(out) if used else None
    if dargs.resume and used and checkpoint is None:
        raise FileNotFoundError(f"--resume: {out} holds no checkpoint-* folder to continue from")
    out.mkdir(parents=True, exist_ok=True)
    return checkpoint, set_aside


def last_checkpoint(out: Path) -> str | None:
    """The newest complete checkpoint-N in `out`: one holding its trainer state, the last file the Trainer writes
    into it (a run killed while saving leaves a checkpoint without it, which cannot be resumed from)."""
    done = [c for c in out.glob("checkpoint-*") if c.name[11:].isdigit() and (c / "trainer_state.json").is_file()]
    return str(max(done, key=lambda c: int(c.name[11:]))) if done else None


def early_stopping(state: dict, every_n_steps: bool = True) -> tuple[int, float]:
    """From a checkpoint's trainer state: evaluations already waited without gain, and the patience they count
    against (infinite when the run had none). `every_n_steps`: the run validated on a step schedule (`eval_steps`),
    the only one whose off-schedule validations the state tells apart (under an epoch schedule the count is kept)."""
    saved = state.get("stateful_callbacks", {}).get("EarlyStoppingCallback", {})
    saved = saved[0] if isinstance(saved, list) and saved else saved  # (a list when several were saved)
    if not isinstance(saved, dict):
        return 0, math.inf
    waited = saved.get("attributes", {}).get("early_stopping_patience_counter", 0)
    if waited and every_n_steps and evaluated_off_schedule_without_gain(state):
        waited -= 1
    return waited, saved.get("args", {}).get("early_stopping_patience", math.inf)


def evaluated_off_schedule_without_gain(state: dict) -> bool:
    """Whether the checkpoint's own step was validated off the evaluation schedule (where a time limit, or a cap that
    is not a multiple of `eval_steps`, stopped the run) without a new best. Such an evaluation counted as one waited
    without gain, though an unbroken run would not have made it: a run continued from there counts it out, and ends
    where the unbroken run would have."""
    step, every = state.get("global_step"), state.get("eval_steps")
    if not step or not every or step % every == 0 or state.get("best_global_step") == step:
        return False
    return any(e.get("step") == step and any(k.startswith("eval_") for k in e) for e in state.get("log_history", []))


def replaced(out: Path) -> Path:
    """Where --overwrite keeps the earlier run while the new one loads its data and weights."""
    return out.parent / f".{out.name}.replaced"


def discard_replaced(out: Path) -> None:
    """The new run is ready to train: the earlier one it replaces goes."""
    shutil.rmtree(replaced(out), ignore_errors=True)


def restore_replaced(out: Path) -> None:
    """The new run failed before training: the earlier one comes back, as if nothing had been asked."""
    if replaced(out).is_dir():
        shutil.rmtree(out, ignore_errors=True)
        replaced(out).rename(out)


def write_final(trainer, processor, out: Path) -> tuple[Path, str | None]:
    """Copy the best checkpoint's weights to OUTPUT_DIR/final (not the Trainer's in-place reload, which does not
    map Qwen2.5-VL's saved key names back in this transformers), else save the last weights there."""
    final = out / "final"
    best = trainer.state.best_model_checkpoint
    if final.exists():
        shutil.rmtree(final)
    if best and Path(best).is_dir():
        final.mkdir(parents=True)
        for f in Path(best).iterdir():
            if (
                f.is_file()
                and f.suffix in (".safetensors", ".json")
                and not f.name.startswith(("trainer_state", "optimizer"))
            ):
                shutil.copy2(f, final / f.name)
    else:
        trainer.save_model(str(final))
    processor.save_pretrained(str(final))
    return final, best


class CardOnSave(TrainerCallback):
    """Every checkpoint carries the student's card, so DPO, predict or merge from a checkpoint read its prompts as
    it was trained to."""

    def __init__(self, card: StudentCard):
        self.card = card

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            write_card(checkpoint, self.card)
