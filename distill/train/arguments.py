"""cover-distill's own fields of a training recipe; TRL's SFTConfig/DPOConfig and ModelConfig hold the rest."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.data.images import DEFAULT_MAX_PIXELS
from distill.errors import UserError
from distill.train.examples import ExampleOptions


@dataclass(kw_only=True)
class DistillArguments(ExampleOptions):
    """cover-distill's own training fields: what the student trains on (ExampleOptions) and how."""

    db: str = field(metadata={"help": "The store with items and teacher traces (required)."})
    augmented: bool = field(
        default=True,
        metadata={"help": "Items `distill augment` made train too (answer task only: they have no teacher traces)."},
    )
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={"help": "Image cap; use the same everywhere."})
    val_max_items: int = field(default=256, metadata={"help": "Validation items scored at each evaluation."})
    early_stopping_patience: int = field(
        default=0, metadata={"help": "Evaluations without gain before stopping (0: off)."}
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
            "help": "On CUDA, run the vision tower's windowed attention as one varlen flash call per layer "
            "(false: transformers' one SDPA call per window)."
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
        if self.resume and self.overwrite:
            raise UserError("--resume and --overwrite exclude each other")


def training_parser(config_cls):
    """TRL's parser over cover-distill's arguments, the trainer's config and TRL's ModelConfig. ModelConfig loads
    weights in float32 unless told otherwise; here `dtype` defaults to "auto" (`distill.train.model.load_dtype`:
    bf16 for a bf16 LoRA run's frozen base). A recipe's `dtype` still wins."""
    from trl import ModelConfig, TrlParser

    parser = TrlParser((DistillArguments, config_cls, ModelConfig))
    parser.set_defaults(dtype="auto")
    return parser
