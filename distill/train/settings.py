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
    explicit: frozenset = frozenset()  # the fields a recipe, value or flag set (the rest are defaults)


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
    raw = DEFAULTS | raw
    asked = set(raw) - set(DEFAULTS) | flag_names(flags)  # what the recipe, the caller or a flag set
    user_cpu = bool(raw.get("use_cpu")) or "use_cpu" in flag_names(flags)
    halves = {k for k in ("bf16", "fp16") if raw.get(k)}  # half precision the recipe asked for
    if no_gpu(user_cpu):  # before parsing: TRL's configs refuse bf16 on a machine without a GPU
        raw = raw | {"bf16": False, "fp16": False, "use_cpu": True}
    parser = make_parser(kind)
    unknown = parser.set_defaults_with_config(**raw)[::2]
    if unknown:
        raise TrainingSettingsError(f"{source}: unknown setting(s) {', '.join(k[2:] for k in unknown)}")
    check_types(kind, raw, source)
    try:
        distill_args, trainer, model = parser.parse_args_into_dataclasses(list(flags))
    except (ValueError, TypeError) as exc:  # TRL's and transformers' own checks of their fields
        raise TrainingSettingsError(f"{source}: {one_line(exc)}") from None
    settings = TrainingSettings(kind, validated(distill_args, source), trainer, model, source, frozenset(asked))
    unsupported(model, source)
    if no_gpu(user_cpu):
        without_gpu(trainer, halves)
    from distill.train.time_limit import keep_last_checkpoint

    for_vision_language(trainer, asked, source)
    keep_last_checkpoint(trainer, settings.distill.max_train_minutes)
    liger_on_gpu(trainer, asked)
    checkpointing_on_gpu(trainer, settings.distill, asked, source)
    return settings


def flag_names(flags: list[str]) -> set[str]:
    """The fields `--flags` set, in the parser's every spelling: `--field_name`, `--field-name`, and for a boolean
    `--no_field_name` / `--no-field-name`."""
    names = {f[2:].split("=")[0].replace("-", "_") for f in flags if f.startswith("--")}
    return names | {n[3:] for n in names if n.startswith("no_")}


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


def check_types(kind: Kind, raw: dict, source: str) -> None:
    """A recipe's values for TRL's fields checked against the fields' types (argparse checks flags, not the
    defaults a recipe sets): a list where a number belongs fails here, in one line, not deep in the Trainer."""
    from typing import get_type_hints

    from pydantic import TypeAdapter, ValidationError
    from trl import DPOConfig, ModelConfig, SFTConfig

    for cls in (SFTConfig if kind == "sft" else DPOConfig, ModelConfig):
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in raw or raw[f.name] is None:
                continue
            value, hint = raw[f.name], hints.get(f.name)
            if isinstance(value, bool) and hint in (int, float, int | None, float | None, int | float | None):
                raise TrainingSettingsError(f"{source}: {f.name}: expected a number, got {value!r}")
            try:
                TypeAdapter(hint).validate_python(value)
            except ValidationError as exc:
                raise TrainingSettingsError(f"{source}: {f.name}: {exc.errors()[0]['msg']} (got {value!r})") from None
            except Exception:  # a type pydantic cannot check (a library class): the Trainer checks it
                continue


def unsupported(model, source: str) -> None:
    """TRL's ModelConfig fields distill does not act on are refused rather than ignored."""
    for name in ("load_in_4bit", "load_in_8bit"):
        if getattr(model, name, False):
            raise TrainingSettingsError(f"{source}: {name}: quantized loading is not supported by distill sft/dpo")


def no_gpu(use_cpu) -> bool:
    import torch

    return not use_cpu and not torch.cuda.is_available()


def without_gpu(trainer, halves: set[str]) -> None:
    """The one CPU rule, after the recipe and the flags: without a GPU a run trains in float32 on the CPU (a GPU
    recipe's bf16 would fail); a half precision the recipe or a flag asked for is turned off with a log line."""
    for key in ("bf16", "fp16"):
        if getattr(trainer, key) or key in halves:
            log.info("no GPU: %s off (training in float32 on the CPU)", key)
        setattr(trainer, key, False)
    trainer.use_cpu = True


# Liger's layer kernels. Not its fused linear cross-entropy (TRL refuses it: it keeps its own fused LM head) nor its
# cross-entropy: the task-weighted loss and the letter-scored validation read the logits.
LIGER_KERNELS = {
    "rms_norm": True,
    "swiglu": True,
    "rope": True,
    "cross_entropy": False,
    "fused_linear_cross_entropy": False,
}


def liger_on_gpu(trainer, explicit: set[str]) -> None:
    """On a GPU, Liger's kernels where liger-kernel is installed (the `gpu` extra), unless the recipe or a flag sets
    `use_liger_kernel`: the faster path by default, at no more memory (bench/README.md)."""
    import importlib.util
    import warnings

    if trainer.use_cpu:
        return
    if "use_liger_kernel" not in explicit:
        if importlib.util.find_spec("liger_kernel") is None:
            log.info("Liger's kernels are not installed: pip install 'cover-distill[gpu]' for faster training")
            return
        trainer.use_liger_kernel = True
        log.info("Liger's kernels on (RMSNorm, SwiGLU, RoPE; use_liger_kernel: false turns them off)")
    if trainer.use_liger_kernel and "liger_kernel_config" not in explicit:
        trainer.liger_kernel_config = dict(LIGER_KERNELS)
    # TRL 1.16 points to the Hub's kernels instead, which a machine without the Hub cannot fetch
    warnings.filterwarnings("ignore", message="`use_liger_kernel=True` is deprecated", category=FutureWarning)


def checkpointing_on_gpu(trainer, distill_args: DistillArguments, explicit: set[str], source: str) -> None:
    """What keeps activations down: on a GPU, each decoder layer's MLP alone recomputed (`checkpoint_mlps`) unless
    the recipe or a flag sets `gradient_checkpointing` or its kwargs (TRL's default checkpoints whole layers: less
    memory, slower), or another checkpointing is configured (DeepSpeed, FSDP's own); the recipe's own
    `checkpoint_mlps` otherwise. The MLPs and whole layers together are refused; `checkpoint_mlps` is left true or
    false, as the run records it."""
    layers_asked = (
        "gradient_checkpointing" in explicit and trainer.gradient_checkpointing is not None
    ) or "gradient_checkpointing_kwargs" in explicit
    mlps = distill_args.checkpoint_mlps
    if mlps is None:
        mlps = not trainer.use_cpu and not layers_asked
        if mlps and (other := elsewhere_checkpointed(trainer)):
            log.info("checkpoint_mlps off by default under %s (checkpoint_mlps: true wraps the MLPs anyway)", other)
            mlps = False
    if mlps and trainer.gradient_checkpointing:
        if layers_asked:
            raise TrainingSettingsError(
                f"{source}: checkpoint_mlps and gradient_checkpointing are both on: choose one (whole layers "
                "checkpointed hold less memory; the MLPs alone run faster)"
            )
        trainer.gradient_checkpointing = False
    if mlps:
        log.info(
            "checkpointing each decoder layer's MLP alone (checkpoint_mlps; gradient_checkpointing: true "
            "checkpoints whole layers, for less memory)"
        )
    distill_args.checkpoint_mlps = mlps


def elsewhere_checkpointed(trainer) -> str | None:
    """Checkpointing a run gets from elsewhere, which the MLPs' own would nest inside or conflict with: DeepSpeed
    (ZeRO-3 with LoRA needs the reentrant kind) and FSDP's activation checkpointing."""
    if getattr(trainer, "deepspeed", None) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "DeepSpeed"
    fsdp = getattr(trainer, "fsdp_config", None) or {}
    if fsdp.get("activation_checkpointing") or os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() == "true":
        return "FSDP's activation checkpointing"
    return None


# What a vision-language run must have, whatever the recipe says: (field, value, why).
REQUIRED = (
    ("max_length", None, "truncation would cut image tokens"),
    ("remove_unused_columns", False, "rows are decoded lazily from one JSON column"),
    ("load_best_model_at_end", False, "the best checkpoint by validation accuracy becomes OUTPUT_DIR/final"),
    ("logging_nan_inf_filter", False, "a non-finite loss must show, and stop the run"),
)


def for_vision_language(trainer, explicit: set[str], source: str = "flags") -> None:
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
        best_checkpoint_saved(trainer, source)
    if trainer.report_to in (None, "all", ["all"]):
        trainer.report_to = ["tensorboard"]


def best_checkpoint_saved(trainer, source: str) -> None:
    """The best checkpoint by validation accuracy must be on disk to become OUTPUT_DIR/final: checkpoints on the
    evaluations' schedule (transformers checks this only under load_best_model_at_end, which distill turns off)."""
    save_strategy, eval_strategy = (
        str(getattr(trainer.save_strategy, "value", trainer.save_strategy)),
        str(getattr(trainer.eval_strategy, "value", trainer.eval_strategy)),
    )
    if save_strategy == "best":  # transformers saves each new best
        return
    if save_strategy == "no":
        log.info("save_strategy no: OUTPUT_DIR/final will be the last weights, not the best by validation accuracy")
        return
    if save_strategy != eval_strategy:
        raise TrainingSettingsError(
            f"{source}: save_strategy {save_strategy} and eval_strategy {eval_strategy} differ: the "
            "best checkpoint by validation accuracy would not be saved (use the same strategy for both)"
        )
    if eval_strategy == "steps":
        save, evaluate = trainer.save_steps, trainer.eval_steps or trainer.logging_steps
        if save >= 1 and evaluate >= 1 and save % evaluate:
            raise TrainingSettingsError(
                f"{source}: save_steps ({save:g}) is not a multiple of eval_steps ({evaluate:g}): the best checkpoint "
                "by validation accuracy would not be saved"
            )
