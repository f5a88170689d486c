"""What SFT and DPO share: model loading with LoRA or full fine-tuning, the validation hook, metrics files,
checkpoint resume, the run record in the store."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import TrainerCallback

from distill.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

log = logging.getLogger(__name__)

LANGUAGE_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class DistillArguments:
    """cover-distill's own fields of a training recipe (TRL's SFTConfig/DPOConfig and ModelConfig hold the rest)."""

    db: str = field(default="runs/demo/traces.db", metadata={"help": "The store with items and teacher traces."})
    teacher_run: str | None = field(default=None, metadata={"help": "Only traces of this graph run (default all)."})
    direct_share: float = field(default=0.5, metadata={
        "help": "Direct-answer (letter only) examples as a share of rationale examples; >= 1: one per train item."})
    include_hinted: bool = field(default=False, metadata={"help": "Train on rationalized (hinted) traces too."})
    templates: bool = field(default=True, metadata={"help": "Vary the system prompt over the template set."})
    curriculum: str = field(default="none", metadata={"help": "none | easy_to_hard | staged"})
    pairs_per_item: int = field(default=2, metadata={"help": "DPO: most preference pairs per item."})
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={"help": "Image cap; use the same everywhere."})
    val_max_items: int = field(default=256, metadata={"help": "Validation items scored at each evaluation."})
    early_stopping_patience: int = field(default=0, metadata={"help": "Evaluations without gain before stopping "
                                                                      "(0: off)."})
    freeze_vision: bool = field(default=True, metadata={"help": "Keep the vision tower frozen."})
    train_projector: bool = field(default=False, metadata={"help": "Train the vision-language merger too."})
    merge: bool = field(default=False, metadata={"help": "Write a merged standalone model to OUTPUT_DIR/merged."})


def load_model(margs, dargs: DistillArguments, training_args):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dtype = torch.bfloat16 if getattr(training_args, "bf16", False) else torch.float32
    if margs.dtype not in (None, "auto"):
        dtype = getattr(torch, margs.dtype)
    kw = {"dtype": dtype}
    if margs.attn_implementation:
        kw["attn_implementation"] = margs.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(margs.model_name_or_path, **kw)
    processor = AutoProcessor.from_pretrained(margs.model_name_or_path)
    ip = processor.image_processor
    ip.size = {"shortest_edge": DEFAULT_MIN_PIXELS, "longest_edge": dargs.max_pixels}  # the one image policy
    for attr, val in (("max_pixels", dargs.max_pixels), ("min_pixels", DEFAULT_MIN_PIXELS)):
        if hasattr(ip, attr):
            setattr(ip, attr, val)
    if not margs.use_peft:
        for name, p in model.named_parameters():
            if dargs.freeze_vision and ".visual." in f".{name}" and not (dargs.train_projector and "merger" in name):
                p.requires_grad_(False)
    return model, processor


def peft_config(margs, dargs: DistillArguments):
    if not margs.use_peft:
        return None
    from peft import LoraConfig

    targets = margs.lora_target_modules or LANGUAGE_LINEARS
    if isinstance(targets, str):
        targets = [targets]
    if targets == ["all-linear"]:
        targets = LANGUAGE_LINEARS
    # a regex keeps LoRA on the language model; the vision tower stays frozen unless asked otherwise
    scope = r".*\.(language_model|visual)\." if not dargs.freeze_vision else r".*\.language_model\."
    regex = scope + r".*\.(" + "|".join(targets) + r")"
    return LoraConfig(r=margs.lora_r, lora_alpha=margs.lora_alpha, lora_dropout=margs.lora_dropout,
                      target_modules=regex, modules_to_save=["merger"] if dargs.train_projector else None,
                      use_rslora=margs.use_rslora, use_dora=margs.use_dora, task_type="CAUSAL_LM")


class ScoredEvaluation:
    """Mixed into a TRL trainer: every evaluation also scores the validation items by letter probability,
    so `metric_for_best_model="accuracy"` keeps the best checkpoint and early stopping can watch it."""

    val_items: list = []
    val_max_pixels: int = DEFAULT_MAX_PIXELS

    def evaluate(self, *args, **kwargs):
        metrics = super().evaluate(*args, **kwargs) if self.eval_dataset is not None else {}
        if not self.val_items:
            return metrics
        from distill.train.validation import letter_accuracy

        scores = letter_accuracy(self.model, self.processing_class, self.val_items, self.val_max_pixels,
                                 self.args.per_device_eval_batch_size)
        extra = {"eval_accuracy": scores["accuracy"], "eval_gold_prob": scores["gold_prob"]}
        metrics.update(extra)
        self.log(extra)
        return metrics


class MetricsFile(TrainerCallback):
    """Every logged metric, one JSON line per log call, in OUTPUT_DIR/metrics.jsonl."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


def plot_metrics(metrics_path: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()] if metrics_path.exists() else []
    keys = [k for k in ("loss", "eval_loss", "eval_accuracy", "learning_rate", "rewards/margins",
                        "rewards/accuracies") if any(k in r for r in rows)]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pts = [(r["step"], r[k]) for r in rows if k in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None)
        ax.set(title=k, xlabel="step")
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def last_checkpoint(output_dir: str) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    p = Path(output_dir)
    return get_last_checkpoint(str(p)) if p.is_dir() else None


def record_run(db: str, kind: str, training_args, dargs, margs, counts: dict, trainer, started: str,
               status: str) -> str:
    from store import open_store
    from store.db import _dumps, new_id, now

    state = trainer.state
    metrics = {k: v for r in state.log_history for k, v in r.items() if isinstance(v, (int, float))}
    run_id = f"{kind}-{new_id()[:8]}"
    best = state.best_global_step if hasattr(state, "best_global_step") else None
    s = open_store(db)
    with s.db.conn:
        s.db["train_runs"].insert({
            "id": run_id, "kind": kind, "config": _dumps({"distill": asdict(dargs), "model": asdict(margs),
                                                          "training": training_args.to_dict()}),
            "dataset": _dumps(counts), "output_dir": training_args.output_dir, "best_step": best,
            "metrics": _dumps(metrics | {"best_metric": state.best_metric}), "started_at": started,
            "ended_at": now(), "status": status})
    s.close()
    return run_id


def finish(trainer, processor, training_args, dargs, margs, counts, kind: str, started: str) -> dict:
    """Write OUTPUT_DIR/final: the best checkpoint by validation accuracy when there is one, else the last
    weights. The best is copied from its checkpoint rather than reloaded through the Trainer, whose in-place
    reload does not map Qwen2.5-VL's saved key names back."""
    import shutil

    out = Path(training_args.output_dir)
    final = out / "final"
    best = trainer.state.best_model_checkpoint
    if not trainer.is_world_process_zero():  # under accelerate: rank 0 writes, the others wait for it
        trainer.accelerator.wait_for_everyone()
        return {"final": str(final), "rank": trainer.args.process_index}
    if final.exists():
        shutil.rmtree(final)
    if best and Path(best).is_dir():
        final.mkdir(parents=True)
        for f in Path(best).iterdir():
            if f.is_file() and (f.suffix in (".safetensors", ".json") and not f.name.startswith(("trainer_state",
                                                                                                 "optimizer"))):
                shutil.copy2(f, final / f.name)
    else:
        trainer.save_model(str(final))
    processor.save_pretrained(str(final))
    plot_metrics(out / "metrics.jsonl", out / "metrics.png")
    result = {"final": str(final), "best_checkpoint": best,
              "best_step": getattr(trainer.state, "best_global_step", None),
              "best_metric": trainer.state.best_metric}
    if dargs.merge and margs.use_peft:
        from distill.train.merge import merge_adapter

        result["merged"] = str(merge_adapter(final, out / "merged", margs.model_name_or_path))
    counts = counts | {"world_size": training_args.world_size}
    result["run_id"] = record_run(dargs.db, kind, training_args, dargs, margs, counts, trainer, started, "done")
    result["world_size"] = training_args.world_size
    log.info("%s done: %s", kind, result)
    trainer.accelerator.wait_for_everyone()
    return result


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


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
    training_args.load_best_model_at_end = False  # `finish` takes the best checkpoint instead (see there)
    if training_args.report_to in (None, "all", ["all"]):
        training_args.report_to = ["tensorboard"]


def run_training(kind: str, trainer_cls, build, dargs, training_args, margs) -> dict:
    """Examples from the store -> a TRL trainer with letter-scored validation -> OUTPUT_DIR/final."""
    from transformers import EarlyStoppingCallback

    from distill.train.datasets import to_dataset
    from store import open_store

    started = now_iso()
    adjust(training_args)
    if training_args.use_cpu:
        from distill.train.cpu import compact_logprobs_on_cpu

        compact_logprobs_on_cpu()
    store = open_store(dargs.db)
    train_items, val_items = store.items(split="train"), store.items(split="val")[: dargs.val_max_items]
    examples, val_examples, counts = build(store, train_items, val_items, dargs, training_args)
    counts["val_items"] = len(val_items)
    log.info("%s: %s", kind, counts)
    model, processor = load_model(margs, dargs, training_args)
    if dargs.freeze_vision:
        from distill.train.checkpointing import text_only_input_grads

        text_only_input_grads(model)

    class Trainer(ScoredEvaluation, trainer_cls):
        pass

    Trainer.val_items, Trainer.val_max_pixels = val_items, dargs.max_pixels
    out = Path(training_args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    callbacks = [MetricsFile(out / "metrics.jsonl")]
    if dargs.early_stopping_patience and training_args.eval_strategy != "no":
        callbacks.append(EarlyStoppingCallback(dargs.early_stopping_patience))
    trainer = Trainer(model=model, args=training_args, train_dataset=to_dataset(examples, dargs.max_pixels),
                      eval_dataset=to_dataset(val_examples, dargs.max_pixels) if val_examples else None,
                      processing_class=processor, peft_config=peft_config(margs, dargs), callbacks=callbacks)
    if dargs.curriculum != "none":  # the examples are already in curriculum order: keep it
        from torch.utils.data import SequentialSampler

        trainer._get_train_sampler = lambda *a, **k: SequentialSampler(trainer.train_dataset)
    resume = last_checkpoint(training_args.output_dir)
    if resume:
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    return finish(trainer, processor, training_args, dargs, margs, counts, kind, started)
