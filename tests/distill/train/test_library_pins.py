"""Private library behaviour cover-distill relies on: if an upgrade changes it, these fail loudly."""

import torch


def test_trl_decides_lm_head_compaction_through_use_triton():
    """distill/train/cpu.py turns compaction on for CPU tensors by wrapping `trl.trainer.utils._use_triton`."""
    import trl.trainer.utils as trl_utils

    assert callable(trl_utils._use_triton)
    assert trl_utils._use_triton(torch.device("cpu")) in (False, True)
    import inspect

    assert "_use_triton(" in inspect.getsource(trl_utils.add_fused_lm_head)


def test_the_cpu_patch_makes_cpu_compact():
    import trl.trainer.utils as trl_utils

    from distill.train.cpu import compact_logprobs_on_cpu

    compact_logprobs_on_cpu()
    assert trl_utils._use_triton(torch.device("cpu")) is True


def test_transformers_hooks_input_grads_through_enable_input_require_grads():
    """distill/train/checkpointing.py replaces this method; checkpointing and PEFT must still call it by name."""
    import inspect

    from transformers import PreTrainedModel

    assert "enable_input_require_grads" in inspect.getsource(PreTrainedModel.gradient_checkpointing_enable)
