"""Teacher-graph throughput against a local OpenAI-compatible server as --concurrency rises.

Starts `transformers serve` (continuous batching) on 127.0.0.1 with the tiny model, runs the graph over
the same sample items at each concurrency into a fresh store, and prints items/s.

    python bench/teacher_concurrency.py --items 24 --levels 1 4 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=24)
    p.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--device", default="cpu", help="where the server runs the model (cpu, cuda)")
    p.add_argument("--continuous-batching", action=argparse.BooleanOptionalAction, default=True)
    return p


def main(argv=None) -> None:
    args = make_parser().parse_args(argv)
    from distill.backends.config import BackendConfig
    from distill.backends.openai_backend import OpenAIBackend
    from distill.config import TeacherConfig
    from distill.data.records import load_json
    from distill.kit.sample_data import generate
    from distill.kit.tiny_model import build_tiny_model
    from graphs.runner import run_items
    from store import open_store

    work = Path(tempfile.mkdtemp(prefix="bench-teacher-"))
    data = generate(work / "data", n_train=args.items, n_dev=1, n_test=1)
    model = build_tiny_model(work / "model")
    items = load_json(data / "image2text_train.json").items + load_json(data / "text2image_train.json").items
    items = items[: args.items]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        str(Path(sys.executable).parent / "transformers"),
        "serve",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        args.device,
    ]
    if args.continuous_batching:
        cmd.append("--continuous-batching")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(work / "hub"))
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        cfg = BackendConfig(
            backend="openai",
            base_url=f"http://127.0.0.1:{port}/v1",
            model=str(model),
            max_pixels=50176,
            concurrency=max(args.levels),
        )
        teacher = TeacherConfig(max_attempts=1, rationalize=False, max_new_tokens=args.max_new_tokens, min_words=1)

        async def run(store, todo, run_id, level):
            backend = OpenAIBackend(cfg)
            try:
                return await run_items(
                    store, todo, run_id, backend, None, teacher, concurrency=level, show_progress=False
                )
            finally:
                await backend.aclose()

        store = open_store(work / "warm.db")  # warm-up: the server loads the model on first use
        store.add_items(items[:2])
        asyncio.run(run(store, items[:2], "warm", 2))
        print(f"{'concurrency':>11} {'items':>6} {'seconds':>8} {'items/s':>8}")
        for level in args.levels:
            store = open_store(work / f"c{level}.db")
            store.add_items(items)
            t0 = time.perf_counter()
            s = asyncio.run(run(store, items, f"c{level}", level))
            dt = time.perf_counter() - t0
            assert s.failed == 0, s.errors
            print(f"{level:>11} {len(items):>6} {dt:>8.2f} {len(items) / dt:>8.2f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
