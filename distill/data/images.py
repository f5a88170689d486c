"""The one image policy: resolution cap, colour mode and identity, used by teacher calls, training and inference
alike, and the one LLaMA-Factory applies (`mm_plugin._preprocess_image`): an image over the pixel cap is shrunk
by area to fit (sides rounded down), then the model's processor rounds its sides to multiples of 28 under the
same cap. A student trained here and run through LLaMA-Factory (or vLLM) sees the same image tokens."""

from __future__ import annotations

import base64
import hashlib
import io
import math
from functools import lru_cache
from pathlib import Path

from PIL import Image

# Qwen2.5-VL spends one token per 28x28 pixels; LLaMA-Factory's Qwen2.5-VL recipe caps at 512*512.
DEFAULT_MAX_PIXELS = 262_144
DEFAULT_MIN_PIXELS = 3_136  # 56*56, the processor's own floor
LF_MIN_PIXELS = 1_024  # LLaMA-Factory's image_min_pixels (32*32): smaller images are grown to it
FACTOR = 28


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_rgb(img: Image.Image) -> Image.Image:
    """RGBA/LA/P are composited on white (transparent covers stay readable); L/CMYK/I convert."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def shrunk_size(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The size an image is resized to before the processor: area at most `max_pixels` (grown to LLaMA-Factory's
    floor when tiny), sides rounded down, at least 28 (LLaMA-Factory's Qwen2-VL plugin)."""
    if width * height > max_pixels:
        f = math.sqrt(max_pixels / (width * height))
        width, height = int(width * f), int(height * f)
    if width * height < LF_MIN_PIXELS:
        f = math.sqrt(LF_MIN_PIXELS / (width * height))
        width, height = int(width * f), int(height * f)
    return max(width, FACTOR), max(height, FACTOR)


def capped_size(
    width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS, min_pixels: int = DEFAULT_MIN_PIXELS
) -> tuple[int, int]:
    """The size Qwen2.5-VL's processor makes of an image (its `smart_resize`): multiples of 28, area within
    [min, max] pixels."""
    h = max(FACTOR, round(height / FACTOR) * FACTOR)
    w = max(FACTOR, round(width / FACTOR) * FACTOR)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(FACTOR, math.floor(height / beta / FACTOR) * FACTOR)
        w = max(FACTOR, math.floor(width / beta / FACTOR) * FACTOR)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / FACTOR) * FACTOR
        w = math.ceil(width * beta / FACTOR) * FACTOR
    return w, h


def image_tokens(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """Image tokens of an image of this size (original size) under the policy."""
    w, h = capped_size(*shrunk_size(width, height, max_pixels), max_pixels)
    return (w // FACTOR) * (h // FACTOR)


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, convert to RGB (transparency onto white) and shrink to the pixel cap; the processor does the rest."""
    with Image.open(path) as src:
        src.load()
        img = to_rgb(src)
    size = shrunk_size(img.width, img.height, max_pixels)
    if size != img.size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    return img


def cap_processor(processor, max_pixels: int) -> None:
    """Make a Qwen2.5-VL processor round within the same cap (its `smart_resize` bounds)."""
    ip = getattr(processor, "image_processor", processor)
    ip.size = {"shortest_edge": DEFAULT_MIN_PIXELS, "longest_edge": max_pixels}
    for attr, val in (("max_pixels", max_pixels), ("min_pixels", DEFAULT_MIN_PIXELS)):
        if hasattr(ip, attr):
            setattr(ip, attr, val)


@lru_cache(maxsize=512)
def _data_url(path: str, mtime: float, max_pixels: int) -> str:
    buf = io.BytesIO()
    load_image(path, max_pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def data_url(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """A base64 PNG data URL of the policy-applied image, for OpenAI-compatible servers."""
    p = Path(path)
    return _data_url(str(p), p.stat().st_mtime, max_pixels)
