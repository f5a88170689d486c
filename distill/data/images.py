"""The one image policy: resolution cap, colour mode and identity, used by teacher calls, training and inference
alike, and the one LLaMA-Factory applies (`mm_plugin._preprocess_image` and its Qwen2-VL plugin): an image over the
pixel cap is shrunk by area to fit (sides rounded down, never below one pixel), a side under 28 is grown to 28, a
side over 200 times the other is cut to 180 times it, then the model's processor rounds its sides to multiples of
28 under the same cap. A student trained here and run through LLaMA-Factory (or vLLM) sees the same image tokens.
An image whose sides differ by more than 200 times is not a usable cover (Qwen2.5-VL's processor refuses it, and
LLaMA-Factory squashes it): loading refuses it."""

from __future__ import annotations

import base64
import hashlib
import io
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image

# PIL warns on stderr about images over 89 million pixels before decoding them; the policy shrinks them anyway,
# and one past twice that is refused with our own line (DecompressionBombError), so its warning only adds noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Qwen2.5-VL spends one token per 28x28 pixels; LLaMA-Factory's Qwen2.5-VL recipe caps at 512*512.
DEFAULT_MAX_PIXELS = 262_144
DEFAULT_MIN_PIXELS = 3_136  # 56*56, the processor's own floor
LF_MIN_PIXELS = 1_024  # LLaMA-Factory's image_min_pixels (32*32): smaller images are grown to it
FACTOR = 28
MAX_ASPECT = 200  # Qwen2.5-VL's processor refuses a longer side over 200 times the shorter
LF_ASPECT = 180  # what LLaMA-Factory's Qwen2-VL plugin cuts such an image to


@dataclass(frozen=True)
class ImageFile:
    """What reading an image file once tells: its identity and size, or why it cannot be used."""

    path: str
    sha256: str | None = None
    width: int = 0
    height: int = 0
    n_bytes: int = 0
    problem: str | None = None  # "image not found: ...", "image does not decode: ...", "image cannot be used: ..."


def inspect_image(path: str | Path) -> ImageFile:
    """The image at `path` read, hashed and decoded (truncation included) once per process for a given size and
    modification time of the file, however many records name it."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return ImageFile(str(p), problem=f"image not found: {p}")
    except OSError as exc:
        return ImageFile(str(p), problem=f"image cannot be read: {p} ({exc.strerror or exc})")
    return _inspect(str(p), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=1 << 16)
def _inspect(path: str, mtime_ns: int, size: int) -> ImageFile:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return ImageFile(path, problem=f"image cannot be read: {path} ({exc.strerror or exc})")
    sha = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:  # verify() leaves the image unusable; load() catches truncation
            im.load()
            width, height = im.size
    except Exception as exc:  # PIL raises many types for broken files
        return ImageFile(path, sha, problem=f"image does not decode: {path} ({type(exc).__name__}: {exc})")
    why = unusable(width, height)
    problem = f"image cannot be used: {path} ({why})" if why else None
    return ImageFile(path, sha, width, height, len(data), problem)


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
    floor when tiny), sides rounded down but never to 0, at least 28, and neither over 180 times the other
    (LLaMA-Factory's Qwen2-VL plugin)."""
    if width * height > max_pixels:
        f = math.sqrt(max_pixels / (width * height))
        width, height = max(1, int(width * f)), max(1, int(height * f))
    if width * height < LF_MIN_PIXELS:
        f = math.sqrt(LF_MIN_PIXELS / (width * height))
        width, height = int(width * f), int(height * f)
    width, height = max(width, FACTOR), max(height, FACTOR)
    if width > MAX_ASPECT * height:
        width = height * LF_ASPECT
    if height > MAX_ASPECT * width:
        height = width * LF_ASPECT
    return width, height


def unusable(width: int, height: int) -> str | None:
    """Why an image of this size cannot be a cover under the policy, or None."""
    if width < 1 or height < 1:
        return f"it is {width}x{height} pixels"
    long, short = max(width, height), min(width, height)
    if long > MAX_ASPECT * short:
        return (
            f"it is {width}x{height} pixels: one side is {long / short:.0f} times the other, where Qwen2.5-VL's "
            f"processor takes at most {MAX_ASPECT} times"
        )
    return None


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
