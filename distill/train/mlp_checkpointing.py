"""Recomputing each decoder layer's MLP in the backward pass and keeping the rest of the layer's activations
(`checkpoint_mlps`): the MLP's three 18,944-wide tensors are two thirds of what a Qwen2.5-VL-7B layer keeps, and
recomputing them costs three adapted linears and the SwiGLU, not the whole layer. The 7B's LoRA SFT then runs
under naive training's memory at most of no checkpointing's speed (bench/README.md)."""

from __future__ import annotations

import logging
import re
from functools import partial

from distill.errors import UserError

log = logging.getLogger(__name__)

LAYER = re.compile(r"language_model\.layers\.\d+$")


def decoder_layers(model) -> list:
    """The language model's decoder layers (under PEFT's wrappers too); a model without them is refused, since a run
    that checkpointed nothing would pass for one that did."""
    layers = [m for name, m in model.named_modules() if LAYER.search(name) and hasattr(m, "mlp")]
    if not layers:
        raise UserError(
            f"checkpoint_mlps: {type(model).__name__} has no language_model.layers.N with an mlp to checkpoint: "
            "set checkpoint_mlps: false (gradient_checkpointing: true checkpoints whole layers)"
        )
    return layers


def checkpoint_mlps(model) -> int:
    """Wrap each decoder layer's MLP forward in `torch.utils.checkpoint` (once: a forward already wrapped is left).
    Call it once training has begun (`MlpCheckpointing`): transformers' Trainer applies Liger's kernels at the start
    of `train()`, binding a new forward to every MLP, which would undo a wrap made before. Returns the MLPs wrapped."""
    from torch.utils.checkpoint import checkpoint

    layers = decoder_layers(model)
    for layer in layers:
        if not getattr(layer.mlp.forward, "checkpointed", False):
            wrapped = partial(checkpoint, layer.mlp.forward, use_reentrant=False)
            wrapped.checkpointed = True
            layer.mlp.forward = wrapped
    return len(layers)


def mlp_checkpointing_callback():
    """A Trainer callback that checkpoints the MLPs when training begins (after Liger's kernels are in); `wrapped`
    holds how many."""
    from transformers import TrainerCallback

    class MlpCheckpointing(TrainerCallback):
        wrapped = 0

        def on_train_begin(self, args, state, control, model=None, **kw):
            self.wrapped = checkpoint_mlps(model)
            log.info("checkpoint_mlps: the MLPs of %d decoder layers recomputed in the backward pass", self.wrapped)

    return MlpCheckpointing()
