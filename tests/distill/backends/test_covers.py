"""Covers as data URLs: the same pixels as the image policy gives, each cover encoded once by its bytes, a bounded
cache."""

import base64
import io
import os
import shutil

from PIL import Image

from distill.backends import covers
from distill.data.images import load_image


def _pixels(url: str) -> bytes:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB").tobytes()


def _cover(path, colour) -> str:
    Image.new("RGB", (64, 48), colour).save(path)
    return str(path)


def test_a_data_url_holds_the_policy_applied_pixels(sample_dir):
    cover = next((sample_dir / "images").rglob("*.jpg"))
    url = covers.CoverURLs().url(str(cover), 28 * 28 * 16)
    assert url.startswith("data:image/png;base64,")
    assert _pixels(url) == load_image(cover, 28 * 28 * 16).tobytes()


def test_covers_are_known_by_their_bytes_and_a_rewritten_file_is_read_again(tmp_path, monkeypatch):
    cache = covers.CoverURLs()
    a = _cover(tmp_path / "a.png", "red")
    b = shutil.copy(a, tmp_path / "b.png")
    assert cache.url(a, 4096) == cache.url(str(b), 4096) and cache.encodings == 1
    assert cache.cached(a, 4096) is not None and cache.cached(a, 2048) is None  # another cap is another image
    _cover(tmp_path / "a.png", "blue")
    os.utime(a, ns=(1, 1))  # a new mtime: the file is read again, whatever the clock's resolution
    assert cache.cached(a, 4096) is None
    assert _pixels(cache.url(a, 4096))[:3] == bytes((0, 0, 255)) and cache.encodings == 2


def test_the_cache_is_bounded_least_recently_used_first(tmp_path):
    paths = [_cover(tmp_path / f"{k}.png", (k, 0, 0)) for k in range(4)]
    size = max(len(covers.CoverURLs().url(p, 4096)) for p in paths)
    cache = covers.CoverURLs(max_bytes=2 * size + size // 4)  # room for two
    for p in paths[:3]:
        cache.url(p, 4096)
    assert cache.cached(paths[0], 4096) is None  # the oldest went
    assert cache.cached(paths[1], 4096) is not None  # and this one is now the most recent
    cache.url(paths[3], 4096)
    assert cache.cached(paths[2], 4096) is None and cache.cached(paths[1], 4096) is not None
    assert cache.encodings == 4
