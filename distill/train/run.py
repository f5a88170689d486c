"""One training run, as a script reads: examples from the store (audited), a TRL trainer with letter-scored
validation, OUTPUT_DIR/final, the run recorded in the store."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from distill.train.arguments import DistillArguments

log = logging.getLogger(__name__)


def device_flags(argv: list[str]) -> list[str]:
    """Without a GPU, TRL's bf16 default fails at parse time: train in fp32 on the CPU instead."""
    import torch

    if torch.cuda.is_available() or "--use_cpu" in argv:
        return argv
    return list(argv) + ["--bf16", "False", "--use_cpu", "True"]


def adjust(training_args) -> None:
    """Settings a VLM run must have, whatever the recipe says."""
    import torch

    training_args.max_length = None  # truncation would cut image tokens ("features and tokens do not match")
    training_args.remove_unused_columns = False  # rows are decoded lazily from one JSON column
    if not torch.cuda.is_available():
        training_args.bf16 = False
        training_args.use_cpu = True
    if training_args.eval_strategy != "no":
        training_args.metric_for_best_model = training_args.metric_for_best_model or "accuracy"
        if training_args.metric_for_best_model in ("accuracy", "eval_accuracy"):
            training_args.greater_is_better = True
    training_args.load_best_model_at_end = False  # `write_final` takes the best checkpoint instead
    if training_args.report_to in (None, "all", ["all"]):
        training_args.report_to = ["tensorboard"]


def run_training(kind: str, trainer_cls, build, dargs: DistillArguments, training_args, margs) -> dict:
    from peft.helpers import disable_input_dtype_casting
    from transformers import EarlyStoppingCallback

    from distill.audit import audit_store, require_clean
    from distill.backends.base import require_local_model
    from distill.data.student import recorded_captions, write_layout
    from distill.errors import UserError
    from distill.patches import ResumeFullWeights, ScoredValidationOnly, check_trainer_internals
    from distill.train.datasets import to_dataset
    from distill.train.examples import KINDS
    from distill.train.metrics import MetricsFile, console_callbacks, plot_metrics
    from distill.train.model import load_model, peft_config
    from distill.train.outputs import prepare_output_dir, write_final
    from distill.train.validation import ScoredEvaluation
    from store.db import Store, now

    check_trainer_internals()
    started = now()
    t0 = time.perf_counter()
    adjust(training_args)
    require_local_model(margs.model_name_or_path)
    if recorded_captions(margs.model_name_or_path) and not dargs.captions:
        raise UserError(
            f"{margs.model_name_or_path} was trained to answer with its covers' captions in the prompt "
            "(captions: true): train on from it with captions: true too"
        )
    if not Path(dargs.db).is_file():
        raise FileNotFoundError(f"no store at {dargs.db}: load data and run the teacher first")
    store = Store(dargs.db)
    audit = audit_store(store)
    require_clean(audit, dargs.allow_leakage, kind)
    with training_args.main_process_first(desc="output folder"):  # rank 0 replaces it before the others look
        resume = prepare_output_dir(training_args.output_dir, dargs)
    if training_args.use_cpu:
        from distill.patches import compact_logprobs_on_cpu

        compact_logprobs_on_cpu()
    train_items, val_items = store.items(split="train"), store.items(split="val")[: dargs.val_max_items]
    if not dargs.augmented:
        train_items = [it for it in train_items if not it.transform]
    examples, val_examples, counts = build(store, train_items, val_items, dargs, training_args)
    counts["val_items"] = len(val_items)
    log.info("%s: %s", kind, counts)
    model, processor = load_model(margs, dargs, training_args)

    mixins = [ResumeFullWeights, ScoredValidationOnly, ScoredEvaluation]
    if kind == "sft":
        from distill.train.tasks import TaskWeightedLoss

        mixins.append(TaskWeightedLoss)
    Trainer = type("Trainer", (*mixins, trainer_cls), {})
    if kind == "sft":
        Trainer.task_weights = tuple(dargs.weights()[k] for k in KINDS)
        Trainer.task_loss = dargs.task_loss
    Trainer.val_items, Trainer.val_max_pixels, Trainer.val_layout = val_items, dargs.max_pixels, dargs.layout
    Trainer.val_captions = dargs.captions
    out = Path(training_args.output_dir)
    callbacks = [MetricsFile(out / "metrics.jsonl")]
    if dargs.early_stopping_patience and training_args.eval_strategy != "no":
        callbacks.append(EarlyStoppingCallback(dargs.early_stopping_patience))
    if dargs.curriculum != "none":  # the examples are already in curriculum order: keep it
        training_args.train_sampling_strategy = "sequential"
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=to_dataset(examples, dargs.max_pixels),
        eval_dataset=to_dataset(val_examples, dargs.max_pixels) if val_examples else None,
        processing_class=processor,
        peft_config=peft_config(margs, dargs),
        callbacks=callbacks,
    )
    console_callbacks(trainer)
    # PEFT keeps LoRA weights in float32 and casts each adapted layer's input to them, which bf16 autocast casts
    # straight back for the product: two copies of the whole activation per adapted linear per pass, for a
    # product computed in bf16 either way. Only under autocast: without it a bf16 input would meet float32 weights.
    skip_casts = bool(margs.use_peft and training_args.bf16 and dargs.skip_adapter_casts)
    if skip_casts:
        log.info("LoRA: PEFT's input casts to the float32 adapters skipped under bf16 autocast")
    if resume:
        log.info("resuming from %s", resume)
    with disable_input_dtype_casting(trainer.model, active=skip_casts):
        trainer.train(resume_from_checkpoint=resume)
    if not trainer.is_world_process_zero():  # under accelerate: rank 0 writes, the others wait for it
        trainer.accelerator.wait_for_everyone()
        return {"final": str(out / "final"), "rank": trainer.args.process_index}
    final, best = write_final(trainer, processor, out)
    write_layout(final, dargs.layout, max_pixels=dargs.max_pixels, captions=dargs.captions)
    plot_metrics(out / "metrics.jsonl", out / "metrics.png")
    result = {
        "final": str(final),
        "best_checkpoint": best,
        "best_step": getattr(trainer.state, "best_global_step", None),
        "best_metric": trainer.state.best_metric,
        "world_size": training_args.world_size,
    }
    if dargs.merge and margs.use_peft:
        from distill.train.merge import merge_adapter

        result["merged"] = str(merge_adapter(final, out / "merged", margs.model_name_or_path, overwrite=True))
    metrics = {k: v for r in trainer.state.log_history for k, v in r.items() if isinstance(v, (int, float))}
    result["run_id"] = store.record_train_run(
        kind,
        {"distill": asdict(dargs), "model": asdict(margs), "training": training_args.to_dict()},
        counts | {"world_size": training_args.world_size},
        training_args.output_dir,
        result["best_step"],
        metrics | {"best_metric": trainer.state.best_metric},
        started,
        "done",
        dargs.allow_leakage,
        audit.as_dict(),
    )
    log.info(
        "%s done in %.0fs: final model %s%s",
        kind,
        time.perf_counter() - t0,
        final,
        f" (best step {result['best_step']}, accuracy {result['best_metric']:.3f})"
        if result["best_metric"] is not None
        else "",
    )
    trainer.accelerator.wait_for_everyone()
    return result
