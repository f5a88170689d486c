"""`distill predict`: letter probabilities per test item by one of several methods, then strict answer files.

Methods (`method:` in the recipe's predict section, or --method):
- score:    one forward pass per prompt; probabilities of the option letters.
- debias:   score under K rotations of the options (text2image: of the image order), map back, average.
- prior:    estimate the letter prior from rotations on a share of items, divide it out for the rest.
- cot:      the student reasons, then a letter; with samples > 1, self-consistency: a vote weighted by the
            probability of each sample's letter.
- adaptive: score first; only items whose top probability is under `threshold` get cot + self-consistency.
With `captions` (a describe-then-answer student records it), the student first captions every cover, and each
method's prompts carry those captions after the question.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from distill.backends.base import Backend, ChatRequest
from distill.backends.captions import caption_requests
from distill.data.images import image_tokens, inspect_image
from distill.data.items import Item
from distill.data.permute import permute, rotation
from distill.data.student import (
    CAPTION_TOKENS,
    DEFAULT_LAYOUT,
    Layout,
    parse_completion,
    prompt_messages,
)
from distill.errors import UserError

Method = Literal["score", "debias", "prior", "cot", "adaptive"]
log = logging.getLogger(__name__)
TEMPLATE_TOKENS = 64  # what the chat template adds around the prompt's own text (roles, markers, default system)


class PredictConfig(BaseModel):
    """How `distill predict` answers (every field is also a flag of the command)."""

    model_config = ConfigDict(extra="forbid")

    # debias by default: on held-out motifs it beat score by 16-35 points in each of three seeds for a third more
    # time, and cot by 3 points on average at under a third of cot's time (bench/README.md, draw 2 at 1,000 steps)
    method: Method = Field(
        "debias",
        description="score (one pass) | debias (the mean over rotations of the options) | prior | cot | adaptive.",
    )
    rotations: int = Field(4, ge=1, description="debias/prior: rotations of the options.")
    prior_share: float = Field(0.03, ge=0, le=1, description="prior: share of items that estimate the letter prior.")
    prior_min_items: int = Field(8, ge=1, description="prior: fewest items that estimate the letter prior.")
    samples: int = Field(5, ge=1, description="cot/adaptive: sampled rationales for self-consistency.")
    temperature: float = Field(0.7, ge=0, description="cot/adaptive: sampling temperature.")
    threshold: float = Field(0.6, ge=0, le=1, description="adaptive: top probability under which cot runs.")
    max_new_tokens: int = Field(512, ge=1, description="cot/adaptive: longest rationale.")
    seed: int = Field(0, description="Sampling seed (cot) and choice of prior items.")
    layout: Layout | None = Field(
        None, description="Prompt layout (default: what the model folder records from training, else llamafactory)."
    )
    captions: bool | None = Field(
        None,
        description="Describe, then answer: the student captions every cover first and answers with its captions "
        "in the prompt (default: what the model folder records from training).",
    )


class ContextError(UserError, ValueError):
    """Held-out items whose prompt does not fit the model's context."""


def model_context(model: str | Path) -> int | None:
    """The longest sequence the model folder's config.json allows (`max_position_embeddings`, at its top level or in
    its `text_config`), or None where it says none."""
    try:
        config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = config.get("max_position_embeddings") or (config.get("text_config") or {}).get("max_position_embeddings")
    return int(found) if isinstance(found, int) and found > 0 else None


def prompt_tokens(item: Item, cfg: PredictConfig, max_pixels: int, count_text) -> int:
    """Tokens of `item`'s prompt under `cfg` (the layout, the method's wording, captions), its images at the cap,
    and what the reply needs; `count_text(text)` counts a text's tokens."""
    mode = "cot" if cfg.method in ("cot", "adaptive") else "direct"
    texts = []
    for m in prompt_messages(item, mode, layout=cfg.layout or DEFAULT_LAYOUT):
        parts = [m["content"]] if isinstance(m["content"], str) else m["content"]
        texts += [p if isinstance(p, str) else p.get("text", "") for p in parts]
    images = sum(image_tokens(*_size(path), max_pixels) for path in item.images)
    reply = cfg.max_new_tokens if mode == "cot" else 1
    captions = CAPTION_TOKENS * len(item.cover_images()) if cfg.captions else 0
    return count_text("".join(texts)) + images + captions + reply + TEMPLATE_TOKENS


def _size(path: str) -> tuple[int, int]:
    image = inspect_image(path)
    return (image.width, image.height) if not image.problem else (1, 1)


def _token_counter(model: str | Path):
    """text -> its number of tokens under the model folder's tokenizer (its tokenizer.json read directly where there
    is one: no transformers import, no warning about long inputs)."""
    path = Path(model) / "tokenizer.json"
    if path.is_file():
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(path))
        return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
    from transformers import AutoTokenizer

    slow = AutoTokenizer.from_pretrained(str(model))
    slow.model_max_length = 1 << 62
    return lambda text: len(slow(text, add_special_tokens=False)["input_ids"])


def check_context(model: str | Path, items: list[Item], cfg: PredictConfig, max_pixels: int) -> None:
    """Refuse, before the model loads, held-out items whose prompt cannot fit the model's context (a story of a
    megabyte would be cut, or run out of memory, after minutes): one line naming each such record. A text's UTF-8
    bytes bound its tokens, so the tokenizer reads only the items that bound leaves in doubt."""
    context = model_context(model)
    if context is None:
        return
    doubtful = [it for it in items if prompt_tokens(it, cfg, max_pixels, lambda t: len(t.encode())) > context]
    if not doubtful:
        return
    count = _token_counter(model)
    over = [(it, n) for it in doubtful if (n := prompt_tokens(it, cfg, max_pixels, count)) > context]
    if over:
        shown = "; ".join(f"{it.source or it.task} id={it.id}: {n:,} tokens" for it, n in over[:3])
        more = f" and {len(over) - 3} more" if len(over) > 3 else ""
        raise ContextError(
            f"{len(over)} held-out item(s) do not fit the model's context of {context:,} tokens "
            f"({Path(model) / 'config.json'}): {shown}{more}; shorten their text (nothing was predicted)"
        )


def entropy(probs: dict[str, float]) -> float:
    return -sum(p * math.log(p) for p in probs.values() if p > 0)


Captions = dict[str, str] | None  # cover path -> the student's own caption, for a describe-then-answer student


def _request(item: Item, layout: Layout, mode: str = "direct", captions: Captions = None, **kw) -> ChatRequest:
    return ChatRequest(prompt_messages(item, mode, layout=layout, captions=captions), **kw)


async def caption_covers(backend: Backend, items: list[Item]) -> dict[str, str]:
    """Every distinct cover of `items` -> the student's greedy caption of it (the describe task)."""
    covers, requests = caption_requests(items)
    log.info("describe, then answer: captioning %d cover(s) of %d item(s) first", len(covers), len(items))
    results = await asyncio.gather(*(backend.chat(r) for r in requests))
    return {p: r.text for p, r in zip(covers, results)}


async def score_all(
    backend: Backend, items: list[Item], layout: Layout = DEFAULT_LAYOUT, captions: Captions = None
) -> list[dict[str, float]]:
    """Letter probabilities of every item in one call, so the backend can batch and share work."""
    return await backend.score_many(
        [_request(it, layout, captions=captions) for it in items], [it.letters for it in items]
    )


async def score(
    backend: Backend, item: Item, layout: Layout = DEFAULT_LAYOUT, captions: Captions = None
) -> dict[str, float]:
    return (await score_all(backend, [item], layout, captions))[0]


def unrotate(probs: dict[str, float], order: list[int], letters: list[str]) -> dict[str, float]:
    """Probabilities over a permuted item's letters -> over the original item's letters."""
    out = {L: 0.0 for L in letters}
    for k, L in enumerate(letters):
        out[letters[order[k]]] += probs[L]
    return out


async def rotated_all(
    backend: Backend, items: list[Item], k: int, layout: Layout = DEFAULT_LAYOUT, captions: Captions = None
) -> list[list[tuple[list[int], dict]]]:
    """Per item, (order, probabilities) under each of its first k cyclic rotations."""
    jobs = [(i, rotation(len(it.options), r)) for i, it in enumerate(items) for r in range(min(k, len(it.options)))]
    probs = await score_all(backend, [permute(items[i], o) for i, o in jobs], layout, captions)
    out: list[list] = [[] for _ in items]
    for (i, o), p in zip(jobs, probs):
        out[i].append((o, p))
    return out


def average_unrotated(item: Item, pairs: list[tuple[list[int], dict]]) -> dict[str, float]:
    mapped = [unrotate(p, o, item.letters) for o, p in pairs]
    return {L: sum(m[L] for m in mapped) / len(mapped) for L in item.letters}


async def debias(
    backend: Backend, item: Item, k: int, layout: Layout = DEFAULT_LAYOUT, captions: Captions = None
) -> dict[str, float]:
    return average_unrotated(item, (await rotated_all(backend, [item], k, layout, captions))[0])


async def cot(
    backend: Backend, item: Item, cfg: PredictConfig, samples: int, captions: Captions = None
) -> tuple[dict[str, float], list[str], str | None]:
    """Sampled rationales; each sample's vote is weighted by the probability of its letter. Returns the
    distribution, the rationales, and a note when the vote could not be taken as asked."""
    reqs = [
        _request(
            item,
            cfg.layout,
            "cot",
            captions,
            max_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature if samples > 1 else 0.0,
            seed=cfg.seed + s,
        )
        for s in range(samples)
    ]
    results = await asyncio.gather(*(backend.chat(r) for r in reqs))
    votes = {L: 0.0 for L in item.letters}
    texts, note = [], None
    for req, res in zip(reqs, results):
        texts.append(res.text)
        letter = parse_completion(res.text, item.letters)
        if letter is None:
            continue
        try:
            follow = ChatRequest(
                req.messages
                + [{"role": "assistant", "content": res.text}, {"role": "user", "content": "Final answer letter:"}]
            )
            weight = (await backend.score(follow, item.letters))[letter]
        except NotImplementedError:
            weight, note = 1.0, "the backend cannot score letters: unweighted vote"
        votes[letter] += max(weight, 1e-6)
    total = sum(votes.values())
    if total == 0:
        return (
            await score(backend, item, cfg.layout, captions),
            texts,
            "no rationale named a letter: answered by scoring",
        )
    return {L: v / total for L, v in votes.items()}, texts, note


async def predict_items(backend: Backend, items: list[Item], cfg: PredictConfig, progress=None) -> list[dict]:
    """One details row per item: probabilities (original letters), letter, entropy, method, seconds."""
    rows: dict[str, dict] = {}  # by item key
    t0 = time.perf_counter()
    caps = await caption_covers(backend, items) if cfg.captions else None
    caption_share = (time.perf_counter() - t0) / max(1, len(items))  # each item is charged its share of captioning

    def record(item: Item, probs: dict, name: str, seconds: float, **extra) -> None:
        if caps is not None:
            extra["captions"] = [caps[p] for p in item.cover_images()]
            if item.key not in rows:  # adaptive records an unsure item twice: charged once
                seconds += caption_share
        rows[item.key] = {
            "id": item.id,
            "task": item.task,
            "method": name,
            "probs": probs,
            "letter": max(probs, key=probs.get),
            "entropy": entropy(probs),
            "seconds": seconds,
            **extra,
        }
        if progress:
            progress()

    async def scored(subset: list[Item], name: str) -> None:
        t0 = time.perf_counter()
        probs = await score_all(backend, subset, cfg.layout, caps)
        for it, p in zip(subset, probs):  # batched: each item is charged its share of the batch time
            record(it, p, name, (time.perf_counter() - t0) / max(1, len(subset)))

    async def reasoned(item: Item, name: str) -> None:
        t0 = time.perf_counter()
        probs, texts, note = await cot(backend, item, cfg, cfg.samples, caps)
        record(item, probs, name, time.perf_counter() - t0, rationales=texts, **({"note": note} if note else {}))

    method = cfg.method
    if method == "score":
        await scored(items, "score")
    elif method == "debias":
        t0 = time.perf_counter()
        per_item = await rotated_all(backend, items, cfg.rotations, cfg.layout, caps)
        dt = (time.perf_counter() - t0) / max(1, len(items))
        for it, pairs in zip(items, per_item):
            record(it, average_unrotated(it, pairs), "debias", dt)
    elif method == "prior":
        await _prior(backend, items, cfg, record, caps)
    elif method == "cot":
        await asyncio.gather(*(reasoned(it, "cot") for it in items))
    elif method == "adaptive":
        await scored(items, "score")
        unsure = [it for it in items if max(rows[it.key]["probs"].values()) < cfg.threshold]
        first = {it.key: rows[it.key] for it in unsure}
        await asyncio.gather(*(reasoned(it, "adaptive-cot") for it in unsure))
        for it in unsure:
            rows[it.key]["seconds"] += first[it.key]["seconds"]
            rows[it.key]["score_probs"] = first[it.key]["probs"]
    else:
        raise ValueError(f"unknown method {method!r}")
    return [rows[it.key] for it in items]


async def _prior(backend: Backend, items: list[Item], cfg: PredictConfig, record, captions: Captions = None) -> None:
    """Rotations on a small share of each task's items estimate the letter prior; it is divided out of the
    single-pass probabilities of the rest. All prompts go to the backend in one call, so they share batches."""
    by_task: dict[str, list[Item]] = {}
    for it in items:
        by_task.setdefault(it.task, []).append(it)
    jobs: list[tuple[str, Item, list[int] | None]] = []  # (task, item, rotation order or None for the single pass)
    chosen: set[str] = set()
    for task, task_items in by_task.items():
        rng = random.Random(cfg.seed)
        k = min(len(task_items), max(cfg.prior_min_items, round(len(task_items) * cfg.prior_share)))
        for it in rng.sample(task_items, k):
            chosen.add(it.key)
            jobs += [(task, it, rotation(len(it.options), r)) for r in range(min(cfg.rotations, len(it.options)))]
        jobs += [(task, it, None) for it in task_items if it.key not in chosen]
    t0 = time.perf_counter()
    probs = await score_all(backend, [permute(it, o) if o else it for _, it, o in jobs], cfg.layout, captions)
    dt = (time.perf_counter() - t0) / max(1, len(items))
    for task, task_items in by_task.items():
        rotated = [(it, o, p) for (t, it, o), p in zip(jobs, probs) if t == task and o is not None]
        letters = list(dict.fromkeys(L for it in task_items for L in it.letters))  # items may differ in options
        prior = {L: sum(p.get(L, 0.0) for _, _, p in rotated) / len(rotated) for L in letters}
        per_item: dict[str, list] = {}
        for it, o, p in rotated:
            per_item.setdefault(it.key, []).append((o, p))
        for it in task_items:
            if it.key in per_item:
                record(it, average_unrotated(it, per_item[it.key]), "prior-estimate", dt, prior=prior)
        for (t, it, o), p in zip(jobs, probs):
            if t == task and o is None:
                q = {L: p[L] / max(prior.get(L, 1e-9), 1e-9) for L in p}
                z = sum(q.values())
                record(it, {L: v / z for L, v in q.items()}, "prior", dt)
