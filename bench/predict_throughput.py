"""Inference throughput: naive HF scoring vs `distill predict`'s scoring paths, in one process, same items.

naive:    HF processor + forward on left-padded batches in dataset order, full logits, last position.
ours:     distill.predict with the in-process backend: length-sorted batches, logits_to_keep=1, each image
          preprocessed and encoded once (rotations and recurring distractor covers reuse it).
vllm-raw: vLLM's `LLM.generate` on the same prompts (chat template + images), one token, logprobs=20.
vllm:     distill.predict with the vLLM backend (`--backend vllm`): the same engine, the scored step restricted
          to the option letters; score, debias (4 rotations) and prior. The prefix cache is reset before each run.
Prints questions/s, ratios, and the share of bf16 peak reached against the FLOP floor
(2 x parameters x tokens for the language model, 2 x vision parameters x patches for the vision tower).

    python -m bench.predict_throughput --model 7b --device cuda --n-i2t 256 --n-t2i 128 --vllm
    python -m bench.predict_throughput --model tiny --device cpu --n-i2t 8 --n-t2i 8   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from bench.workloads import MAX_PIXELS, sync


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["7b", "tiny"], default="7b")
    p.add_argument("--device", default="cuda")
    p.add_argument("--n-i2t", type=int, default=256)
    p.add_argument("--n-t2i", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hf-methods", default="score,debias,prior", help="in-process methods to time ('' for none)")
    p.add_argument("--vllm", action="store_true", help="then time vLLM raw and distill's vLLM backend")
    p.add_argument("--vllm-only", action="store_true", help="skip the HF runs (baselines from an earlier call)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.7)
    p.add_argument(
        "--varlen",
        action="store_true",
        help="then score again with the vision tower's varlen attention (distill.backends.vision_attention)",
    )
    p.add_argument("--profile", action="store_true", help="profile one in-process scoring run per task")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p


def naive(model, processor, items, batch: int, device: str) -> tuple[float, list[dict], int]:
    import torch

    from distill.backends.transformers_backend import to_hf_messages
    from distill.data.images import load_image
    from distill.data.student import prompt_messages

    letter_ids = [processor.tokenizer.encode(L, add_special_tokens=False)[0] for L in "ABCD"]
    probs, tokens = [], 0
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(items), batch):
            chunk = items[s : s + batch]
            texts, images = [], []
            for it in chunk:
                msgs, paths = to_hf_messages(prompt_messages(it))
                texts.append(processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
                images.extend(load_image(p, MAX_PIXELS) for p in paths)
            enc = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt").to(
                device
            )
            tokens += int(enc["attention_mask"].sum())
            logits = model(**enc).logits[:, -1, :].float()
            p = torch.softmax(logits[:, letter_ids], dim=-1).tolist()
            probs.extend(dict(zip("ABCD", row)) for row in p)
    sync(device)
    return time.perf_counter() - t0, probs, tokens


def ours(backend, items, method: str, device: str) -> tuple[float, list[dict]]:
    from distill.predict import PredictConfig, predict_items

    sync(device)
    t0 = time.perf_counter()
    rows = asyncio.run(predict_items(backend, items, PredictConfig(method=method, rotations=4)))
    sync(device)
    return time.perf_counter() - t0, rows


def profile(backend, items, device: str) -> dict:
    """One scoring run under torch's profiler (bench.workloads.kernel_summary)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from bench.workloads import kernel_summary

    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        wall, _ = ours(backend, items, "score", device)
    out = dict(items=len(items), **kernel_summary(prof, wall))
    print(json.dumps({"profile": out}, indent=1), flush=True)
    return out


def matmul_peak(device: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 10 * 2 * 8192**3 / (time.perf_counter() - t0)


def vllm_runs(args, tasks: dict, work: Path, results: dict) -> None:
    """The vLLM engine on the 7B architecture at random weights; raw generate vs distill's backend."""
    from vllm import SamplingParams

    from bench.workloads import model_folder
    from distill.backends.base import ChatRequest
    from distill.backends.config import BackendConfig
    from distill.backends.vllm_backend import VLLMBackend
    from distill.data.student import prompt_messages
    from distill.predict import PredictConfig, predict_items

    folder = model_folder(args.model, work / "model")
    t0 = time.perf_counter()
    backend = VLLMBackend(
        BackendConfig(
            backend="vllm",
            model=str(folder),
            max_pixels=MAX_PIXELS,
            dtype="bfloat16",
            extra={
                "load_format": "dummy",
                "max_model_len": 4096,
                "gpu_memory_utilization": args.gpu_memory_utilization,
            },
        )
    )
    llm, _ = backend.engine
    results["vllm_engine_start_s"] = time.perf_counter() - t0
    for task, its in tasks.items():
        r = results["tasks"].setdefault(task, {})

        def prompts(its=its) -> list[dict]:
            return [backend.prompt(ChatRequest(prompt_messages(it))) for it in its]

        plain = SamplingParams(max_tokens=1, temperature=0.0, logprobs=20)
        llm.generate(prompts()[: args.batch], plain, use_tqdm=False)  # warm-up
        ours(backend, its[: args.batch], "score", args.device)
        for m in ("raw", "score", "debias", "prior", "raw2", "score2"):  # raw and score twice: the spread
            llm.reset_prefix_cache()
            t = time.perf_counter()
            if m.startswith("raw"):  # the engine alone: prompts and images made beforehand
                ready = prompts()
                llm.reset_prefix_cache()
                t = time.perf_counter()
                outs = llm.generate(ready, plain, use_tqdm=False)
                r["vllm_prompt_tokens_per_item"] = sum(len(o.prompt_token_ids) for o in outs) / len(its)
            else:
                ours(backend, its, m.rstrip("2"), args.device)
            r[f"vllm_{m}_qps"] = len(its) / (time.perf_counter() - t)
        for m in ("raw", "score"):
            r[f"vllm_{m}_qps"] = max(r[f"vllm_{m}_qps"], r.pop(f"vllm_{m}2_qps"))
        r["vllm_score_vs_raw"] = r["vllm_score_qps"] / r["vllm_raw_qps"]
        r["vllm_debias_cost_vs_score"] = r["vllm_score_qps"] / r["vllm_debias_qps"]
        r["vllm_prior_cost_vs_score"] = r["vllm_score_qps"] / r["vllm_prior_qps"]
        rows = asyncio.run(predict_items(backend, its[:8], PredictConfig()))
        r["vllm_letter_probs_sum_to_one"] = all(abs(sum(x["probs"].values()) - 1) < 1e-3 for x in rows)
        print(json.dumps({task: r}, indent=1), flush=True)


def main(argv=None) -> dict:
    import gc

    import torch

    from bench.workloads import build_model, parameter_counts
    from bench.workloads import items as make_items
    from distill.backends.config import BackendConfig
    from distill.backends.transformers_backend import Model, TransformersBackend

    args = make_parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    model, processor = build_model(args.model, args.device)
    params = parameter_counts(model)
    peak = matmul_peak(args.device)
    cfg = BackendConfig(model=f"<{args.model}>", max_pixels=MAX_PIXELS, concurrency=args.batch)
    backend = TransformersBackend(cfg)
    key = (cfg.model, cfg.device, cfg.dtype, cfg.text_only, cfg.max_pixels)
    TransformersBackend._models[key] = Model(cfg, model=model, processor=processor)
    results = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "model": args.model,
        "batch": args.batch,
        "params": params,
        "bf16_peak_flops": peak,
        "tasks": {},
    }
    methods = [m for m in args.hf_methods.split(",") if m]
    tasks = {
        task: make_items(task, n, work, seed=1) for task, n in (("image2text", args.n_i2t), ("text2image", args.n_t2i))
    }
    for task, its in () if args.vllm_only else tasks.items():
        n = len(its)
        if not n:
            continue
        naive(model, processor, its[: args.batch], args.batch, args.device)  # warm-up
        ours(backend, its[: args.batch], "score", args.device)
        t_naive, p_naive, tokens = naive(model, processor, its, args.batch, args.device)
        runs = {m: ours(backend, its, m, args.device) for m in methods}
        n_img = sum(len(it.images) for it in its)
        patches = n_img * (MAX_PIXELS // (14 * 14))
        floor = 2 * params["language"] * tokens + 2 * params["vision"] * patches
        r = {"items": n, "tokens_per_item": tokens / n, "naive_qps": n / t_naive, "flop_floor_per_item": floor / n}
        for m, (t, _) in runs.items():
            r[f"{m}_qps"] = n / t
        if "score" in runs:
            r["max_prob_diff_naive_vs_ours"] = max(
                abs(a[L] - b["probs"][L]) for a, b in zip(p_naive, runs["score"][1]) for L in "ABCD"
            )
            r["score_vs_naive"] = r["score_qps"] / r["naive_qps"]
            for m in ("debias", "prior"):
                if m in runs:
                    r[f"{m}_cost_vs_score"] = r["score_qps"] / r[f"{m}_qps"]
            if peak:
                r["score_share_of_peak"] = floor / runs["score"][0] / peak
        if peak:
            r["naive_share_of_peak"] = floor / t_naive / peak
        if args.profile:
            r["profile_plain"] = profile(backend, its[: 4 * args.batch], args.device)
        if args.varlen and "score" in runs:
            from distill.backends.vision_attention import use_varlen_vision_attention

            visual = model.model.visual
            plain_impl = visual.config._attn_implementation
            assert use_varlen_vision_attention(model), "the varlen kernel needs CUDA"
            ours(backend, its[: args.batch], "score", args.device)  # warm-up
            for m in methods:
                t, rows = ours(backend, its, m, args.device)
                r[f"{m}_varlen_qps"] = n / t
                r[f"{m}_varlen_max_abs_diff"] = max(
                    abs(a["probs"][L] - b["probs"][L]) for a, b in zip(runs[m][1], rows) for L in "ABCD"
                )
            r["score_varlen_vs_naive"] = r["score_varlen_qps"] / r["naive_qps"]
            if args.profile:
                r["profile_varlen"] = profile(backend, its[: 4 * args.batch], args.device)
            visual.config._attn_implementation = plain_impl
        results["tasks"][task] = r
        print(json.dumps({task: r}, indent=1), flush=True)
        if args.out:  # after every task, so a run cut short keeps what it measured
            Path(args.out).write_text(json.dumps(results, indent=1))
    if args.vllm:
        del backend, model
        TransformersBackend._models.clear()
        gc.collect()
        torch.cuda.empty_cache()
        vllm_runs(args, tasks, work, results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    if args.vllm_only:
        return results
    print(
        f"\n{'task':<11} {'naive':>7} {'ours':>7} {'vllm raw':>9} {'vllm ours':>9} {'/raw':>5} "
        f"{'debias/score':>12} {'prior/score':>11}   (questions/s)"
    )
    for task, r in results["tasks"].items():
        v = "vllm_" if args.vllm else ""
        print(
            f"{task:<11} {r['naive_qps']:>7.2f} {r.get('score_qps', 0):>7.2f} {r.get('vllm_raw_qps', 0):>9.2f} "
            f"{r.get('vllm_score_qps', 0):>9.2f} {r.get('vllm_score_vs_raw', 0):>5.2f} "
            f"{r.get(v + 'debias_cost_vs_score', 0):>12.2f} {r.get(v + 'prior_cost_vs_score', 0):>11.2f}"
        )
    print("device:", results["device"])
    return results


if __name__ == "__main__":
    main()
