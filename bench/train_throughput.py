"""Training throughput: a naive LoRA SFT step vs `distill sft`'s TRL path, and the DPO step, in one process.

Variants (pick with --variants; each builds a fresh model):
  naive            plain HF forward/backward with the model's own loss (152k-vocabulary logits at every
                   position), left-padded batches, gradient checkpointing as `gradient_checkpointing_enable()`
                   sets it up, LoRA r=8 on the language model's linear layers.
  naive-text-grads the same with only the text embeddings made to require grad
                   (see distill.patches.text_only_input_grads)
  In --dpo-variants, naive is DPO by hand: chosen and rejected through the LoRA policy and, adapters off, the
  reference, full-vocabulary logits at every position, the sigmoid loss; its speedup is a ratio of step times.
  ckpt             TRL's SFTTrainer as `distill sft` builds it (batches flushed left, the fused LM head scoring
                   completion positions only, the frozen vision tower kept out of autograd), checkpointing on
  every2           the same, checkpointing every second layer (`gradient_checkpointing_kwargs.every_n_layers`)
  sac              the same, TRL's selective checkpointing (attention outputs kept)
  nockpt           the same without checkpointing
  mlpckpt          the same with each decoder layer's MLP alone checkpointed (attention's activations kept)
  ...-liger        Liger's fused kernels (RMSNorm, SwiGLU, RoPE; `use_liger_kernel`), TRL's fused LM head kept.
                   Liger patches transformers' classes for the whole process: every later variant runs with its
                   kernels too (recorded as `liger_active`), so list Liger variants last.
  ...-varlen       the vision tower's windows in one varlen flash call per layer (distill.backends.vision_attention)
  ...-nocast       PEFT's per-layer input casts to the float32 adapters skipped under bf16 autocast
                   (peft.helpers.disable_input_dtype_casting, as `distill sft` does)
  ...-b2x, -b4x    twice, four times the batch
  ...-mb1          micro-batches of one example, accumulated to the same examples an optimizer step
                   (`per_device_train_batch_size: 1`, `gradient_accumulation_steps`: the batch)
  ...-drop         LoRA dropout 0.05 (every other variant: 0.0, as configs/sft-7b.yaml now has it)
  ...-compile      each decoder layer compiled (`torch.compile`, dynamic shapes): fewer, fused operations a pass.
                   Measured not to pay (bench/README.md): +3 % on image2text, naive's pace on text2image, and
                   Dynamo fails on Liger's RMSNorm, so list it without -liger
  ...-full         full fine-tuning of the language model (vision tower frozen) instead of LoRA
  ...-prepatch     with -liger: Liger's kernels patched into transformers' classes before the model is built (its
                   modules Liger's from construction), not bound to the built model's modules as the Trainer does
Under `accelerate launch` (DDP or FSDP, configs/accelerate/) the TRL variants run data-parallel: tokens/s
is the whole job's (TRL gathers the token count), and each rank's peak memory is recorded.
Tokens/s counts non-padding tokens. Peak memory is torch's max allocated during the timed steps.

    python bench/train_throughput.py --model 7b --device cuda
    python bench/train_throughput.py --model tiny --device cpu --steps 2 --warmup 1   # smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from dataclasses import dataclass
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
    p.add_argument(
        "--variants",
        default="naive,ckpt,every2,naive-text-grads,sac,nockpt",
        help="comma-separated, run in this order (see above)",
    )
    p.add_argument("--tasks", default="image2text,text2image")
    p.add_argument("--dpo-variants", default="ckpt", help="comma-separated")
    p.add_argument("--skip-dpo", action="store_true")
    p.add_argument(
        "--profile", default=None, help="then profile two steps of this variant on image2text (a separate, untimed run)"
    )
    p.add_argument(
        "--syncs",
        default=None,
        help="then run two steps of this variant on image2text with CUDA's sync debug mode on, and count each place "
        "where the host waited for the GPU (the innermost Python frames; an untimed run)",
    )
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
    from distill.data.student import completion, prompt_messages

    rng = random.Random(seed)
    out = []
    for it in items(task, n, work, seed=seed):
        rationale = _story(rng, int(COMPLETION_WORDS * rng.uniform(0.7, 1.3)))
        out.append(
            {
                "id": it.id,
                "item_key": it.key,
                "task": task,
                "messages": prompt_messages(it, "cot"),
                "completion": completion(it.gold, rationale),
                "images": it.images,
                "kind": "rationale",
                "difficulty": 0.0,
                "chosen": completion(it.gold, rationale),
                "rejected": completion("A" if it.gold != "A" else "B", rationale[::-1][:200]),
            }
        )
    return out


def lora_config(dropout: float = 0.0):
    from peft import LoraConfig

    from distill.train.model import LANGUAGE_LINEARS

    return LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=dropout,
        task_type="CAUSAL_LM",
        target_modules=r".*\.language_model\..*\.(" + "|".join(LANGUAGE_LINEARS) + ")",
    )


def naive_lora(model):
    """The naive path's model: checkpointing as `gradient_checkpointing_enable()` sets it up, LoRA r=8."""
    from peft import get_peft_model

    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    peft_model = get_peft_model(model, lora_config())
    peft_model.train()
    return peft_model


def naive_batch(processor, exs, key, device):
    """Left-padded prompt + completion (`ex[key]`) for each example, labels on the completion tokens only."""
    from bench.workloads import MAX_PIXELS
    from distill.backends.transformers_backend import to_hf_messages
    from distill.data.images import load_image

    prompts, fulls, images = [], [], []
    for ex in exs:
        msgs, paths = to_hf_messages(ex["messages"])
        p = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        prompts.append(p)
        fulls.append(p + ex[key] + "<|im_end|>\n")
        images.extend(load_image(x, MAX_PIXELS) for x in paths)
    enc = processor(text=fulls, images=images, padding=True, padding_side="left", return_tensors="pt").to(device)
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    for row, (p, f) in enumerate(zip(prompts, fulls)):
        n_completion = len(processor.tokenizer(f[len(p) :], add_special_tokens=False)["input_ids"])
        labels[row, : labels.shape[1] - n_completion] = -100
    return enc, labels


def sequence_logps(logits, labels):
    """Each row's summed log-probability of its labelled tokens, from full-vocabulary logits."""
    import torch

    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    mask = labels != -100
    picked = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def naive_steps(peft_model, batch_of, loss_of, steps, warmup, device) -> dict:
    """The naive loop: `batch_of(step)` -> (inputs, labels), `loss_of(inputs, labels)`, AdamW; timed after warm-up."""
    import torch

    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    tokens = 0
    for step in range(warmup + steps):
        enc, labels = batch_of(step)
        if step == warmup:
            sync(device)
            reset_peak(device)
            t0 = time.perf_counter()
        loss = loss_of(enc, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            tokens += int(enc["attention_mask"].sum())
    sync(device)
    t_total = time.perf_counter() - t0
    return {
        "tokens_per_s": tokens / t_total,
        "step_s": t_total / steps,
        "peak_gb": peak_gb(device),
        "loss": float(loss),
    }


def naive_sft(model, processor, exs, batch, steps, warmup, device, text_grads: bool = False) -> dict:
    from distill.patches import text_only_input_grads

    if text_grads:
        text_only_input_grads(model)
    peft_model = naive_lora(model)

    def batch_of(step):
        return naive_batch(processor, [exs[(step * batch + k) % len(exs)] for k in range(batch)], "completion", device)

    return naive_steps(
        peft_model, batch_of, lambda enc, labels: peft_model(**enc, labels=labels).loss, steps, warmup, device
    )


def naive_dpo(model, processor, exs, pairs, steps, warmup, device, beta: float = 0.1) -> dict:
    """DPO by hand: chosen and rejected in one left-padded batch through the LoRA policy and, adapters off, the
    reference, each scored from full-vocabulary logits at every position; the sigmoid loss."""
    import torch
    import torch.nn.functional as F

    peft_model = naive_lora(model)

    def batch_of(step):
        chunk = [exs[(step * pairs + k) % len(exs)] for k in range(pairs)]
        both = [dict(e, answer=e["chosen"]) for e in chunk] + [dict(e, answer=e["rejected"]) for e in chunk]
        return naive_batch(processor, both, "answer", device)

    def loss_of(enc, labels):
        with torch.no_grad(), peft_model.disable_adapter():
            ref = sequence_logps(peft_model(**enc).logits, labels)
        policy = sequence_logps(peft_model(**enc).logits, labels)
        margin = (policy[:pairs] - ref[:pairs]) - (policy[pairs:] - ref[pairs:])
        return -F.logsigmoid(beta * margin).mean()

    return naive_steps(peft_model, batch_of, loss_of, steps, warmup, device)


class SyncCounter:
    """Counts the places where the host waited for the GPU, as CUDA's sync debug mode reports them (a warning from
    the synchronizing call): each place named by its innermost Python frames."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def __enter__(self):
        import warnings

        import torch  # before the filters are kept: its import adds filters of its own

        self._show, self._filters = warnings.showwarning, warnings.filters[:]
        warnings.simplefilter("always")
        warnings.showwarning = self._record
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def _record(self, message, category, filename, lineno, file=None, line=None):
        import traceback

        frames = [f for f in traceback.extract_stack()[:-1] if "/warnings.py" not in f.filename][-3:]
        where = " < ".join(
            f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames)
        )
        self.counts[where] = self.counts.get(where, 0) + 1

    def __exit__(self, *exc):
        import warnings

        import torch

        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode(0)
        warnings.showwarning, warnings.filters[:] = self._show, self._filters

    def report(self) -> list[dict]:
        return [{"where": k, "count": v} for k, v in sorted(self.counts.items(), key=lambda kv: -kv[1])]


def triton_cached() -> int | None:
    """How many compiled kernels Triton's on-disk cache holds (TRITON_CACHE_DIR, else its default ~/.triton/cache),
    None where there is none: a kernel compiled during a step (a new specialisation of one of Liger's, on first
    meeting a shape) shows as one more; one loaded from the cache does not."""
    d = os.environ.get("TRITON_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".triton", "cache")
    return len(os.listdir(d)) if os.path.isdir(d) else None


def without_compiles(step_s: list[float], tokens: list[int], cached: list[int], timed: int) -> dict:
    """The pace of a run's last `timed` steps without those during which Triton compiled a kernel: the pace once a
    process has met every shape it will. `step_s` and `tokens` are each step's from the second on, `cached` Triton's
    cache count as every step ended (the first too): a step compiled where the count rose. Kernels loaded from the
    cache are not seen, so their steps stay in."""
    compiled = (after > before for before, after in zip(cached, cached[1:]))
    rows = list(zip(step_s, tokens, compiled))[-timed:]
    kept = [(s, n) for s, n, compiled in rows if not compiled]
    return {
        "compiling_steps": sum(compiled for _, _, compiled in rows),
        "tokens_per_s_without_compiles": sum(n for _, n in kept) / sum(s for s, _ in kept) if kept else None,
    }


class StepTimer:
    def __init__(self, warmup, device, profile: bool = False, syncs: bool = False):
        self.warmup, self.device, self.profile, self.syncs = warmup, device, profile, syncs
        self.t0 = None
        self.tokens0 = None
        self.prof = None
        self.sync_counter = None
        self.ends: list[float] = []  # when each step ended (the host's clock), warm-up steps too
        self.compiled: list[int] = []  # Triton's cached kernels as each step ended (where it has a cache)
        self.tokens: list[int] = []  # the trainer's token count as each step ended (where it counts them)

    def stop_counting_syncs(self, step: int) -> None:
        if self.sync_counter is not None:
            self.sync_counter.__exit__(None, None, None)
            self.summary = {"steps": step - self.warmup, "syncs": self.sync_counter.report()}
            self.sync_counter = None

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
                    if timer.syncs:
                        timer.sync_counter = SyncCounter().__enter__()
                    if timer.profile:
                        from torch.profiler import ProfilerActivity, profile

                        timer.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                        timer.prof.__enter__()
                        timer.prof_t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timer.ends.append(time.perf_counter())
                if (n := triton_cached()) is not None:
                    timer.compiled.append(n)
                if hasattr(trainer, "_total_train_tokens"):
                    timer.tokens.append(int(trainer._total_train_tokens))
                if state.global_step == timer.warmup + 2:
                    timer.stop_counting_syncs(state.global_step)
                if timer.prof is not None and not hasattr(timer, "summary") and state.global_step == timer.warmup + 2:
                    sync(timer.device)
                    wall = time.perf_counter() - timer.prof_t0
                    timer.prof.__exit__(None, None, None)
                    from bench.workloads import kernel_summary

                    timer.summary = dict(steps=2, **kernel_summary(timer.prof, wall))

            def on_train_end(self, args, state, control, **kw):
                # a run shorter than its two counted steps leaves no debug mode on
                timer.stop_counting_syncs(state.global_step)
                sync(timer.device)
                timer.t1 = time.perf_counter()
                timer.tokens1 = trainer._total_train_tokens if hasattr(trainer, "_total_train_tokens") else None
                timer.peak = peak_gb(timer.device)

        return CB()


# our path's checkpointing settings: (gradient_checkpointing, gradient_checkpointing_kwargs)
OURS = {
    "ckpt": (True, None),
    "every2": (True, {"every_n_layers": 2}),
    "sac": (True, {"selective": True}),
    "nockpt": (False, None),
    "mlpckpt": (False, None),  # then each decoder layer's MLP alone checkpointed (`distill sft`'s checkpoint_mlps)
}


LIGER_PATCHED = False  # set once a Liger variant has patched transformers' classes in this process


# the options a TRL variant's name may add to its base (the module docstring says what each does)
OPTIONS = ("liger", "varlen", "nocast", "b2x", "b4x", "mb1", "drop", "compile", "full", "prepatch")


@dataclass(frozen=True)
class Variant:
    """A TRL variant's name, read once: its base (one of OURS) and the options it adds, such as every2-liger-b2x."""

    base: str
    options: frozenset[str]

    @classmethod
    def parse(cls, name: str) -> Variant:
        base, *options = name.split("-")
        if base not in OURS:
            raise ValueError(f"variant {name}: {base!r} is not one of naive, naive-text-grads, {', '.join(OURS)}")
        if unknown := sorted(set(options) - set(OPTIONS)):
            raise ValueError(f"variant {name}: unknown option {', '.join(unknown)} (options: {', '.join(OPTIONS)})")
        return cls(base, frozenset(options))

    def __contains__(self, option: str) -> bool:
        return option in self.options

    @property
    def checkpointing(self) -> tuple[bool, dict | None]:
        """(gradient_checkpointing, gradient_checkpointing_kwargs)"""
        return OURS[self.base]

    @property
    def patches_liger(self) -> bool:
        """Whether its run patches Liger's kernels into transformers' classes (for the rest of the process)."""
        return bool({"liger", "prepatch"} & self.options)

    @property
    def batch_factor(self) -> int:
        return 4 if "b4x" in self else 2 if "b2x" in self else 1

    def passes(self, batch: int) -> tuple[int, int]:
        """(examples a forward pass, passes accumulated into an optimizer step) for `batch` examples a step: one pass
        of them all, or with `-mb1` one pass an example."""
        return (1, batch) if "mb1" in self else (batch, 1)


def is_naive(name: str) -> bool:
    return name in ("naive", "naive-text-grads")


def bad_variant(variants: list[str]) -> str | None:
    """Why a listed variant cannot run, before any model is built: a name that is not a variant (a misspelt option
    would otherwise run as the variant without it), or a `-compile` variant that would run with Liger's kernels
    patched in (its own `-liger`, or an earlier variant's in the same process: Dynamo fails on Liger's RMSNorm)."""
    liger = False
    for name in variants:
        if is_naive(name):
            continue
        try:
            v = Variant.parse(name)
        except ValueError as e:
            return str(e)
        liger = liger or v.patches_liger
        if liger and "compile" in v:
            return (
                f"variant {name}: -compile cannot run with Liger's kernels, which a -liger variant patches in for "
                "the rest of the process (Dynamo fails on Liger's RMSNorm); run it without -liger, before any"
            )
    return None


def run_keys(variants: list[str]) -> list[str]:
    """The results' key of each run: its variant's name, with `#2`, `#3`... for a variant listed again (a repeat in
    the same process keeps its own figures)."""
    seen: dict[str, int] = {}
    keys = []
    for v in variants:
        seen[v] = seen.get(v, 0) + 1
        keys.append(v if seen[v] == 1 else f"{v}#{seen[v]}")
    return keys


def run_order(args) -> list[str]:
    """The variants in the order main() runs them in one process: the SFT list again for each task (image2text's
    profile and sync-count runs after it), then the DPO list."""
    order = []
    for task in ("image2text", "text2image"):
        if task in args.tasks.split(","):
            order += args.variants.split(",")
            order += [v for v in (args.profile, args.syncs) if v and task == "image2text"]
    return order + ([] if args.skip_dpo else args.dpo_variants.split(","))


def ours(kind, model, processor, exs, batch, steps, warmup, device, variant, work, profile=False, syncs=False) -> dict:
    import torch
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from bench.workloads import MAX_PIXELS
    from distill.patches import text_only_input_grads
    from distill.train.datasets import to_dataset
    from distill.train.settings import LIGER_KERNELS

    global LIGER_PATCHED
    v = Variant.parse(variant)
    checkpointing, ckpt_kwargs = v.checkpointing
    liger = "liger" in v
    liger_active = liger or LIGER_PATCHED
    LIGER_PATCHED = LIGER_PATCHED or liger
    batch *= v.batch_factor
    micro, accumulated = v.passes(batch)
    text_only_input_grads(model)  # as distill sft does with the vision tower frozen
    if "compile" in v:
        for layer in model.model.language_model.layers:
            layer.compile(dynamic=True)
    if "varlen" in v:
        from distill.backends.vision_attention import use_varlen_vision_attention

        assert use_varlen_vision_attention(model, device), "the varlen kernel needs CUDA"
    cls, cfg_cls = (SFTTrainer, SFTConfig) if kind == "sft" else (DPOTrainer, DPOConfig)
    if kind == "sft":
        exs = [{k: v for k, v in e.items() if k not in ("chosen", "rejected")} for e in exs]
    else:
        exs = [{k: v for k, v in e.items() if k != "completion"} for e in exs]
    on_gpu = device.startswith("cuda")
    args = cfg_cls(
        output_dir=str(work / kind),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulated,
        max_steps=warmup + steps,
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=on_gpu,
        use_cpu=not on_gpu,
        max_length=None,
        remove_unused_columns=False,
        disable_tqdm=True,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs=ckpt_kwargs,
        use_liger_kernel=liger,
        liger_kernel_config=dict(LIGER_KERNELS) if liger else None,
        dataloader_num_workers=2 if on_gpu else 0,
        seed=0,
    )
    if not on_gpu:
        from distill.patches import compact_logprobs_on_cpu

        compact_logprobs_on_cpu()
    full = "full" in v
    if full:
        for name, p in model.named_parameters():
            p.requires_grad_(".visual." not in f".{name}")
    trainer = cls(
        model=model,
        args=args,
        train_dataset=to_dataset(exs, MAX_PIXELS),
        processing_class=processor,
        peft_config=None if full else lora_config(0.05 if "drop" in v else 0.0),
    )
    from peft.helpers import disable_input_dtype_casting

    if v.base == "mlpckpt":
        from distill.train.mlp_checkpointing import mlp_checkpointing_callback

        trainer.add_callback(mlps := mlp_checkpointing_callback())
    timer = StepTimer(warmup, device, profile, syncs)
    trainer.add_callback(timer.callback(trainer))
    with disable_input_dtype_casting(trainer.model, active="nocast" in v):
        trainer.train()
    dt = timer.t1 - timer.t0
    out = {"step_s": dt / steps, "peak_gb": timer.peak, "liger_active": liger_active}
    # each step's seconds from the second on, warm-up included: whether a run's pace still changes after its warm-up
    out["step_s_each"] = [round(b - a, 4) for a, b in zip(timer.ends, timer.ends[1:])]
    if timer.compiled:  # a step that compiled a kernel (Liger's, on first meeting a shape) shows a new count
        out["triton_cached_each"] = timer.compiled[1:]
    if timer.tokens:
        out["tokens_each"] = [b - a for a, b in zip(timer.tokens, timer.tokens[1:])]
    if timer.tokens and timer.compiled:
        out.update(without_compiles(out["step_s_each"], out["tokens_each"], timer.compiled, steps))
    if v.base == "mlpckpt":
        out["mlps_checkpointed"] = mlps.wrapped
    if timer.tokens0 is not None and timer.tokens1 is not None:
        out["tokens_per_s"] = (timer.tokens1 - timer.tokens0) / dt
    logs = [r for r in trainer.state.log_history if "loss" in r]
    if logs:
        out["loss"] = logs[-1]["loss"]
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        peaks = [None] * dist.get_world_size()
        dist.all_gather_object(peaks, timer.peak)
        out.update(
            world_size=len(peaks),
            peak_gb_per_rank=peaks,
            peak_gb=max(peaks) if None not in peaks else None,
            distributed=str(trainer.accelerator.distributed_type),
        )
        if "tokens_per_s" in out:
            out["tokens_per_s_per_gpu"] = out["tokens_per_s"] / len(peaks)
    if hasattr(timer, "summary"):
        what = "syncs" if syncs else "profile"
        out[what] = timer.summary
        print(json.dumps({what: {variant: timer.summary}}, indent=1), flush=True)
    del trainer
    torch.cuda.empty_cache() if on_gpu else None
    return out


def liger_before_the_model() -> None:
    """Liger's kernels patched into transformers' Qwen2.5-VL classes before the model is built, so that its modules
    are Liger's from construction (the Trainer otherwise binds Liger's forwards to a built model's modules)."""
    from liger_kernel.transformers import apply_liger_kernel_to_qwen2_5_vl

    from distill.train.settings import LIGER_KERNELS

    global LIGER_PATCHED
    apply_liger_kernel_to_qwen2_5_vl(**LIGER_KERNELS)
    LIGER_PATCHED = True


def model_for(variant: str, args):
    """A fresh model and processor for one variant's run (with `-prepatch`, built from Liger's patched classes)."""
    from bench.workloads import build_model

    if not is_naive(variant) and "prepatch" in Variant.parse(variant):
        liger_before_the_model()
    return build_model(args.model, args.device)


def run_variant(variant, exs, batch, args, work, profile: bool = False, syncs: bool = False, kind="sft") -> dict:
    """One variant's run on a fresh model, SFT (`batch` examples a step) or DPO (`batch` pairs), its model freed
    after; running out of memory is its result."""
    import torch

    model, processor = model_for(variant, args)
    run = (model, processor, exs, batch, args.steps, args.warmup, args.device)
    try:
        if kind == "dpo" and variant == "naive":
            return naive_dpo(*run)
        if is_naive(variant):
            return naive_sft(*run, text_grads=variant == "naive-text-grads")
        return ours(kind, *run, variant, work, profile=profile, syncs=syncs)
    except torch.OutOfMemoryError:
        return {"error": "out of memory"}
    finally:
        del model
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


def main(argv=None) -> dict:
    import torch

    parser = make_parser()
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if bad := bad_variant(run_order(args)):
        parser.error(bad)
    if not args.skip_dpo and "naive-text-grads" in args.dpo_variants.split(","):
        parser.error("variant naive-text-grads is SFT's alone: DPO's hand-written baseline is naive")
    rank = int(os.environ.get("RANK", 0))
    if args.device.startswith("cuda") and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # "cuda" is then this rank's card
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    res = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "model": args.model,
        "steps": args.steps,
        "warmup": args.warmup,
        "tasks": {},
    }

    def save():
        if args.out and rank == 0:  # after every variant, so a run cut short keeps what it measured
            Path(args.out).write_text(json.dumps(res, indent=1))

    for task, batch in (("image2text", args.batch_i2t), ("text2image", args.batch_t2i)):
        if task not in args.tasks.split(","):
            continue
        exs = examples(task, 64, work, seed=2)
        r = res["tasks"][task] = {"batch": batch}
        for v, key in zip(variants, run_keys(variants)):
            m = r[key] = run_variant(v, exs, batch, args, work)
            base = r.get("naive", {}).get("tokens_per_s")
            if base and "tokens_per_s" in m:
                m["speedup"] = m["tokens_per_s"] / base
                m["memory_vs_naive"] = m["peak_gb"] / r["naive"]["peak_gb"] if m["peak_gb"] else None
            print(json.dumps({task: {key: m}}), flush=True)
            save()
        if args.profile and task == "image2text":
            r["profile"] = run_variant(args.profile, exs, batch, args, work, profile=True).get("profile")
            r["profile_variant"] = args.profile
            save()
        if args.syncs and task == "image2text":
            r["syncs"] = run_variant(args.syncs, exs, batch, args, work, syncs=True).get("syncs")
            r["syncs_variant"] = args.syncs
            save()
    if not args.skip_dpo:
        exs = examples("image2text", 32, work, seed=3)
        res["dpo_image2text"] = {}
        dpo_variants = args.dpo_variants.split(",")
        for v, key in zip(dpo_variants, run_keys(dpo_variants)):
            r = run_variant(v, exs, 2, args, work, kind="dpo")
            pairs = 2 * (1 if v == "naive" else Variant.parse(v).batch_factor)
            m = res["dpo_image2text"][key] = dict(r, pairs_per_step=pairs)
            base = res["dpo_image2text"].get("naive", {}).get("step_s")
            if base and "step_s" in r:  # same pairs a step: the ratio of step times
                m["speedup"] = base / r["step_s"] * m["pairs_per_step"] / 2
            print(json.dumps({"dpo": {key: m}}), flush=True)
            save()
    print(f"\n{'task':<11} {'variant':<17} {'tok/s':>7} {'x naive':>7} {'peak GB':>7}")
    for task, r in res["tasks"].items():
        for v in run_keys(variants):
            m = r[v]
            print(
                f"{task:<11} {v:<17} {m.get('tokens_per_s', 0):>7.0f} {m.get('speedup', 0):>7.2f} "
                f"{m.get('peak_gb') or 0:>7.1f} {m.get('error', '')}"
            )
    print("device:", res["device"])
    return res


if __name__ == "__main__":
    main()
