"""A training run's settings, typed: cover-distill's own fields (DistillArguments), TRL's trainer config (SFTConfig or
DPOConfig) and TRL's ModelConfig, built one way whoever asks (`build_settings`; `distill.recipe.training_settings`
reads the recipe files first) — the CLI from a recipe and flags, the pipeline and the demo from a recipe and values.

The layers, last wins: the fields' defaults; the pipeline recipe the training recipe names (`pipeline:`: the store
`db` and the `{workdir}` its paths hang off); the training recipe; the caller's values; flags. Then one rule for a
machine without a GPU, and the settings a vision-language run must have; every value these change is logged."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

from distill.errors import UserError
from distill.train.arguments import DistillArguments

log = logging.getLogger(__name__)
Kind = Literal["sft", "dpo"]
DEFAULTS = {"dtype": "auto"}  # TRL's ModelConfig loads weights in float32; `distill.train.model.load_dtype` decides


class TrainingSettingsError(UserError, ValueError):
    """A training recipe, value or flag that cannot be used."""


@dataclass
class TrainingSettings:
    kind: Kind
    distill: DistillArguments
    trainer: Any  # trl.SFTConfig or trl.DPOConfig
    model: Any  # trl.ModelConfig
    source: str = "flags"  # the recipe file, for messages


def make_parser(kind: Kind):
    """TRL's parser over cover-distill's fields, the trainer's config and TRL's ModelConfig; its errors are one
    line (a UserError) rather than argparse's usage and exit."""
    from trl import DPOConfig, ModelConfig, SFTConfig, TrlParser

    class TrainingParser(TrlParser):
        def error(self, message):
            raise TrainingSettingsError(f"distill {kind}: {message}")

    parser = TrainingParser((DistillArguments, SFTConfig if kind == "sft" else DPOConfig, ModelConfig))
    parser.prog = f"distill {kind}"
    parser.set_defaults(**DEFAULTS)
    return parser


def build_settings(kind: Kind, values: dict, flags: list[str] = (), source: str = "flags") -> TrainingSettings:
    """The settings of one run from `values` (a training recipe's keys, the pipeline's store and the caller's values
    already laid over each other by `distill.recipe.training_settings`) and `flags` (`--field value` pairs, as on the
    command line), which win. `source` names where the values came from, for messages."""
    raw = dict(values)
    for key, value in (raw.pop("env", None) or {}).items():  # TRL's recipes may set environment variables
        os.environ[key] = str(value)
    raw = DEFAULTS | without_gpu(raw)
    parser = make_parser(kind)
    unknown = parser.set_defaults_with_config(**raw)[::2]
    if unknown:
        raise TrainingSettingsError(f"{source}: unknown setting(s) {', '.join(k[2:] for k in unknown)}")
    try:
        distill_args, trainer, model = parser.parse_args_into_dataclasses(list(flags))
    except (ValueError, TypeError) as exc:  # TRL's and transformers' own checks of their fields
        raise TrainingSettingsError(f"{source}: {one_line(exc)}") from None
    settings = TrainingSettings(kind, validated(distill_args, source), trainer, model, source)
    for_vision_language(settings.trainer, explicit=set(raw) | flag_names(flags))
    return settings


def flag_names(flags: list[str]) -> set[str]:
    return {f[2:].split("=")[0] for f in flags if f.startswith("--")}


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


@functools.cache
def _fields_model():
    """A pydantic model of DistillArguments' fields, from their declared annotations (the argument parser narrows
    the dataclass fields' own `type` in place: `str | None` becomes `str`)."""
    from typing import get_type_hints

    from pydantic import ConfigDict, create_model

    hints = get_type_hints(DistillArguments)
    fields = {f.name: (hints[f.name], ...) for f in dataclasses.fields(DistillArguments)}
    return create_model("DistillArguments", __config__=ConfigDict(extra="forbid"), **fields)


def validated(distill_args: DistillArguments, source: str) -> DistillArguments:
    """cover-distill's fields checked against their types and choices as the pipeline recipe's are (a recipe's
    values reach the parser as defaults, which argparse does not check)."""
    from pydantic import ValidationError

    from distill.errors import problems

    try:
        checked = _fields_model().model_validate(dataclasses.asdict(distill_args))
    except ValidationError as exc:
        raise TrainingSettingsError(f"invalid training settings in {source}: {problems(exc)}") from None
    return DistillArguments(**checked.model_dump())


def without_gpu(raw: dict) -> dict:
    """The one CPU rule: without a GPU a run trains in float32 on the CPU (a GPU recipe's bf16 would fail)."""
    import torch

    if torch.cuda.is_available() or raw.get("use_cpu"):
        return raw
    for key in ("bf16", "fp16"):
        if raw.get(key):
            log.info("no GPU: %s off (training in float32 on the CPU)", key)
    return raw | {"bf16": False, "fp16": False, "use_cpu": True}


# What a vision-language run must have, whatever the recipe says: (field, value, why).
REQUIRED = (
    ("max_length", None, "truncation would cut image tokens"),
    ("remove_unused_columns", False, "rows are decoded lazily from one JSON column"),
    ("load_best_model_at_end", False, "the best checkpoint by validation accuracy becomes OUTPUT_DIR/final"),
)


def for_vision_language(trainer, explicit: set[str]) -> None:
    """The settings a VLM run must have; a value the recipe or a flag set otherwise is changed with a log line."""
    for name, value, why in REQUIRED:
        if hasattr(trainer, name) and getattr(trainer, name) != value:
            if name in explicit:
                log.info("%s: %r -> %r (%s)", name, getattr(trainer, name), value, why)
            setattr(trainer, name, value)
    if trainer.eval_strategy != "no":
        metric = trainer.metric_for_best_model or "accuracy"
        trainer.metric_for_best_model = metric
        if metric in ("accuracy", "eval_accuracy"):
            trainer.greater_is_better = True
    if trainer.report_to in (None, "all", ["all"]):
        trainer.report_to = ["tensorboard"]
