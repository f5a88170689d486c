"""cover-distill's own fields of a training recipe; TRL's SFTConfig/DPOConfig and ModelConfig hold the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from distill.data.images import DEFAULT_MAX_PIXELS
from distill.data.student import DEFAULT_LAYOUT


@dataclass
class DistillArguments:
    db: str = field(metadata={"help": "The store with items and teacher traces (required)."})
    teacher_run: str | None = field(default=None, metadata={"help": "Only traces of this graph run (default all)."})
    rationales: bool = field(
        default=True,
        metadata={"help": "Train on the teacher's accepted rationales (false: gold letters only, as direct answers)."},
    )
    augmented: bool = field(
        default=True,
        metadata={"help": "Items `distill augment` made train too (as direct answers: they have no teacher traces)."},
    )
    direct_share: float = field(
        default=0.5,
        metadata={
            "help": "Direct-answer (letter only) examples as a share of rationale examples; >= 1: one per train item."
        },
    )
    include_hinted: bool = field(default=False, metadata={"help": "Train on rationalized (hinted) traces too."})
    templates: bool = field(default=True, metadata={"help": "Vary the system prompt over the template set."})
    curriculum: Literal["none", "easy_to_hard", "staged"] = field(
        default="none", metadata={"help": "Order of the examples: none (shuffled), easy_to_hard, staged."}
    )
    layout: Literal["llamafactory", "system"] = field(
        default=DEFAULT_LAYOUT,
        metadata={
            "help": "Prompt layout: llamafactory (the task's text opens the user turn, as LLaMA-Factory builds it from "
            "the task's registry) or system (the task's text as the system message). Recorded with the model; "
            "predict uses it."
        },
    )
    pairs_per_item: int = field(default=2, metadata={"help": "DPO: most preference pairs per item."})
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
            "back (autocast computes the product in bf16 either way; 1.2-1.8x faster steps on an H100)."
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
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")


def training_parser(config_cls):
    """TRL's parser over cover-distill's arguments, the trainer's config and TRL's ModelConfig. ModelConfig loads
    weights in float32 unless told otherwise; here `dtype` defaults to "auto" (`distill.train.model.load_dtype`:
    bf16 for a bf16 LoRA run's frozen base). A recipe's `dtype` still wins."""
    from trl import ModelConfig, TrlParser

    parser = TrlParser((DistillArguments, config_cls, ModelConfig))
    parser.set_defaults(dtype="auto")
    return parser
