"""The varlen vision attention: the same tower outputs as transformers' per-window SDPA, in one call a layer.

The kernel itself is PyTorch's and CUDA-only; here a reference with its contract (per-segment attention over
`cu_seqlens`) stands in for it, so what is tested is our glue: shapes, layouts, the windows' boundaries,
and that transformers routes the tower through it. The GPU benchmark compares letter probabilities of the
real kernel against the plain path (bench/predict_throughput.py, `varlen_max_abs_diff`)."""

from __future__ import annotations

import functools

import pytest


def reference_varlen(calls):
    import torch

    def varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, scale=None):
        calls.append(len(cu_q) - 1)
        out = []
        for a, b in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
            seg = [t[a:b].transpose(0, 1).unsqueeze(0) for t in (q, k, v)]  # (1, heads, len, dim)
            out.append(torch.nn.functional.scaled_dot_product_attention(*seg, scale=scale)[0].transpose(0, 1))
        return torch.cat(out)

    return varlen_attn


def test_varlen_vision_attention_matches_per_window_sdpa(tiny_model_dir, sample_dir, monkeypatch):
    import torch
    import torch.nn.attention.varlen as varlen
    from transformers import AttentionInterface, AutoModelForImageTextToText, AutoProcessor

    from distill.backends import vision_attention
    from distill.data.images import load_image

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    images = [load_image(p, 200_000) for p in sorted((sample_dir / "images").glob("*.jpg"))[:3]]
    enc = processor.image_processor(images=images, return_tensors="pt")
    visual = model.model.visual

    def tower():
        with torch.no_grad():
            out = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
        return getattr(out, "pooler_output", None) if not torch.is_tensor(out) else out

    plain = tower()
    calls = []
    monkeypatch.setattr(varlen, "varlen_attn", reference_varlen(calls))
    AttentionInterface.register(vision_attention.NAME, vision_attention.varlen_attention)
    visual.config._attn_implementation = vision_attention.NAME
    fast = tower()
    assert len(calls) == len(visual.blocks)  # one call per layer, whatever the number of windows
    assert max(calls) > len(images)  # windowed layers really had several windows per image
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


def test_cpu_models_keep_per_window_sdpa(tiny_model_dir):
    import torch
    from transformers import AutoModelForImageTextToText

    from distill.backends.vision_attention import VisionAttentionError, use_varlen_vision_attention

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    before = model.model.visual.config._attn_implementation
    assert use_varlen_vision_attention(model) is False
    assert model.model.visual.config._attn_implementation == before
    with pytest.raises(VisionAttentionError, match="no vision tower"):
        use_varlen_vision_attention(torch.nn.Linear(2, 2))


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="the varlen kernel is CUDA-only")
@pytest.mark.parametrize("size", [(2, 32), (16, 1280)], ids=["tiny-heads", "7b-heads"])
def test_the_real_kernel_matches_per_window_sdpa_on_cuda(sample_dir, size):
    """PyTorch's kernel itself, on a GPU: the tower in bf16 with the tiny model's and the 7B's head sizes."""
    import torch
    from transformers import AttentionInterface
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    from distill.backends import vision_attention
    from distill.data.images import load_image
    from distill.kit.tiny_model import build_config, build_processor

    heads, width = size
    cfg = build_config(vision={"num_heads": heads, "hidden_size": width, "depth": 4, "fullatt_block_indexes": [3]})
    vcfg = cfg.vision_config
    vcfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        visual = Qwen2_5_VisionTransformerPretrainedModel._from_config(vcfg, dtype=torch.bfloat16).eval()
    processor = build_processor(max_pixels=200_000)
    images = [load_image(p, 200_000) for p in sorted((sample_dir / "images").glob("*.jpg"))[:3]]
    enc = processor.image_processor(images=images, return_tensors="pt").to("cuda")

    def tower():
        with torch.no_grad():
            out = visual(enc["pixel_values"].to(torch.bfloat16), grid_thw=enc["image_grid_thw"])
        return (out if torch.is_tensor(out) else out.pooler_output).float()

    plain = tower()
    AttentionInterface.register(vision_attention.NAME, vision_attention.varlen_attention)
    visual.config._attn_implementation = vision_attention.NAME
    fast = tower()
    torch.testing.assert_close(fast, plain, atol=3e-2, rtol=3e-2)  # bf16 accumulation order


def test_a_float32_tower_computes_in_the_autocast_precision(tiny_model_dir, sample_dir, monkeypatch):
    """Full fine-tuning keeps float32 weights under bf16 autocast: the kernel gets half-precision inputs (flash
    kernels take no float32), and the tower's output and gradients keep float32."""
    import torch
    import torch.nn.attention.varlen as varlen
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from distill.backends import vision_attention
    from distill.data.images import load_image

    seen = []
    reference = reference_varlen([])

    def kernel(q, k, v, *args, **kw):
        seen.append(q.dtype)
        return reference(q, k, v, *args, **kw)

    monkeypatch.setattr(varlen, "varlen_attn", kernel)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert vision_attention.use_varlen_vision_attention(model, "cpu", autocast_dtype=torch.bfloat16) is False
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    images = [load_image(p, 200_000) for p in sorted((sample_dir / "images").glob("*.jpg"))[:2]]
    enc = processor.image_processor(images=images, return_tensors="pt")
    visual = model.model.visual
    from distill.patches import set_attention

    # what `use_varlen_vision_attention` sets on CUDA for a float32 tower under bf16 autocast
    kernel_in_bf16 = functools.partial(vision_attention.varlen_attention, compute_dtype=torch.bfloat16)
    set_attention(visual.config, "torch_varlen_flash_bfloat16", kernel_in_bf16)
    out = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
    out = out if torch.is_tensor(out) else out.pooler_output
    out.float().pow(2).mean().backward()
    assert seen and set(seen) == {torch.bfloat16}
    assert out.dtype == torch.float32
    assert visual.blocks[0].attn.qkv.weight.grad is not None


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="the varlen kernel is CUDA-only")
def test_the_real_kernel_trains_a_float32_tower_under_autocast_on_cuda(sample_dir):
    """PyTorch's kernel on a GPU for full fine-tuning: float32 weights under bf16 autocast, against per-window SDPA
    under the same autocast — outputs and the weights' gradients agree to bf16 precision."""
    import torch
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    from distill.backends.vision_attention import use_varlen_vision_attention
    from distill.data.images import load_image
    from distill.kit.tiny_model import build_config, build_processor

    cfg = build_config(vision={"num_heads": 4, "hidden_size": 128, "depth": 4, "fullatt_block_indexes": [3]})
    processor = build_processor(max_pixels=200_000)
    images = [load_image(p, 200_000) for p in sorted((sample_dir / "images").glob("*.jpg"))[:3]]
    enc = processor.image_processor(images=images, return_tensors="pt").to("cuda")

    def run(varlen: bool):
        vcfg = cfg.vision_config
        vcfg._attn_implementation = "sdpa"
        torch.manual_seed(0)
        with torch.device("cuda"):
            visual = Qwen2_5_VisionTransformerPretrainedModel._from_config(vcfg, dtype=torch.float32)
        if varlen:
            holder = torch.nn.Module()
            holder.visual = visual
            assert use_varlen_vision_attention(holder, "cuda", autocast_dtype=torch.bfloat16)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
            out = out if torch.is_tensor(out) else out.pooler_output
        out.float().pow(2).mean().backward()
        return out.float().detach(), visual.blocks[0].attn.qkv.weight.grad.detach()

    plain_out, plain_grad = run(False)
    fast_out, fast_grad = run(True)
    torch.testing.assert_close(fast_out, plain_out, atol=3e-2, rtol=3e-2)
    rel = (fast_grad - plain_grad).norm() / plain_grad.norm()
    assert rel < 3e-2, rel
