"""SFT examples and DPO pairs built from the store, in one neutral form both TRL and LLaMA-Factory take.

An example is `{"id", "item_key", "task", "messages": prompt messages, "completion": str, "images": [paths],
"kind": "rationale" | "direct", "difficulty": float}`; a pair has `chosen` and `rejected` instead."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

from distill.data.items import Item
from distill.data.student import DEFAULT_LAYOUT, completion, prompt_messages
from distill.data.templates import pick_template, system_for, template_count


@dataclass
class ExampleOptions:
    direct_share: float = 0.5  # direct-answer (letter only) examples, as a share of rationale examples (>= 1: one
    # per training item, whether or not it has a trace)
    rationales: bool = True  # false: no rationale examples, gold letters only
    include_hinted: bool = False
    templates: bool = True
    curriculum: str = "none"  # none | easy_to_hard | staged
    pairs_per_item: int = 2
    teacher_run: str | None = None
    layout: str = DEFAULT_LAYOUT
    seed: int = 0


@dataclass
class Built:
    examples: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def difficulty(traces: list[dict]) -> float:
    """From what the store knows: attempts needed (0 = first try), a hint needed, rejections seen."""
    if not traces:
        return 1.0
    accepted = [t for t in traces if t["verdict"] == "accepted"]
    if not accepted:
        return 1.0
    best = min(accepted, key=lambda t: (t["hinted"], t["attempt"]))
    rejected = sum(t["verdict"] == "rejected" for t in traces)
    return min(1.0, 0.15 * best["attempt"] + 0.5 * best["hinted"] + 0.05 * rejected)


def _example(item: Item, key: str, k: int, mode: str, opts: ExampleOptions, diff: float, **fields) -> dict:
    """One example's common fields; the prompt uses a template picked per (item, k)."""
    t = pick_template(item.id, k, template_count(item.task)) if opts.templates else 0
    return {
        "id": f"{item.key}:{key}",
        "item_key": item.key,
        "task": item.task,
        "messages": prompt_messages(item, mode, system=system_for(item, t), layout=opts.layout),
        "images": item.images,
        "template": t,
        "difficulty": diff,
        **fields,
    }


def _traces_by_item(store, run: str | None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t in store.traces(run_id=run):
        out.setdefault(t["item_key"], []).append(t)
    return out


def order(examples: list[dict], curriculum: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    examples = list(examples)
    rng.shuffle(examples)
    if curriculum == "easy_to_hard":
        examples.sort(key=lambda e: e["difficulty"])
    elif curriculum == "staged":  # three stages, shuffled within each
        examples.sort(key=lambda e: min(2, int(e["difficulty"] * 3)))
    return examples


def sft_examples(store, items: list[Item], opts: ExampleOptions) -> Built:
    built = Built()
    traces = _traces_by_item(store, opts.teacher_run)
    rationale_examples = []
    for item in items if opts.rationales else []:
        for k, t in enumerate(t for t in traces.get(item.key, []) if t["verdict"] == "accepted"):
            if t["hinted"] and not opts.include_hinted:
                built.skipped["hinted"] += 1
                continue
            rationale_examples.append(
                _example(
                    item,
                    f"r{k}",
                    k,
                    "cot",
                    opts,
                    difficulty(traces.get(item.key, [])),
                    completion=completion(item.gold, t["rationale"]),
                    kind="rationale",
                )
            )
    direct = []
    rng = random.Random(opts.seed)
    pool = list(items)
    n_direct = len(pool) if opts.direct_share >= 1 else round(len(rationale_examples) * opts.direct_share)
    for item in rng.sample(pool, min(n_direct, len(pool))):
        if not item.gold:
            continue
        direct.append(
            _example(
                item,
                "d",
                -1,
                "direct",
                opts,
                difficulty(traces.get(item.key, [])),
                completion=completion(item.gold),
                kind="direct",
            )
        )
    built.examples = order(rationale_examples + direct, opts.curriculum, opts.seed)
    return built


def dpo_pairs(store, items: list[Item], opts: ExampleOptions) -> Built:
    """chosen = an accepted rationale, rejected = one the critic rejected for a wrong answer; same prompt."""
    built = Built()
    traces = _traces_by_item(store, opts.teacher_run)
    pairs = []
    for item in items:
        ts = traces.get(item.key, [])
        good = [t for t in ts if t["verdict"] == "accepted" and (opts.include_hinted or not t["hinted"])]
        bad = [t for t in ts if t["verdict"] == "rejected" and t["reason"] == "wrong_answer" and t["answer"]]
        if not good or not bad:
            built.skipped["no_chosen" if not good else "no_rejected"] += 1
            continue
        # every (accepted, rejected) combination at most once; the diagonals first, so each trace is used early
        combos = sorted(
            itertools.product(range(len(good)), range(len(bad))), key=lambda ij: ((ij[1] - ij[0]) % len(bad), ij[0])
        )
        for k, (i, j) in enumerate(combos[: opts.pairs_per_item]):
            g, b = good[i], bad[j]
            pairs.append(
                _example(
                    item,
                    f"p{k}",
                    k,
                    "cot",
                    opts,
                    difficulty(ts),
                    chosen=completion(item.gold, g["rationale"]),
                    rejected=completion(b["answer"], b["rationale"]),
                )
            )
    built.examples = order(pairs, opts.curriculum, opts.seed)
    return built
