"""`distill predict`: letter probabilities per test item by one of several methods, then strict answer files.

Methods (`method:` in the recipe's predict section, or --method):
- score:    one forward pass per prompt; probabilities of the option letters.
- debias:   score under K rotations of the options (text2image: of the image order), map back, average.
- prior:    estimate the letter prior from rotations on a share of items, divide it out for the rest.
- cot:      the student reasons, then a letter; with samples > 1, self-consistency: a vote weighted by the
            probability of each sample's letter.
- adaptive: score first; only items whose top probability is under `threshold` get cot + self-consistency.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Literal

from pydantic import BaseModel

from distill.backends import Backend, ChatRequest
from distill.items import Item
from distill.permute import permute, rotation
from distill.student import parse_completion, prompt_messages

Method = Literal["score", "debias", "prior", "cot", "adaptive"]


class PredictConfig(BaseModel):
    method: Method = "score"
    rotations: int = 4
    prior_share: float = 0.1
    samples: int = 5
    temperature: float = 0.7
    threshold: float = 0.6
    max_new_tokens: int = 512
    seed: int = 0


def entropy(probs: dict[str, float]) -> float:
    return -sum(p * math.log(p) for p in probs.values() if p > 0)


def _request(item: Item, mode: str = "direct", **kw) -> ChatRequest:
    return ChatRequest(prompt_messages(item, mode), **kw)


async def score(backend: Backend, item: Item) -> dict[str, float]:
    return await backend.score(_request(item), item.letters)


def unrotate(probs: dict[str, float], order: list[int], letters: list[str]) -> dict[str, float]:
    """Probabilities over a permuted item's letters -> over the original item's letters."""
    out = {L: 0.0 for L in letters}
    for k, L in enumerate(letters):
        out[letters[order[k]]] += probs[L]
    return out


async def rotated_scores(backend: Backend, item: Item, k: int) -> list[tuple[list[int], dict[str, float]]]:
    n = len(item.options)
    orders = [rotation(n, r) for r in range(min(k, n))]
    probs = await asyncio.gather(*(score(backend, permute(item, o)) for o in orders))
    return list(zip(orders, probs))


async def debias(backend: Backend, item: Item, k: int) -> dict[str, float]:
    pairs = await rotated_scores(backend, item, k)
    mapped = [unrotate(p, o, item.letters) for o, p in pairs]
    return {L: sum(m[L] for m in mapped) / len(mapped) for L in item.letters}


async def cot(backend: Backend, item: Item, cfg: PredictConfig, samples: int) -> tuple[dict[str, float], list[str]]:
    """Sampled rationales; each sample's vote is weighted by the probability of its letter."""
    reqs = [_request(item, "cot", max_tokens=cfg.max_new_tokens, temperature=cfg.temperature if samples > 1 else 0.0,
                     seed=cfg.seed + s) for s in range(samples)]
    results = await asyncio.gather(*(backend.chat(r) for r in reqs))
    votes = {L: 0.0 for L in item.letters}
    texts = []
    for req, res in zip(reqs, results):
        texts.append(res.text)
        letter = parse_completion(res.text, item.letters)
        if letter is None:
            continue
        try:
            follow = ChatRequest(req.messages + [{"role": "assistant", "content": res.text},
                                                 {"role": "user", "content": "Final answer letter:"}])
            weight = (await backend.score(follow, item.letters))[letter]
        except NotImplementedError:
            weight = 1.0
        votes[letter] += max(weight, 1e-6)
    total = sum(votes.values())
    if total == 0:  # no sample committed to a letter: fall back to scoring
        return await score(backend, item), texts
    return {L: v / total for L, v in votes.items()}, texts


async def predict_items(backend: Backend, items: list[Item], cfg: PredictConfig, progress=None) -> list[dict]:
    """One details row per item: probabilities (original letters), letter, entropy, method, seconds."""
    rows: dict[str, dict] = {}
    method = cfg.method

    async def run(item: Item, fn, name: str):
        t0 = time.perf_counter()
        out = await fn(item)
        probs, extra = out if isinstance(out, tuple) else (out, None)
        row = {"id": item.id, "task": item.task, "method": name, "probs": probs,
               "letter": max(probs, key=probs.get), "entropy": entropy(probs),
               "seconds": time.perf_counter() - t0}
        if extra:
            row["rationales"] = extra
        rows[item.id] = row
        if progress:
            progress()

    if method == "score":
        await asyncio.gather(*(run(it, lambda i: score(backend, i), "score") for it in items))
    elif method == "debias":
        await asyncio.gather(*(run(it, lambda i: debias(backend, i, cfg.rotations), "debias") for it in items))
    elif method == "prior":
        await _prior(backend, items, cfg, run, rows)
    elif method == "cot":
        await asyncio.gather(*(run(it, lambda i: cot(backend, i, cfg, cfg.samples), "cot") for it in items))
    elif method == "adaptive":
        await asyncio.gather(*(run(it, lambda i: score(backend, i), "score") for it in items))
        unsure = [it for it in items if max(rows[it.id]["probs"].values()) < cfg.threshold]
        first = {it.id: rows[it.id] for it in unsure}
        await asyncio.gather(*(run(it, lambda i: cot(backend, i, cfg, cfg.samples), "adaptive-cot") for it in unsure))
        for it in unsure:
            rows[it.id]["seconds"] += first[it.id]["seconds"]
            rows[it.id]["score_probs"] = first[it.id]["probs"]
    else:
        raise ValueError(f"unknown method {method!r}")
    return [rows[it.id] for it in items]


async def _prior(backend: Backend, items: list[Item], cfg: PredictConfig, run, rows: dict) -> None:
    by_task: dict[str, list[Item]] = {}
    for it in items:
        by_task.setdefault(it.task, []).append(it)
    for task_items in by_task.values():
        rng = random.Random(cfg.seed)
        k = max(1, round(len(task_items) * cfg.prior_share))
        sample = rng.sample(task_items, min(k, len(task_items)))
        letters = task_items[0].letters
        collected: list[dict[str, float]] = []

        async def estimate(item: Item):
            pairs = await rotated_scores(backend, item, cfg.rotations)
            collected.extend(p for _, p in pairs)
            mapped = [unrotate(p, o, item.letters) for o, p in pairs]
            return {L: sum(m[L] for m in mapped) / len(mapped) for L in item.letters}

        await asyncio.gather(*(run(it, estimate, "prior-estimate") for it in sample))
        prior = {L: sum(c.get(L, 0.0) for c in collected) / len(collected) for L in letters}
        rest = [it for it in task_items if it.id not in {s.id for s in sample}]

        async def corrected(item: Item):
            p = await score(backend, item)
            q = {L: p[L] / max(prior.get(L, 1e-9), 1e-9) for L in p}
            z = sum(q.values())
            return {L: v / z for L, v in q.items()}

        await asyncio.gather(*(run(it, corrected, "prior") for it in rest))
        for s in sample:
            rows[s.id]["prior"] = prior
