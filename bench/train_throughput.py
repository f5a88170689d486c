"""Training throughput: a naive LoRA SFT step vs `distill sft`'s TRL path, and the DPO step, in one process.

naive:  plain HF forward/backward with the model's own loss (full 152k-vocabulary logits at every position),
        left-padded batches, gradient checkpointing, LoRA r=8 on the language model's linear layers.
ours:   TRL's SFTTrainer as `distill sft` builds it: prompt/completion batches flushed left, the fused LM
        head scoring only completion positions, the same LoRA; gradient checkpointing only if asked.
Tokens/s counts non-padding tokens. Peak memory is torch's max allocated during the timed steps.

    python bench/train_throughput.py --model 7b --device cuda
    python bench/train_throughput.py --model tiny --device cpu --steps 2 --warmup 1   # smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

from bench.workloads import sync

COMPLETION_WORDS = 90  # a rationale of ~120 tokens plus the answer line


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["7b", "tiny"], default="7b")
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-i2t", type=int, default=4)
    p.add_argument("--batch-t2i", type=int, default=2)
    p.add_argument("--ours-checkpointing", action="store_true", help="gradient checkpointing on our path too")
    p.add_argument("--skip-dpo", action="store_true")
    p.add_argument("--out", default=None)
    return p


def reset_peak(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device):
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def examples(task: str, n: int, work: Path, seed: int) -> list[dict]:
    import random

    from bench.workloads import _story, items
    from distill.student import completion, prompt_messages

    rng = random.Random(seed)
    out = []
    for it in items(task, n, work, seed=seed):
        rationale = _story(rng, int(COMPLETION_WORDS * rng.uniform(0.7, 1.3)))
        out.append({"id": it.id, "item_id": it.id, "task": task, "messages": prompt_messages(it, "cot"),
                    "completion": completion(it.gold, rationale), "images": it.images, "kind": "rationale",
                    "difficulty": 0.0, "chosen": completion(it.gold, rationale),
                    "rejected": completion("A" if it.gold != "A" else "B", rationale[::-1][:200])})
    return out


def lora_config():
    from peft import LoraConfig

    from distill.train.common import LANGUAGE_LINEARS

    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=r".*\.language_model\..*\.(" + "|".join(LANGUAGE_LINEARS) + ")")


def naive_sft(model, processor, exs, batch, steps, warmup, device) -> dict:
    import torch
    from peft import get_peft_model

    from distill.backends.transformers_backend import to_hf_messages
    from distill.images import load_image
    from bench.workloads import MAX_PIXELS

    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    peft_model = get_peft_model(model, lora_config())
    peft_model.train()
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    tokens, t_total = 0, 0.0
    for step in range(warmup + steps):
        chunk = [exs[(step * batch + k) % len(exs)] for k in range(batch)]
        prompts, fulls, images = [], [], []
        for ex in chunk:
            msgs, paths = to_hf_messages(ex["messages"])
            p = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            prompts.append(p)
            fulls.append(p + ex["completion"] + "<|im_end|>\n")
            images.extend(load_image(x, MAX_PIXELS) for x in paths)
        enc = processor(text=fulls, images=images, padding=True, padding_side="left", return_tensors="pt").to(device)
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        for row, (p, f) in enumerate(zip(prompts, fulls)):
            n_completion = len(processor.tokenizer(f[len(p):], add_special_tokens=False)["input_ids"])
            labels[row, : labels.shape[1] - n_completion] = -100
        if step == warmup:
            sync(device)
            reset_peak(device)
            t0 = time.perf_counter()
        loss = peft_model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            tokens += int(enc["attention_mask"].sum())
    sync(device)
    t_total = time.perf_counter() - t0
    return {"tokens_per_s": tokens / t_total, "step_s": t_total / steps, "peak_gb": peak_gb(device),
            "loss": float(loss)}


class StepTimer:
    def __init__(self, warmup, device):
        self.warmup, self.device = warmup, device
        self.t0 = None
        self.tokens0 = None

    def callback(self, trainer):
        from transformers import TrainerCallback

        timer = self

        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if state.global_step == timer.warmup and timer.t0 is None:
                    sync(timer.device)
                    reset_peak(timer.device)
                    timer.tokens0 = trainer._total_train_tokens if hasattr(trainer, "_total_train_tokens") else None
                    timer.t0 = time.perf_counter()

            def on_train_end(self, args, state, control, **kw):
                sync(timer.device)
                timer.t1 = time.perf_counter()
                timer.tokens1 = trainer._total_train_tokens if hasattr(trainer, "_total_train_tokens") else None
                timer.peak = peak_gb(timer.device)

        return CB()


def ours(kind, model, processor, exs, batch, steps, warmup, device, checkpointing, work) -> dict:
    import torch
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from bench.workloads import MAX_PIXELS
    from distill.train.datasets import to_dataset

    cls, cfg_cls = (SFTTrainer, SFTConfig) if kind == "sft" else (DPOTrainer, DPOConfig)
    if kind == "sft":
        exs = [{k: v for k, v in e.items() if k not in ("chosen", "rejected")} for e in exs]
    else:
        exs = [{k: v for k, v in e.items() if k != "completion"} for e in exs]
    on_gpu = device.startswith("cuda")
    args = cfg_cls(output_dir=str(work / kind), per_device_train_batch_size=batch, max_steps=warmup + steps,
                   learning_rate=1e-4, logging_steps=1, save_strategy="no", report_to="none", bf16=on_gpu,
                   use_cpu=not on_gpu, max_length=None, remove_unused_columns=False, disable_tqdm=True,
                   gradient_checkpointing=checkpointing, dataloader_num_workers=2 if on_gpu else 0, seed=0)
    if not on_gpu:
        from distill.train.cpu import compact_logprobs_on_cpu

        compact_logprobs_on_cpu()
    trainer = cls(model=model, args=args, train_dataset=to_dataset(exs, MAX_PIXELS), processing_class=processor,
                  peft_config=lora_config())
    timer = StepTimer(warmup, device)
    trainer.add_callback(timer.callback(trainer))
    trainer.train()
    dt = timer.t1 - timer.t0
    out = {"step_s": dt / steps, "peak_gb": timer.peak}
    if timer.tokens0 is not None and timer.tokens1 is not None:
        out["tokens_per_s"] = (timer.tokens1 - timer.tokens0) / dt
    logs = [r for r in trainer.state.log_history if "loss" in r]
    if logs:
        out["loss"] = logs[-1]["loss"]
    del trainer
    torch.cuda.empty_cache() if on_gpu else None
    return out


def main(argv=None) -> dict:
    import torch

    from bench.workloads import build_model

    args = make_parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    res = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
           "model": args.model, "steps": args.steps, "warmup": args.warmup, "tasks": {}}
    for task, batch in (("image2text", args.batch_i2t), ("text2image", args.batch_t2i)):
        exs = examples(task, 64, work, seed=2)
        r = {"batch": batch}
        model, processor = build_model(args.model, args.device)
        r["naive"] = naive_sft(model, processor, exs, batch, args.steps, args.warmup, args.device)
        del model
        gc.collect()
        model, processor = build_model(args.model, args.device)
        try:
            r["ours"] = ours("sft", model, processor, exs, batch, args.steps, args.warmup, args.device,
                             args.ours_checkpointing, work)
        except torch.OutOfMemoryError:
            del model
            gc.collect()
            torch.cuda.empty_cache()
            model, processor = build_model(args.model, args.device)
            r["ours"] = ours("sft", model, processor, exs, batch, args.steps, args.warmup, args.device, True, work)
            r["ours"]["checkpointing"] = True
        if "tokens_per_s" in r["ours"]:
            r["speedup"] = r["ours"]["tokens_per_s"] / r["naive"]["tokens_per_s"]
        del model
        gc.collect()
        res["tasks"][task] = r
        print(json.dumps({task: r}, indent=1), flush=True)
    if not args.skip_dpo:
        exs = examples("image2text", 32, work, seed=3)
        model, processor = build_model(args.model, args.device)
        res["dpo_image2text"] = ours("dpo", model, processor, exs, 2, args.steps, args.warmup, args.device,
                                     args.ours_checkpointing, work)
        res["dpo_image2text"]["pairs_per_step"] = 2
        print(json.dumps({"dpo": res["dpo_image2text"]}, indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"\n{'task':<11} {'naive tok/s':>11} {'ours tok/s':>10} {'speedup':>7} {'naive GB':>8} {'ours GB':>7}")
    for task, r in res["tasks"].items():
        print(f"{task:<11} {r['naive']['tokens_per_s']:>11.0f} {r['ours'].get('tokens_per_s', 0):>10.0f} "
              f"{r.get('speedup', 0):>7.2f} {r['naive']['peak_gb'] or 0:>8.1f} {r['ours']['peak_gb'] or 0:>7.1f}")
    print("device:", res["device"])
    return res


if __name__ == "__main__":
    main()
