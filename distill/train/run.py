"""One training run, as a script reads: the inputs checked, examples from the store (audited), the model, a TRL
trainer with letter-scored validation, OUTPUT_DIR/final with the student's card, the run recorded in the store.

    run_training(settings, SFTTrainer, build_examples)   # distill.train.sft and distill.train.dpo call this
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from distill.train.settings import TrainingSettings

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    """What a run reads, checked before any weights load."""

    store: object  # store.db.Store
    audit: object  # distill.audit.AuditReport
    resume: str | None  # the checkpoint to continue from
    max_pixels: int
    replacing: bool = False  # --overwrite set an earlier run aside: removed once this one is ready to train


def check_inputs(settings: TrainingSettings) -> Inputs:
    """The model folder, the store, the leakage audit, the output folder (writable, resumed or replaced) and the
    image cap: every way a run can fail on its inputs fails here, before a weight is loaded."""
    from distill.audit import audit_store, require_clean
    from distill.backends.base import require_local_model
    from distill.data.fileio import require_writable_dir
    from distill.data.student_card import image_cap, read_card
    from distill.errors import UserError
    from distill.train.outputs import prepare_output_dir
    from store.db import Store

    d, model_path = settings.distill, settings.model.model_name_or_path
    require_local_model(model_path)
    card = read_card(model_path)
    if card is not None and card.layout != d.layout:
        if "layout" in settings.explicit:
            raise UserError(
                f"{model_path} was trained with layout {card.layout} (its distill_student.json); {settings.source} "
                f"sets layout {d.layout}: train on from it with layout: {card.layout}"
            )
        log.info("layout: %s (the model's card)", card.layout)
        d.layout = card.layout
    if card is not None and card.captions and not d.captions:
        raise UserError(
            f"{model_path} was trained to answer with its covers' captions in the prompt "
            "(captions: true): train on from it with captions: true too"
        )
    if not Path(d.db).is_file():
        raise FileNotFoundError(f"no store at {d.db}: load data and run the teacher first")
    store = Store(d.db)
    audit = audit_store(store)
    require_clean(audit, d.allow_leakage, settings.kind)
    cap, source = image_cap(model_path, d.max_pixels, given="the recipe's max_pixels")
    log.info("image cap: %d pixels (%s)", cap, source)
    out = Path(settings.trainer.output_dir)
    require_writable_dir(out)
    with settings.trainer.main_process_first(desc="output folder"):  # rank 0 replaces it before the others look
        resume, replacing = prepare_output_dir(str(out), d)
    return Inputs(store, audit, resume, cap, replacing)


def training_items(store, settings: TrainingSettings) -> tuple[list, list]:
    """The store's training items (those augmentation made only with `augmented`) and its validation items."""
    train = store.items(split="train")
    if not settings.distill.augmented:
        train = [it for it in train if not it.transform]
    return train, store.items(split="val")[: settings.distill.val_max_items]


def trainer_class(kind: str, trl_trainer):
    """TRL's trainer with cover-distill's mixins: resumable full fine-tuning, letter-scored validation (alone when
    there are no loss examples), and for SFT the per-task loss."""
    from distill.patches import ResumeFullWeights, ScoredValidationOnly
    from distill.train.tasks import TaskWeightedLoss
    from distill.train.validation import ScoredEvaluation

    mixins = [ResumeFullWeights, ScoredValidationOnly, ScoredEvaluation] + ([TaskWeightedLoss] if kind == "sft" else [])
    return type(f"Distill{trl_trainer.__name__}", (*mixins, trl_trainer), {})


def build_trainer(settings: TrainingSettings, trl_trainer, model, processor, examples, val_examples, val_items, cap):
    from transformers import EarlyStoppingCallback

    from distill.data.student_card import StudentCard
    from distill.train.datasets import to_dataset
    from distill.train.divergence import StopOnNonFinite
    from distill.train.examples import KINDS
    from distill.train.metrics import MetricsFile, console_callbacks
    from distill.train.model import peft_config
    from distill.train.outputs import CardOnSave
    from distill.train.time_limit import StopAtTimeLimit
    from distill.train.validation import Validation

    d, args = settings.distill, settings.trainer
    card = StudentCard(layout=d.layout, max_pixels=cap, captions=d.captions)
    # the time limit before the divergence guard: a step it makes evaluate is checked for NaN first
    timer = [StopAtTimeLimit(d.max_train_minutes)] if d.max_train_minutes else []
    callbacks = [MetricsFile(Path(args.output_dir) / "metrics.jsonl"), *timer, StopOnNonFinite(), CardOnSave(card)]
    if d.checkpoint_mlps:
        from distill.train.mlp_checkpointing import decoder_layers, mlp_checkpointing_callback

        decoder_layers(model)  # a model without them is refused before the trainer is built
        callbacks.append(mlp_checkpointing_callback())
    if d.early_stopping_patience and args.eval_strategy != "no":
        callbacks.append(EarlyStoppingCallback(d.early_stopping_patience))
    if d.curriculum != "none" and args.train_sampling_strategy != "sequential":  # examples come in curriculum order
        log.info("curriculum %s: train_sampling_strategy -> sequential (keep the examples' order)", d.curriculum)
        args.train_sampling_strategy = "sequential"
    extra = {}
    if settings.kind == "sft":
        extra = {"task_weights": tuple(d.weights()[k] for k in KINDS), "task_loss": d.task_loss}
    trainer = trainer_class(settings.kind, trl_trainer)(
        model=model,
        args=args,
        train_dataset=to_dataset(examples, cap),
        eval_dataset=to_dataset(val_examples, cap) if val_examples else None,
        processing_class=processor,
        peft_config=peft_config(settings.model, d),
        callbacks=callbacks,
        validation=Validation(val_items, cap, d.layout, d.captions),
        **extra,
    )
    console_callbacks(trainer)
    return trainer


def train(trainer, settings: TrainingSettings, resume: str | None) -> None:
    # PEFT keeps LoRA weights in float32 and casts each adapted layer's input to them, which bf16 autocast casts
    # straight back for the product: two copies of the whole activation per adapted linear per pass, for a
    # product computed in bf16 either way. Only under autocast: without it a bf16 input would meet float32 weights.
    from peft.helpers import disable_input_dtype_casting

    skip_casts = bool(settings.model.use_peft and settings.trainer.bf16 and settings.distill.skip_adapter_casts)
    if skip_casts:
        log.info("LoRA: PEFT's input casts to the float32 adapters skipped under bf16 autocast")
    if resume:
        log.info("resuming from %s", resume)
        continue_patience(trainer, resume)
    with disable_input_dtype_casting(trainer.model, active=skip_casts):
        trainer.train(resume_from_checkpoint=resume)


def continue_patience(trainer, checkpoint: str) -> None:
    """A resumed run keeps its count of evaluations without gain, so early stopping ends it where an unbroken run
    would have ended. (transformers' `restore_callback_states_from_checkpoint` restores every callback at once,
    re-made from the checkpoint's arguments: a patience given anew would be ignored.)"""
    from transformers import EarlyStoppingCallback

    from distill.train.outputs import early_stopping

    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    count, _ = early_stopping(state, every_n_steps=trainer.args.eval_strategy == "steps")
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, EarlyStoppingCallback):
            callback.early_stopping_patience_counter = count


def finish(
    trainer, settings: TrainingSettings, processor, inputs: Inputs, counts: dict, started: str, status: str
) -> dict:
    """OUTPUT_DIR/final (the best checkpoint) with the student's card, the metrics plot, the merged model when
    asked, and the run in the store's `train_runs`."""
    from distill.data.student_card import StudentCard, write_card
    from distill.train.metrics import plot_metrics
    from distill.train.outputs import write_final

    d, args = settings.distill, settings.trainer
    out = Path(args.output_dir)
    final, best = write_final(trainer, processor, out)
    write_card(final, StudentCard(layout=d.layout, max_pixels=inputs.max_pixels, captions=d.captions))
    plot_metrics(out / "metrics.jsonl", out / "metrics.png")
    state = trainer.state
    result = {
        "final": str(final),
        "best_checkpoint": best,
        "best_step": getattr(state, "best_global_step", None),
        "best_metric": state.best_metric,
        "world_size": args.world_size,
        "status": status,
    }
    if d.merge and settings.model.use_peft:
        from distill.train.merge import merge_adapter

        base = settings.model.model_name_or_path
        result["merged"] = str(merge_adapter(final, out / "merged", base, overwrite=True))
    metrics = {k: v for r in state.log_history for k, v in r.items() if isinstance(v, (int, float))}
    result["run_id"] = inputs.store.record_train_run(
        settings.kind,
        {"distill": asdict(d), "model": asdict(settings.model), "training": args.to_dict()},
        counts | {"world_size": args.world_size},
        args.output_dir,
        result["best_step"],
        metrics | {"best_metric": state.best_metric},
        started,
        status,
        d.allow_leakage,
        inputs.audit.as_dict(),
    )
    return result


def outcome(trainer) -> str:
    """'done', 'time_limit' (stopped by max_train_minutes) or 'diverged' (the best checkpoint before a divergence
    kept); raises when only NaN weights are left."""
    from distill.train.divergence import StopOnNonFinite
    from distill.train.time_limit import StopAtTimeLimit

    callbacks = trainer.callback_handler.callbacks
    guard = next(cb for cb in callbacks if isinstance(cb, StopOnNonFinite))
    status = guard.outcome(trainer.state, trainer.args.learning_rate)
    if status == "done" and any(isinstance(cb, StopAtTimeLimit) and cb.step is not None for cb in callbacks):
        return "time_limit"
    return status


def run_training(settings: TrainingSettings, trl_trainer, build_examples) -> dict:
    """`build_examples(store, train_items, val_items, settings)` -> (examples, validation examples, counts)."""
    from distill.train.determinism import determinism_of_this_run

    with determinism_of_this_run(settings.trainer):
        return _run_training(settings, trl_trainer, build_examples)


def _run_training(settings: TrainingSettings, trl_trainer, build_examples) -> dict:
    from distill.patches import check_trainer_internals
    from distill.train.model import load_model
    from distill.train.outputs import discard_replaced, restore_replaced
    from store.db import now

    check_trainer_internals()
    started, t0 = now(), time.perf_counter()
    inputs = check_inputs(settings)
    out, replacing = Path(settings.trainer.output_dir), inputs.replacing
    try:
        if settings.trainer.use_cpu:
            from distill.patches import compact_logprobs_on_cpu

            compact_logprobs_on_cpu()
        train_items, val_items = training_items(inputs.store, settings)
        examples, val_examples, counts = build_examples(inputs.store, train_items, val_items, settings)
        counts["val_items"] = len(val_items)
        log.info("%s: %s", settings.kind, counts)
        model, processor = load_model(settings.model, settings.distill, settings.trainer, inputs.max_pixels)
        trainer = build_trainer(
            settings, trl_trainer, model, processor, examples, val_examples, val_items, inputs.max_pixels
        )
    except BaseException:
        if replacing:
            restore_replaced(out)
        raise
    if replacing:
        discard_replaced(out)
    train(trainer, settings, inputs.resume)
    status = outcome(trainer)  # on every rank: a divergence with nothing to keep ends them all alike
    if not trainer.is_world_process_zero():  # under accelerate: rank 0 writes, the others wait for it
        trainer.accelerator.wait_for_everyone()
        return {"final": str(Path(settings.trainer.output_dir) / "final"), "rank": trainer.args.process_index}
    result = finish(trainer, settings, processor, inputs, counts, started, status)
    best = result["best_metric"]
    log.info(
        "%s done in %.0fs: final model %s%s",
        settings.kind,
        time.perf_counter() - t0,
        result["final"],
        f" (best step {result['best_step']}, accuracy {best:.3f})" if best is not None else "",
    )
    trainer.accelerator.wait_for_everyone()
    return result
