"""Covers as data URLs for OpenAI-compatible servers, each encoded once per process.

A cover is known by the sha256 of its bytes, so one that recurs across items (MAC's distractors do), or that lives
at two paths, is encoded once. The encodings are held in a bounded least-recently-used cache, and a cover that
several requests want at once is encoded by one of them while the others wait for it."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path

from distill.data.images import load_image, sha256_file

CACHE_BYTES = 512 << 20  # a process holds at most this much of encoded covers (a 448 x 448 cover is ~0.4 MB)
# zlib level 1: the same pixels (PNG is lossless) 3-5x faster than the default level 6, ~15 % larger on a sample
# cover and smaller on a noisy one
PNG_LEVEL = 1


def encode_cover(path: str | Path, max_pixels: int) -> str:
    """The policy-applied image (distill.data.images.load_image) as a base64 PNG data URL."""
    buf = io.BytesIO()
    load_image(path, max_pixels).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class CoverURLs:
    """Data URLs by (sha256, max_pixels), at most `max_bytes` of them; thread-safe."""

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self.encodings = 0  # covers encoded so far (what the cache saves is the difference to the requests)
        self._shas: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256 of the file
        self._urls: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._held = 0
        self._encoding: dict[tuple[str, int], Future] = {}
        self._lock = threading.Lock()

    def cached(self, path: str, max_pixels: int) -> str | None:
        """The URL when it is at hand (no file read beyond a stat, no encoding): safe on an event loop."""
        sha = self._shas.get(_file_key(path))
        if sha is None:
            return None
        with self._lock:
            url = self._urls.get((sha, max_pixels))
            if url is not None:
                self._urls.move_to_end((sha, max_pixels))
            return url

    def url(self, path: str, max_pixels: int) -> str:
        """The URL, encoding the cover if no one has (blocking: call it from a thread on an event loop)."""
        key = (self._sha(path), max_pixels)
        with self._lock:
            url = self._urls.get(key)
            if url is not None:
                self._urls.move_to_end(key)
                return url
            pending = self._encoding.get(key)
            mine = pending is None
            if mine:
                pending = self._encoding[key] = Future()
        if not mine:
            return pending.result()
        try:
            url = encode_cover(path, max_pixels)
        except BaseException as exc:
            with self._lock:
                del self._encoding[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            self.encodings += 1
            self._keep(key, url)
            del self._encoding[key]
        pending.set_result(url)
        return url

    async def urls(self, paths: list[str], max_pixels: int) -> dict[str, str]:
        """Path -> URL for each path; covers not at hand are encoded in worker threads, off the event loop."""
        found = {p: self.cached(p, max_pixels) for p in dict.fromkeys(paths)}
        missing = [p for p, url in found.items() if url is None]
        if missing:
            encoded = await asyncio.gather(*(asyncio.to_thread(self.url, p, max_pixels) for p in missing))
            found.update(zip(missing, encoded))
        return found

    def clear(self) -> None:
        with self._lock:
            self._urls.clear()
            self._shas.clear()
            self._held = 0

    def _sha(self, path: str) -> str:
        key = _file_key(path)
        sha = self._shas.get(key)
        if sha is None:
            sha = self._shas[key] = sha256_file(path)
        return sha

    def _keep(self, key: tuple[str, int], url: str) -> None:
        self._urls[key] = url
        self._held += len(url)
        while self._held > self.max_bytes and len(self._urls) > 1:
            _, dropped = self._urls.popitem(last=False)
            self._held -= len(dropped)


def _file_key(path: str) -> tuple[str, int, int]:
    """A file as it is now: a cover rewritten in place is hashed (and encoded) again."""
    st = os.stat(path)
    return str(path), st.st_mtime_ns, st.st_size


COVERS = CoverURLs()  # the process's one cache: every backend and event loop shares it
