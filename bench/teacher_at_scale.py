"""Teachers at scale: `distill graph` against a server, against the same requests fed to the server directly.

For each level of requests in flight: the graph (describer + reasoner with a forced letter, one attempt) over N
MAC-shaped items, with each `--workers` count, then the same request mix without the graph (each distinct cover
described, each item reasoned and its letter forced, `level` requests in flight, one process). Every measurement
runs in a fresh process (cold caches, a warm-up of two items first), against a server whose prefix, multimodal and
encoder caches were just emptied, and is repeated, the two sides' order alternating; the graph's share of the direct
feed is taken within each repeat, and medians are reported, with the server's running batch.

Servers (`--server`):

- `vllm`: a real `vllm serve` of Qwen2.5-VL-7B's architecture at random weights (answers are noise, the load is
  real); tokens/s is the server's prompt + completion tokens a second.
- `instant`: a local OpenAI-compatible server process on 127.0.0.1 that answers every request at once with a fixed
  reply (a letter where the request forces one), so what is measured is the client's own cost per request: the
  client-side proxy of the GPU figures, runnable on a CPU box.

    python -m bench.teacher_at_scale --levels 1,16,64 --items 8,48,192 --out teacher.json
    python -m bench.teacher_at_scale --server instant --levels 16,64,256 --items 256,512,1024 --workers 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=["vllm", "instant"], default="vllm")
    p.add_argument("--model", choices=["7b", "tiny"], default="7b", help="vllm: the architecture served")
    p.add_argument("--levels", default="1,16,64", help="requests in flight")
    p.add_argument("--items", default="8,48,192", help="items per level")
    p.add_argument(
        "--workers",
        default="1",
        help="graph variants, one measurement each: N graph processes (teacher.workers), or NpF with F graph passes "
        "in flight per request in flight instead of --passes-factor (e.g. 1,1p4)",
    )
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--baseline",
        default=None,
        help="a checkout of other code (e.g. `git worktree add /tmp/base HEAD`, with this file copied in) whose direct "
        "feed and one-process graph are measured in the same repeats, just before this code's",
    )
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--describe-tokens", type=int, default=128)
    p.add_argument("--passes-factor", type=int, default=2, help="graph passes in flight per request in flight")
    p.add_argument("--seeded", action="store_true", help="the graph seeds every sampled attempt (teacher.seed 0)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    p.add_argument("--out", default=None)
    # internal: one measurement in this process, or the instant server itself
    p.add_argument("--measure", choices=["graph", "direct"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--model-name", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--serve-instant", action="store_true", help=argparse.SUPPRESS)
    return p


WARM = "warm-up done"  # what a measuring process prints once its warm-up is over

# --- the instant server ------------------------------------------------------------------------------------
INSTANT_TEXT = (
    "The shapes and colours of the cover stand for the idea of the story; weighing each option against them, one "
    "fits best."
)
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def _http_reply(payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def _completion(text: str, completion_tokens: int) -> bytes:
    return _http_reply(
        {
            "id": "chatcmpl-instant",
            "object": "chat.completion",
            "created": 0,
            "model": "instant",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": completion_tokens, "total_tokens": 1000},
        }
    )


class InstantServer(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, as much as an OpenAI client needs: each request's body is read (not parsed), and a
    fixed reply goes back at once: the letter A where vLLM's structured choice forces one, else a rationale with no
    letter in it (so the graph, like the direct feed, forces the letter in a second call)."""

    LETTER = _completion("A", 1)
    TEXT = _completion(INSTANT_TEXT, 24)
    MODELS = _http_reply({"object": "list", "data": [{"id": "instant", "object": "model"}]})

    def connection_made(self, transport) -> None:
        self.transport, self.buffer, self.body_length, self.is_get = transport, bytearray(), None, False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.body_length is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end])
                length = _LENGTH.search(head)
                self.body_length, self.is_get = int(length.group(1)) if length else 0, head.startswith(b"GET")
                del self.buffer[: end + 4]
            if len(self.buffer) < self.body_length:
                return
            forced = self.buffer.find(b'"structured_outputs"', 0, self.body_length) >= 0
            del self.buffer[: self.body_length]
            self.body_length = None
            self.transport.write(self.MODELS if self.is_get else self.LETTER if forced else self.TEXT)


async def serve_instant() -> None:
    server = await asyncio.get_running_loop().create_server(InstantServer, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def start_instant_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.teacher_at_scale", "--serve-instant"], stdout=subprocess.PIPE, text=True
    )
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


# --- vllm serve --------------------------------------------------------------------------------------------
def start_vllm_server(folder: Path, args, log: Path) -> tuple[subprocess.Popen, str]:
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
    env = os.environ | {"VLLM_SERVER_DEV_MODE": "1"}  # its cache-reset routes: every measurement starts cold
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
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


# --- one measurement (in a process of its own) ------------------------------------------------------------
def level_items(level: int, n: int, work: Path):
    from bench.workloads import items as make_items

    covers = work / "covers"
    i2t = make_items("image2text", n // 2, covers, seed=level)
    return i2t + make_items("text2image", n - n // 2, covers, seed=level)


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
    try:
        await asyncio.gather(*(item_chain(it) for it in items))
    finally:
        await backend.aclose()
    return time.perf_counter() - t0, requests, tokens


def backend_config(args, level: int):
    from distill.backends.config import BackendConfig

    return BackendConfig(
        backend="openai",
        base_url=args.url,
        model=args.model_name,
        structured="choice",
        concurrency=level,
        max_retries=2,
        timeout_s=600,
    )


def measure_graph(args, level: int, items, work: Path) -> dict:
    from agents.settings import TeacherConfig
    from distill.backends.openai_backend import OpenAIBackend
    from graphs.runner import run_items
    from store.db import Store

    cfg = backend_config(args, level)
    workers = {"workers": args.workers_n} if args.workers_n > 1 else {}  # a setting older code does not have
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
        **workers,
    )
    store = Store(Path(tempfile.mkdtemp(dir=work)) / "graph.db")
    store.add_items(items)
    backend = OpenAIBackend(cfg)  # one backend for both agents: `level` requests in flight, as in the direct feed
    t = time.perf_counter()
    summary = asyncio.run(run_items(store, items, settings, backend, backend, run_id="bench", show_progress=False))
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "requests": summary.calls,
        "tokens": summary.tokens,
        "failed": summary.failed,
        "passes_in_flight": settings.concurrency,
    }


def measure(args) -> dict:
    """One measurement in this process, after a warm-up (imports, connections) on two items of their own."""
    from distill.backends.openai_backend import OpenAIBackend

    work = Path(args.work)
    level, n = int(args.levels), int(args.items)
    args.workers_n = int(args.workers)
    warm = level_items(99, 2, work / "warm")
    asyncio.run(direct(OpenAIBackend(backend_config(args, 2)), warm, 2, args))
    print(WARM, flush=True)  # the parent samples the server's batch from here on
    items = level_items(level, n, work)
    if args.measure == "graph":
        r = measure_graph(args, level, items, work)
    else:
        seconds, requests, tokens = asyncio.run(direct(OpenAIBackend(backend_config(args, level)), items, level, args))
        r = {"seconds": seconds, "requests": requests, "tokens": tokens, "failed": 0}
    return r | {"requests_per_s": r["requests"] / r["seconds"], "tokens_per_s": r["tokens"] / r["seconds"]}


def run_measurement(args, what: str, level: int, n: int, variant, work: Path, code: str | None = None) -> dict:
    """One measurement in a fresh process, of this code or of the checkout `code`; against vLLM, on emptied caches,
    with the server's running batch sampled once the process's warm-up is over. `variant`: the graph's processes,
    with its passes factor after a `p` where it is not --passes-factor's."""
    workers, _, factor = str(variant).partition("p")
    cmd = [sys.executable, "-m", "bench.teacher_at_scale", "--measure", what, "--url", args.url]
    cmd += ["--model-name", args.model_name, "--work", str(work), "--levels", str(level), "--items", str(n)]
    cmd += ["--workers", workers, "--passes-factor", factor or str(args.passes_factor)]
    cmd += ["--max-new-tokens", str(args.max_new_tokens), "--describe-tokens", str(args.describe_tokens)]
    cmd += ["--seeded"] if args.seeded else []
    batch = None
    if args.server == "vllm":
        root = args.url.removesuffix("/v1")
        reset_caches(root)
        batch = RunningBatch(root)
    warm_at = None  # (older code, a --baseline, says nothing: its whole run is sampled)
    try:
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=code)
            hung = threading.Timer(3600, proc.kill)  # the hour a measurement may take, as before
            hung.start()
            lines = []
            try:
                for line in proc.stdout:
                    if line.strip() == WARM:
                        warm_at = time.monotonic()
                    lines.append(line)
            finally:
                hung.cancel()
            if proc.wait():
                err.seek(0)
                raise SystemExit(f"{what} at {level} in flight ({code or 'this code'}) failed:\n{err.read()[-4000:]}")
    finally:
        sampled = batch.stop(since=warm_at) if batch else {}
    return json.loads("".join(lines).strip().splitlines()[-1]) | sampled


def reset_caches(root: str) -> None:
    """Empty the server's prefix, multimodal and encoder caches, so that no measurement finds the covers and prompts
    of the one before it cached (the same items run at a level, in every repeat): each starts as a real run of new
    items does."""
    for route in ("/reset_prefix_cache", "/reset_mm_cache", "/reset_encoder_cache"):
        for _ in range(30):  # (the prefix cache refuses while blocks are still held)
            with urllib.request.urlopen(urllib.request.Request(root + route, data=b"", method="POST"), timeout=30) as r:
                body = r.read()
            if route != "/reset_prefix_cache" or json.loads(body).get("success"):
                break
            time.sleep(1)
        else:
            raise SystemExit(f"{root}{route}: the server would not empty its prefix cache")


class RunningBatch:
    """vLLM's own gauges (`/metrics`: requests running in the engine's batch, requests waiting), sampled every 0.2 s
    on a thread: is the server kept busy, or is it waiting for the client?"""

    def __init__(self, root: str):
        self.url, self.samples, self.done = root + "/metrics", [], threading.Event()  # (time, running, waiting)
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.2):
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    text = r.read().decode()
                running, waiting = gauge(text, "vllm:num_requests_running"), gauge(text, "vllm:num_requests_waiting")
            except Exception:  # a page cut short or garbled: this sample is lost, not the sampling
                continue
            self.samples.append((time.monotonic(), running, waiting))

    def stop(self, since: float | None = None) -> dict:
        """Mean and peak of the samples from `since` on where requests were in the engine (not the idle moments
        before the load arrives or after it ends)."""
        self.done.set()
        self.thread.join()
        busy = [(r, w) for t, r, w in self.samples if r > 0 and (since is None or t >= since)]
        if not busy:
            return {"server_running_mean": 0.0, "server_running_max": 0.0, "server_waiting_mean": 0.0}
        return {
            "server_running_mean": statistics.mean(r for r, _ in busy),
            "server_running_max": max(r for r, _ in busy),
            "server_waiting_mean": statistics.mean(w for _, w in busy),
        }


def gauge(metrics: str, name: str) -> float:
    """The sum of a Prometheus gauge's samples (one per engine) in a /metrics page."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(name + "{"))


# --- the whole benchmark -----------------------------------------------------------------------------------
def main(argv=None) -> dict:
    args = make_parser().parse_args(argv)
    if args.serve_instant:
        asyncio.run(serve_instant())
        return {}
    if args.measure:
        result = measure(args)
        print(json.dumps(result), flush=True)
        return result
    work = Path(tempfile.mkdtemp(prefix="bench-teacher-"))
    t0 = time.perf_counter()
    if args.server == "instant":
        proc, args.url = start_instant_server()
        args.model_name, device = "instant", f"instant server, client on {os.cpu_count()} CPU cores"
    else:
        import torch

        from bench.workloads import model_folder

        folder = model_folder(args.model, work / "model")
        proc, args.url = start_vllm_server(folder, args, work / "server.log")
        args.model_name, device = str(folder), torch.cuda.get_device_name(0) if torch_cuda() else "cpu"
    results = {
        "command": " ".join(["python -m bench.teacher_at_scale", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d"),
        "device": device,
        "server": args.server,
        "server_start_s": time.perf_counter() - t0,
        "levels": {},
    }
    workers = args.workers.split(",")
    try:
        for level, n in zip(map(int, args.levels.split(",")), map(int, args.items.split(","))):
            level_items(level, n, work)  # the covers are drawn before any measurement
            results["levels"][level] = run_level(args, level, n, workers, work)
            print(json.dumps({level: results["levels"][level]["median"]}), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print_table(results, workers, bool(args.baseline))
    return results


def run_level(args, level: int, n: int, workers: list[int], work: Path) -> dict:
    """Each repeat measures the direct feed and the graph at each worker count, one after another (the baseline's
    first, where one is given; the direct feed first in odd repeats, last in even ones, so that neither side always
    meets the server as the other left it); the graph's share of the direct feed is taken within the repeat."""
    codes = ([("baseline_", args.baseline, [1])] if args.baseline else []) + [("", None, workers)]
    runs = []
    for repeat in range(args.repeats):
        run = {}
        for prefix, code, counts in codes:
            order = [("direct", 1), *(("graph", w) for w in counts)]
            for what, w in order if repeat % 2 == 0 else reversed(order):
                key = f"{prefix}direct" if what == "direct" else f"{prefix}graph_w{w}"
                run[key] = run_measurement(args, what, level, n, w, work, code) | {"order": len(run)}
            for w in counts:
                run[f"{prefix}graph_w{w}"]["share_of_direct"] = share(
                    run[f"{prefix}graph_w{w}"], run[f"{prefix}direct"], args.server
                )
        runs.append(run)
    median = {"items": n}
    for key in ("direct", *(f"graph_w{w}" for w in workers)):  # this code's server batch, where sampled
        if "server_running_mean" in runs[0][key]:
            median[f"{key}_server_running"] = statistics.median(r[key]["server_running_mean"] for r in runs)
    for prefix, _, counts in codes:
        median[f"{prefix}direct_requests_per_s"] = statistics.median(
            r[f"{prefix}direct"]["requests_per_s"] for r in runs
        )
        median[f"{prefix}direct_tokens_per_s"] = statistics.median(r[f"{prefix}direct"]["tokens_per_s"] for r in runs)
        for w in counts:
            key = f"{prefix}graph_w{w}"
            median[f"{key}_requests_per_s"] = statistics.median(r[key]["requests_per_s"] for r in runs)
            median[f"{key}_tokens_per_s"] = statistics.median(r[key]["tokens_per_s"] for r in runs)
            median[f"{key}_items_per_s"] = statistics.median(n / r[key]["seconds"] for r in runs)
            median[f"{key}_share_of_direct"] = statistics.median(r[key]["share_of_direct"] for r in runs)
            median[f"{key}_failed"] = max(r[key]["failed"] for r in runs)
    return {"runs": runs, "median": median}


def share(graph: dict, direct_run: dict, server: str) -> float:
    """The graph's throughput as a share of the direct feed's: in items (instant: the same items, so the inverse
    ratio of their times; workers describe a few covers twice, which requests/s would count as work) or in server
    tokens (vllm)."""
    if server == "instant":
        return direct_run["seconds"] / graph["seconds"]
    return graph["tokens_per_s"] / direct_run["tokens_per_s"]


def print_table(results: dict, workers: list[int], baseline: bool) -> None:
    """Medians: requests/s of the direct feed and of the graph at each worker count, the graph's share of the direct
    feed; the baseline's (if measured) on the left."""
    codes = ([("baseline_", "before ", [1])] if baseline else []) + [("", "", workers)]
    head = f"{'in flight':>9} {'items':>6}"
    for _, name, counts in codes:
        head += f" {f'{name}direct req/s':>19}"
        for w in counts:
            head += f" {f'{name}graph w{w} req/s':>22} {f'{name}w{w} / direct':>17}"
    print("\n" + head)
    for level, r in results["levels"].items():
        m = r["median"]
        line = f"{level:>9} {m['items']:>6}"
        for prefix, _, counts in codes:
            line += f" {m[f'{prefix}direct_requests_per_s']:>19.1f}"
            for w in counts:
                key = f"{prefix}graph_w{w}"
                line += f" {m[f'{key}_requests_per_s']:>22.1f} {m[f'{key}_share_of_direct']:>17.2f}"
        print(line)
    if results["server"] == "vllm":  # what the server did: tokens a second and its running batch
        print(f"\n{'in flight':>9} {'direct tok/s':>13} {'batch':>6}", end="")
        for w in workers:
            print(f" {f'graph w{w} tok/s':>16} {'items/s':>8} {'batch':>6}", end="")
        print()
        for level, r in results["levels"].items():
            m = r["median"]
            line = f"{level:>9} {m['direct_tokens_per_s']:>13,.0f} {m.get('direct_server_running', 0):>6.1f}"
            for w in workers:
                k = f"graph_w{w}"
                line += f" {m[f'{k}_tokens_per_s']:>16,.0f} {m[f'{k}_items_per_s']:>8.2f}"
                line += f" {m.get(f'{k}_server_running', 0):>6.1f}"
            print(line)
    print("device:", results["device"])


if __name__ == "__main__":
    main()
