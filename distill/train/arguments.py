"""cover-distill's own fields of a training recipe; TRL's SFTConfig/DPOConfig and ModelConfig hold the rest."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.data.images import DEFAULT_MAX_PIXELS
from distill.errors import UserError
from distill.train.examples import ExampleOptions


@dataclass(kw_only=True)
class DistillArguments(ExampleOptions):
    """cover-distill's own training fields: what the student trains on (ExampleOptions) and how."""

    db: str = field(
        metadata={"help": "The store with items and teacher traces (default: the `db` of the recipe's `pipeline:`)."}
    )
    augmented: bool = field(
        default=True,
        metadata={"help": "Items `distill augment` made train too (answer task only: they have no teacher traces)."},
    )
    max_pixels: int | None = field(
        default=None,
        metadata={
            "help": "Image cap of training and validation, recorded with the model for DPO and predict (default: the "
            f"cap the starting model was trained at, else {DEFAULT_MAX_PIXELS:,}, LLaMA-Factory's)."
        },
    )
    val_max_items: int = field(default=256, metadata={"help": "Validation items scored at each evaluation."})
    early_stopping_patience: int = field(
        default=0, metadata={"help": "Evaluations without gain before stopping (0: off)."}
    )
    max_train_minutes: float = field(
        default=0.0,
        metadata={
            "help": "Stop training after this many minutes (0: no limit): the step in progress is validated and "
            "saved, the best checkpoint so far becomes the final model, and the run is recorded `time_limit` "
            "(a resumed run counts its own minutes; leave a margin for that last validation and save); that step's "
            "checkpoint is kept beside the best (save_total_limit at least 2), so --resume continues from it."
        },
    )
    freeze_vision: bool = field(default=True, metadata={"help": "Keep the vision tower frozen."})
    skip_adapter_casts: bool = field(
        default=True,
        metadata={
            "help": "LoRA under bf16: skip PEFT's casts of each adapted layer's input to the float32 adapters and "
            "back (autocast computes the product in bf16 either way, so the result is the same without the copies)."
        },
    )
    varlen_vision: bool = field(
        default=True,
        metadata={
            "help": "On CUDA, run the vision tower's windowed attention as one varlen flash call per layer, in the "
            "run's half precision (false: transformers' one SDPA call per window)."
        },
    )
    checkpoint_mlps: bool | None = field(
        default=None,
        metadata={
            "help": "Recompute each decoder layer's MLP in the backward pass and keep the rest of its activations: "
            "the 7B's LoRA under naive training's memory at most of no checkpointing's speed (bench/README.md). "
            "Excludes gradient_checkpointing (whole layers: less memory, slower). Default: on for a CUDA run whose "
            "recipe and flags leave gradient_checkpointing and its kwargs unset (and no DeepSpeed or FSDP "
            "activation checkpointing), off otherwise. As a flag it takes a value: --checkpoint_mlps true|false."
        },
    )
    train_projector: bool = field(default=False, metadata={"help": "Train the vision-language merger too."})
    merge: bool = field(default=False, metadata={"help": "Write a merged standalone model to OUTPUT_DIR/merged."})
    resume: bool = field(default=False, metadata={"help": "Continue an existing OUTPUT_DIR from its last checkpoint."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing OUTPUT_DIR."})
    allow_leakage: bool = field(
        default=False,
        metadata={
            "help": "Train even if the audit finds held-out (dev/test) items reachable from the training data "
            "(recorded on the run)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.max_train_minutes < 0:
            raise UserError(f"max_train_minutes must be 0 (no limit) or more, not {self.max_train_minutes:g}")
        if self.resume and self.overwrite:
            raise UserError("--resume and --overwrite exclude each other")
