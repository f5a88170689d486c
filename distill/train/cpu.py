"""CPU training speed: TRL's fused LM head scores only the labelled positions when Triton runs, but every
position elsewhere (to keep tile shapes fixed for compilers that recompile per shape). On a plain CPU there is
no such compiler, and scoring all ~300 positions of a prompt against a 152k vocabulary instead of the few
completion tokens costs ~100x. This turns compaction on for CPU tensors; the kernels themselves still take
their torch (non-Triton) path."""

from __future__ import annotations

_patched = False


def compact_logprobs_on_cpu() -> None:
    global _patched
    if _patched:
        return
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton

    def use_compact(device):
        return device.type == "cpu" or original(device)

    trl_utils._use_triton = use_compact
    _patched = True
