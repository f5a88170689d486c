"""Every place cover-distill reaches into a library's private behaviour, in one module.

Each patch is scoped (one call, one model or one block), checked against the library versions it was tested with
(another version is a clear error: set DISTILL_UNTESTED_LIBRARIES=1 to go on at your own risk), and pinned by
tests/layout/test_patches.py, which fails when an upgrade moves what the patch relies on."""

from __future__ import annotations

import os
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from distill.errors import UserError

# The versions each library's patches were checked with (inclusive lower, exclusive upper bound).
TESTED = {"transformers": ("5.16.1", "5.21"), "trl": ("1.16", "1.17")}


class UntestedLibrary(UserError, RuntimeError):
    pass


def _key(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in v.split("+")[0].split(".")[:3])


def check(package: str) -> None:
    """Refuse a version of `package` the patches were not tested with (unless DISTILL_UNTESTED_LIBRARIES=1)."""
    low, high = TESTED[package]
    found = version(package)
    if not _key(low) <= _key(found) < _key(high) and os.environ.get("DISTILL_UNTESTED_LIBRARIES") != "1":
        raise UntestedLibrary(
            f"cover-distill's patches of {package} were tested with {package} >= {low}, < {high}; found {found} "
            f"(install a tested version, or set DISTILL_UNTESTED_LIBRARIES=1 to go on untested)"
        )


_compact = False


def compact_logprobs_on_cpu() -> None:
    """TRL's fused LM head scores only the labelled positions where Triton runs and every position elsewhere (to
    keep tile shapes fixed for compilers that recompile per shape). A plain CPU has no such compiler, and scoring
    all ~300 positions of a prompt against a 152k vocabulary instead of the few completion tokens costs ~100x.
    Patched: TRL's `trl.trainer.utils._use_triton` answers yes for CPU tensors (its kernels still take their
    torch path there). Process-wide, once."""
    global _compact
    if _compact:
        return
    check("trl")
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    _compact = True


def text_only_input_grads(model) -> None:
    """`PreTrainedModel.enable_input_require_grads`, which gradient checkpointing and PEFT call, hooks the input
    embeddings of every sub-model; for Qwen2.5-VL that includes the vision tower's patch embedding, so each step
    records autograd through the whole frozen tower, recomputes it and back-propagates through it for nothing.
    Patched on `model` alone: the method hooks the language model's input embeddings only, and keeps the hook
    where transformers' `disable_input_require_grads` looks for it (`_require_grads_hook(s)`)."""
    check("transformers")

    def require_grad(module, inputs, output):
        output.requires_grad_(True)

    def enable_input_require_grads():
        hook = model.get_input_embeddings().register_forward_hook(require_grad)
        model._require_grads_hooks = [hook]
        model._require_grads_hook = hook

    model.enable_input_require_grads = enable_input_require_grads


@contextmanager
def image_features_from(model, serve):
    """While the block runs, `model`'s image encoder is `serve(original, pixel_values, image_grid_thw, **kw)`:
    `get_image_features` of its inner model (Qwen2.5-VL's forward calls it by name) is swapped and restored."""
    check("transformers")
    inner = model.model if hasattr(model, "model") else model
    original = inner.get_image_features
    inner.get_image_features = lambda pixel_values, image_grid_thw=None, **kw: serve(
        original, pixel_values, image_grid_thw, **kw
    )
    try:
        yield
    finally:
        inner.get_image_features = original


def set_attention(config, name: str, function) -> None:
    """Register `function` as attention implementation `name` (transformers' public AttentionInterface) and set it
    on one sub-model's config. Setting `_attn_implementation` on a sub-config is the private part: transformers
    accepts a registered name there, where its setter takes names containing "flash" for flash-style kernels
    (varlen inputs, no mask); the name must therefore contain "flash"."""
    check("transformers")
    from transformers import AttentionInterface

    if "flash" not in name:
        raise ValueError(f"attention implementation {name!r}: the name must contain 'flash' (transformers' rule)")
    AttentionInterface.register(name, function)
    config._attn_implementation = name
    if config._attn_implementation != name:
        raise UntestedLibrary(f"transformers did not take the attention implementation {name!r}")


def check_trainer_internals() -> None:
    """The trainer mixins (distill/train/validation.py, distill/train/tasks.py) override `evaluation_loop` and
    `compute_loss`, and use TRL's fused LM head (`fused_lm_head=True`) and the trainer state read below."""
    check("transformers")
    check("trl")


def log_metric(trainer, mode: str, name: str, value: float) -> None:
    """A value into TRL's per-mode metric store (`_metrics`), which its `log` averages and clears."""
    trainer._metrics[mode][name].append(value)


def count_tokens(trainer, n: int) -> None:
    """Training tokens seen, where TRL's own `compute_loss` counts them (`_total_train_tokens`, logged as
    `num_tokens`)."""
    trainer._total_train_tokens += n
    trainer._metrics["train"]["num_tokens"] = [trainer._total_train_tokens]


def per_micro_batch(trainer, loss, num_items_in_batch, training: bool):
    """A loss that is a mean over one micro-batch, scaled as the Trainer expects under gradient accumulation: the
    Trainer leaves the scaling to a loss it passed the batch's token count to (taking it for a sum over the whole
    accumulated batch), so such a mean is divided by the accumulation steps here."""
    scaled = getattr(trainer, "loss_is_scaled_for_ga", None)
    if scaled is None:
        scaled = trainer.model_accepts_loss_kwargs and num_items_in_batch is not None
    if scaled and training:
        return loss / trainer.current_gradient_accumulation_steps
    return loss


class ResumeFullWeights:
    """Trainer mixin: resuming a full fine-tuning run. The Trainer reloads a checkpoint's weights with a plain
    `load_state_dict(..., strict=False)`, but `save_pretrained` wrote them under the checkpoint format's names
    (Qwen2.5-VL: `visual.*` and `model.*` for the runtime's `model.visual.*` and `model.language_model.*`), so
    every weight would be skipped with a warning and training would go on from the base weights
    (huggingface/transformers#43701). Here the checkpoint is read through `from_pretrained`, which renames, and
    every weight must arrive. LoRA, FSDP and DeepSpeed checkpoints keep the Trainer's own path."""

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from peft import PeftModel

        target = self.model if model is None else model
        if (
            isinstance(target, PeftModel)
            or self.is_fsdp_enabled
            or self.is_deepspeed_enabled
            or not any(Path(resume_from_checkpoint).glob("*.safetensors"))
        ):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        dtype = next(target.parameters()).dtype
        saved = type(target).from_pretrained(resume_from_checkpoint, dtype=dtype, attn_implementation="sdpa")
        target.load_state_dict(saved.state_dict(), strict=True)
        del saved


class ScoredValidationOnly:
    """Trainer mixin: a run validated by letter scoring alone. The Trainer refuses an evaluation strategy without
    an `eval_dataset` when it is built (`_validate_args`); a describe-then-answer run has no loss examples to
    give it (held-out covers have no teacher captions), and its evaluation is ScoredEvaluation's score (whose
    `val_items` it reads). The check runs with evaluation off while the validation items stand in for the dataset;
    every other check runs as is."""

    def _validate_args(self) -> None:
        if self.eval_dataset is not None or not self.val_items:
            return super()._validate_args()
        strategy = self.args.eval_strategy
        self.args.eval_strategy = "no"
        try:
            super()._validate_args()
        finally:
            self.args.eval_strategy = strategy
