"""Gradient checkpointing without autograd through a frozen vision tower.

`PreTrainedModel.enable_input_require_grads`, which checkpointing and PEFT call, hooks the input embeddings
of every sub-model. For Qwen2.5-VL that includes the vision tower's patch embedding, so each step records
autograd for the whole frozen tower, recomputes it under checkpointing and back-propagates through it for
nothing. With the tower frozen only the text embeddings need the hook."""

from __future__ import annotations


def _require_grad(module, inputs, output):
    output.requires_grad_(True)


def text_only_input_grads(model) -> None:
    """Make `model.enable_input_require_grads()` hook the language model's input embeddings only."""

    def enable_input_require_grads():
        hook = model.get_input_embeddings().register_forward_hook(_require_grad)
        model._require_grads_hooks = [hook]
        model._require_grads_hook = hook

    model.enable_input_require_grads = enable_input_require_grads
