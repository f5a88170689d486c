"""Teachers at scale: `distill graph` against a real `vllm serve` of Qwen2.5-VL-7B's architecture (random weights:
answers are noise, the load is real), against the same requests fed to the server directly.

For each concurrency level: the graph (describer + reasoner with a forced letter, one attempt) over N MAC-shaped
items, then the same request mix without the graph (each distinct cover described, each item reasoned and its
letter forced, `level` requests in flight). Items/s, and server tokens/s (prompt + completion, from the server's
usage) for both; the graph's share of the direct feed is what the graph costs.

    python -m bench.teacher_at_scale --levels 1,16,64 --items 8,48,192 --out teacher.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
    p.add_argument("--model", choices=["7b", "tiny"], default="7b")
    p.add_argument("--levels", default="1,16,64")
    p.add_argument("--items", default="8,48,192", help="items per level")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--describe-tokens", type=int, default=128)
    p.add_argument("--passes-factor", type=int, default=2, help="graph passes in flight per request in flight")
    p.add_argument("--seeded", action="store_true", help="the graph seeds every sampled attempt (teacher.seed 0)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    p.add_argument("--out", default=None)
    return p


def start_server(folder: Path, args, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--load-format",
        "dummy",
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "4096",
        "--gpu-memory-utilization",
        str(args.gpu_memory_utilization),
        "--limit-mm-per-prompt",
        '{"image": 4, "video": 0}',
        "--logprobs-mode",
        "processed_logprobs",
    ]
    if not torch_cuda():  # vLLM's CPU build: seeded sampling fails under chunked prefill ("does not use offset")
        cmd += ["--no-enable-chunked-prefill", "--mm-processor-cache-gb", "0"]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=os.environ.copy())  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < 600:
        if proc.poll() is not None:
            raise SystemExit("vllm serve exited:\n" + log.read_text()[-4000:])
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2):
                return proc, url + "/v1"
        except OSError:
            time.sleep(2)
    proc.kill()
    raise SystemExit("vllm serve not ready in 600 s")


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


async def direct(backend, items, level: int, args) -> tuple[float, int, int]:
    """The graph's request mix, straight to the server: (seconds, requests, tokens)."""
    from agents.describer import describe_request
    from agents.reasoner import answer_request, reason_request

    sem = asyncio.Semaphore(level)
    tokens = requests = 0
    described: dict[str, asyncio.Task] = {}  # covers recur across items: described once, as the graph does

    async def call(req):
        nonlocal tokens, requests
        async with sem:
            res = await backend.chat(req)
        tokens += (res.prompt_tokens or 0) + (res.completion_tokens or 0)
        requests += 1
        return res

    async def item_chain(it):
        for p in it.cover_images():
            if p not in described:
                described[p] = asyncio.ensure_future(call(describe_request(p, args.describe_tokens)))
        descs = {p: (await described[p]).text for p in it.cover_images()}
        req = reason_request(it, descs, max_tokens=args.max_new_tokens, temperature=0.7)
        res = await call(req)
        await call(answer_request(req, res.text, it.letters))

    t0 = time.perf_counter()
    await asyncio.gather(*(item_chain(it) for it in items))
    return time.perf_counter() - t0, requests, tokens


def main(argv=None) -> dict:
    import torch

    from agents.settings import TeacherConfig
    from bench.workloads import items as make_items
    from bench.workloads import model_folder
    from distill.backends.config import BackendConfig
    from distill.backends.openai_backend import OpenAIBackend
    from graphs.runner import run_items
    from store.db import Store

    args = make_parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-teacher-"))
    folder = model_folder(args.model, work / "model")
    t0 = time.perf_counter()
    proc, url = start_server(folder, args, work / "server.log")
    results = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "server_start_s": time.perf_counter() - t0,
        "levels": {},
    }
    try:
        warm = BackendConfig(backend="openai", base_url=url, model=str(folder), structured="choice", timeout_s=600)
        asyncio.run(direct(OpenAIBackend(warm), make_items("text2image", 2, work / "covers", seed=99), 2, args))
        for level, n in zip(map(int, args.levels.split(",")), map(int, args.items.split(","))):
            its = make_items("image2text", n // 2, work / "covers", seed=level) + make_items(
                "text2image", n - n // 2, work / "covers", seed=level
            )
            # `level` requests in flight for both; the graph keeps more passes in flight than that, as a user would
            cfg = BackendConfig(
                backend="openai",
                base_url=url,
                model=str(folder),
                structured="choice",
                concurrency=level,
                max_retries=2,
                timeout_s=600,
            )
            settings = TeacherConfig(
                describer=cfg,
                reasoner=cfg,
                max_attempts=1,
                rationalize=False,
                max_new_tokens=args.max_new_tokens,
                describe_tokens=args.describe_tokens,
                temperature=0.7,
                concurrency=args.passes_factor * level,
                min_words=1,
                seed=0 if args.seeded else None,
            )
            store = Store(work / f"graph-{level}.db")
            store.add_items(its)
            t = time.perf_counter()
            summary = asyncio.run(
                run_items(
                    store,
                    its,
                    settings,
                    OpenAIBackend(cfg),
                    OpenAIBackend(cfg),
                    run_id=f"c{level}",
                    show_progress=False,
                )
            )
            g_s = time.perf_counter() - t
            d_s, d_req, d_tok = asyncio.run(direct(OpenAIBackend(cfg), its, level, args))
            r = {
                "items": n,
                "graph_items_per_s": n / g_s,
                "graph_tokens_per_s": summary.tokens / g_s,
                "graph_calls": summary.calls,
                "graph_failed": summary.failed,
                "direct_items_per_s": n / d_s,
                "direct_tokens_per_s": d_tok / d_s,
                "direct_requests": d_req,
            }
            r["graph_share_of_direct"] = r["graph_tokens_per_s"] / r["direct_tokens_per_s"]
            results["levels"][level] = r
            print(json.dumps({level: r}), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\n{'concurrency':>11} {'graph items/s':>13} {'graph tok/s':>11} {'direct tok/s':>12} {'share':>6}")
    for level, r in results["levels"].items():
        print(
            f"{level:>11} {r['graph_items_per_s']:>13.2f} {r['graph_tokens_per_s']:>11.0f} "
            f"{r['direct_tokens_per_s']:>12.0f} {r['graph_share_of_direct']:>6.2f}"
        )
    print("device:", results["device"])
    return results


if __name__ == "__main__":
    main()
