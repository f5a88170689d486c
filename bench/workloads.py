"""Synthetic MAC-shaped workloads for the GPU benchmarks, and the model they run on.

image2text: one 448x448 cover (256 image tokens) and four stories, ~1,000 tokens a prompt;
text2image: one story and four 448x448 covers, ~1,550 tokens. Lengths vary by +-30% across items, as real
stories do, and distractor covers recur across items, as in MAC."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image

from distill.data.items import LETTERS, Item, Option
from distill.data.options import parse_options, render_options
from distill.kit.sample_data import COLOURS, LAYOUTS, SHAPES, Motif, write_story

MAX_PIXELS = 448 * 448
SYSTEM = (
    "# Requirement\n You are an excellent scientific image reader. Choose the option that matches. "
    "Answer with the letter of the option."
)


def _story(rng: random.Random, words: int) -> str:
    parts = []
    while sum(len(p.split()) for p in parts) < words:
        m = Motif(rng.choice(list(COLOURS)), rng.choice(list(SHAPES)), rng.choice(list(LAYOUTS)))
        parts.append(write_story(m, rng))
    return " ".join(" ".join(parts).split()[:words])


def covers(out: Path, n: int, size: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        p = out / f"cover_{size}_{k}.png"
        if not p.exists():
            img = Image.effect_noise((size, size), 60 + rng.random() * 40).convert("RGB")
            tint = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
            Image.blend(img, tint, 0.5).save(p)
        paths.append(str(p))
    return paths


def items(task: str, n: int, out: Path, seed: int = 0, size: int = 448, story_words: int = 130) -> list[Item]:
    """n items; about 1,000 (image2text) or 1,550 (text2image) tokens each at 448x448."""
    rng = random.Random(seed)
    pool = covers(out / "covers", max(8, n), size, seed)
    result = []
    for i in range(n):
        gold = rng.randrange(4)
        if task == "image2text":
            stories = [_story(rng, int(story_words * rng.uniform(0.7, 1.3))) for _ in range(4)]
            text = f"<image>\nWhich of the following cover stories matches this cover?\n{render_options(stories)}"
            images = [pool[i % len(pool)]]
            opts = [Option(letter=o.letter, text=o.text, span=(o.start, o.end)) for o in parse_options(text)]
        else:
            story = _story(rng, int(story_words * 2.6 * rng.uniform(0.7, 1.3)))
            images = [pool[(i + k * 7) % len(pool)] for k in range(4)]  # distractors recur across items
            text = f"Which cover matches this cover story?\n{story}\n{render_options(['<image>'] * 4)}"
            opts = [
                Option(letter=o.letter, text=o.text, span=(o.start, o.end), image=images[k])
                for k, o in enumerate(parse_options(text))
            ]
        result.append(
            Item(
                id=f"{task}-{i}", task=task, system=SYSTEM, input=text, options=opts, images=images, gold=LETTERS[gold]
            )
        )
    return result


def build_model(size: str, device: str):
    """`7b`: Qwen2.5-VL-7B's architecture at random weights (bf16, built on the device in about a second);
    `tiny`: the offline test model. Returns (model, processor)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from distill.kit.tiny_model import FULL_7B_TEXT, FULL_7B_VISION, build_config, build_processor

    processor = build_processor(max_pixels=MAX_PIXELS)
    if size == "7b":
        cfg = build_config(FULL_7B_TEXT, FULL_7B_VISION, tie_word_embeddings=False)
        dtype = torch.bfloat16
    else:
        cfg = build_config()
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype)
    return model.eval(), processor


def model_folder(size: str, out: Path) -> Path:
    """A model folder with the config and processor but no weights, for engines that build random weights
    themselves (vLLM's `load_format="dummy"`)."""
    from distill.kit.tiny_model import FULL_7B_TEXT, FULL_7B_VISION, build_config, build_processor

    cfg = (
        build_config(FULL_7B_TEXT, FULL_7B_VISION, tie_word_embeddings=False)
        if size == "7b"
        else build_config(text={"num_attention_heads": 2, "num_key_value_heads": 2})
    )
    cfg.dtype = "bfloat16"
    cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]  # what engines read to pick the model class
    cfg.save_pretrained(out)
    build_processor(max_pixels=MAX_PIXELS).save_pretrained(out)
    return out


def sync(device: str) -> None:
    """Wait for the device, so a host clock brackets the work (a no-op on the CPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def parameter_counts(model) -> dict[str, int]:
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    embed = model.get_input_embeddings().weight.numel()
    return {
        "vision": vision,
        "language": sum(p.numel() for p in model.parameters()) - vision - embed,
        "embedding": embed,
    }


KERNEL_KINDS = (
    ("matmul", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "matmul")),
    ("attention", ("flash", "fmha", "attention", "efficient")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("triton", ("triton",)),
)


def kernel_summary(prof, wall_s: float, top: int = 12) -> dict:
    """A torch profiler's run in brief: the GPU's busy time against the wall clock (kernels of one stream do
    not overlap), busy time by kind of kernel, the longest kernels and the host ops that took longest."""
    averages = prof.key_averages()
    kernels = sorted(
        (e for e in averages if e.device_type.name == "CUDA"), key=lambda e: e.self_device_time_total, reverse=True
    )
    busy = sum(e.self_device_time_total for e in kernels) / 1e6
    kinds: dict[str, float] = {}
    for e in kernels:
        kind = next((k for k, words in KERNEL_KINDS if any(w in e.key.lower() for w in words)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + e.self_device_time_total / 1e6
    host = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "wall_s": wall_s,
        "gpu_busy_s": busy,
        "gpu_busy_share": busy / wall_s if wall_s else None,
        "busy_by_kind_s": kinds,
        "top_kernels": [
            {"name": e.key[:90], "s": e.self_device_time_total / 1e6, "calls": e.count} for e in kernels[:top]
        ],
        "top_host_ops": [{"name": e.key[:90], "s": e.self_cpu_time_total / 1e6, "calls": e.count} for e in host[:top]],
    }
