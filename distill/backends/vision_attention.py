"""The vision tower's windowed attention in one kernel call per layer (CUDA).

Qwen2.5-VL's vision tower attends within 112-pixel windows (whole images every eighth block). Unless its
attention implementation is a flash one, transformers runs one SDPA call per window: about 450 calls per
image, so on a GPU the tower is bound by host time, not arithmetic. PyTorch ships a variable-length flash
kernel (`torch.nn.attention.varlen.varlen_attn`) that takes the windows' boundaries (`cu_seqlens`) and
attends within all of them at once. transformers hands `cu_seqlens` to any registered attention whose name
contains "flash", so the kernel is registered under such a name and set on the vision tower alone; the
language model keeps its own implementation. The kernel computes in half precision: a tower kept in float32 (full
fine-tuning's master weights) takes it only in a run that trains under half-precision autocast, whose attention
would be computed in that precision anyway; its inputs are cast for the call and the output cast back.
"""

from __future__ import annotations

import functools
import inspect
import logging

from distill.errors import UserError

log = logging.getLogger(__name__)

NAME = "torch_varlen_flash"


class VisionAttentionError(UserError, RuntimeError):
    pass


@functools.cache
def _takes_scale(kernel) -> bool:  # read once, not on every layer's call: older torch's varlen_attn has no scale
    return "scale" in inspect.signature(kernel).parameters


def varlen_attention(
    module,
    query,
    key,
    value,
    attention_mask=None,
    scaling=None,
    dropout=0.0,
    cu_seq_lens_q=None,
    cu_seq_lens_k=None,
    max_length_q=None,
    max_length_k=None,
    is_causal=False,
    compute_dtype=None,
    **kwargs,
):
    """transformers' attention interface: (1, heads, tokens, dim) in, ((1, tokens, heads, dim), None) out.
    `compute_dtype`: the half precision to compute in when the inputs are float32 (output cast back)."""
    import torch
    from torch.nn.attention.varlen import varlen_attn

    if attention_mask is not None or is_causal or cu_seq_lens_q is None or dropout:
        raise VisionAttentionError(f"{NAME} serves the vision tower's unmasked, non-causal windows only")
    dtype = query.dtype
    if compute_dtype is not None and dtype not in (torch.bfloat16, torch.float16):
        query, key, value = (t.to(compute_dtype) for t in (query, key, value))
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, dim)
    cu_q = cu_seq_lens_q.to(torch.int32)
    cu_k = cu_q if cu_seq_lens_k is None else cu_seq_lens_k.to(torch.int32)
    max_q = int(max_length_q if max_length_q is not None else (cu_q[1:] - cu_q[:-1]).max())
    max_k = int(max_length_k if max_length_k is not None else max_q)
    kw = {}
    if scaling is not None:
        if _takes_scale(varlen_attn):
            kw["scale"] = scaling
        elif abs(scaling - q.shape[-1] ** -0.5) > 1e-6:
            raise VisionAttentionError(f"this torch's varlen_attn takes no scale; the module needs {scaling}")
    out = varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **kw)
    return out.unsqueeze(0).to(dtype), None


def use_varlen_vision_attention(model, device: str | None = None, autocast_dtype=None) -> bool:
    """Set the kernel on `model`'s vision tower when it runs on CUDA (`device`, else where its weights are) in
    half precision, or in float32 under half-precision autocast (`autocast_dtype`, the precision a training run
    computes in); log why not otherwise (CPU runs keep transformers' per-window SDPA). Returns whether it was set."""
    import torch

    visual = getattr(getattr(model, "model", model), "visual", None)
    if visual is None:
        raise VisionAttentionError(f"{type(model).__name__} has no vision tower")
    param = next(visual.parameters())
    device = device or param.device.type
    half = (torch.bfloat16, torch.float16)
    compute = param.dtype if param.dtype in half else autocast_dtype if autocast_dtype in half else None
    if not device.startswith("cuda") or compute is None:
        log.log(
            logging.INFO if device.startswith("cuda") else logging.DEBUG,  # on a GPU it is worth knowing
            "vision attention: per-window SDPA (the varlen kernel needs CUDA and bf16/fp16 weights or autocast; the "
            "tower is %s on %s)",
            param.dtype,
            device,
        )
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError as e:
        raise VisionAttentionError(f"torch {torch.__version__} has no varlen attention kernel") from e
    from distill.patches import set_attention

    if compute == param.dtype:
        set_attention(visual.config, NAME, varlen_attention)
    else:
        name = f"{NAME}_{str(compute).removeprefix('torch.')}"
        set_attention(visual.config, name, functools.partial(varlen_attention, compute_dtype=compute))
    log.info("vision attention: %s (one kernel call per layer, in %s)", visual.config._attn_implementation, compute)
    return True
