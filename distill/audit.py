"""`distill audit`: is any held-out (dev or test) item reachable from what trains?

Held out is each dev/test item's own content: its key, its cover (image2text: the image; text2image: the gold
image when known) by sha256 of the bytes, and its story (text2image: the story in the question; image2text: the
gold story when known) by normalised text. What trains is every train and validation item, augmented items with
their distractors and parents, and exported examples. The same check runs before augment, export, sft and dpo,
which refuse leaked data unless told `--allow-leakage`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from distill.data.images import sha256_file
from distill.data.items import Item
from distill.data.stories import StoryError, story_of, strip_label
from store.db import Store

TRAINING_SPLITS = ("train", "val")
HELD_OUT_SPLITS = ("dev", "test")


class LeakageError(ValueError):
    pass


def normalise(text: str) -> str:
    """Stories compare without case, punctuation, spacing or a leading label ("Cover story: ...")."""
    return " ".join(re.sub(r"[^\w\s]", " ", strip_label(text).lower()).split())


@dataclass
class Check:
    name: str
    checked: int = 0
    found: list[str] = field(default_factory=list)  # "training item -> held-out item" for each leak


@dataclass
class AuditReport:
    checks: list[Check]
    unchecked: list[str] = field(default_factory=list)  # held-out items whose story could not be read

    @property
    def leaks(self) -> int:
        return sum(len(c.found) for c in self.checks)

    def table(self) -> str:
        lines = ["| check | checked | leaks | examples |", "|---|---:|---:|---|"]
        for c in self.checks:
            lines.append(f"| {c.name} | {c.checked} | {len(c.found)} | {'; '.join(c.found[:3])} |")
        if self.unchecked:
            lines.append(
                f"\n{len(self.unchecked)} held-out item(s) with no readable story, not checked by text: "
                f"{', '.join(self.unchecked[:5])}"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "leaks": self.leaks,
            "checks": {
                c.name: {"checked": c.checked, "leaks": len(c.found), "examples": c.found[:10]} for c in self.checks
            },
            "unchecked": self.unchecked,
        }


class _Hashes:
    def __init__(self):
        self.by_path: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        if path not in self.by_path:
            self.by_path[path] = sha256_file(path)
        return self.by_path[path]


def _stories(item: Item) -> list[str]:
    """Every story text an item shows: image2text, its options; text2image, its question's story."""
    if item.task == "image2text":
        return [o.text for o in item.options]
    try:
        return [story_of(item)]
    except StoryError:
        return []


def audit_items(held_out: list[Item], training: list[Item], label: str = "training items") -> AuditReport:
    sha = _Hashes()
    covers: dict[str, str] = {}
    stories: dict[str, str] = {}
    unchecked = []
    for it in held_out:
        gold = it.gold_option
        own_covers = [it.images[0]] if it.task == "image2text" else ([gold.image] if gold else [])
        for path in own_covers:
            covers.setdefault(sha(path), it.key)
        if it.task == "text2image":
            try:
                stories.setdefault(normalise(story_of(it)), it.key)
            except StoryError:
                unchecked.append(it.key)
        elif gold:
            stories.setdefault(normalise(gold.text), it.key)
    held_keys = {it.key for it in held_out}
    keys, parents, images, texts = (
        Check(f"{label}: held-out item itself"),
        Check(f"{label}: parents"),
        Check(f"{label}: covers and distractor covers (sha256)"),
        Check(f"{label}: stories and distractor stories (text)"),
    )
    for it in training:
        keys.checked += 1
        if it.key in held_keys:
            keys.found.append(it.key)
        parents.checked += len(it.parents)
        parents.found += [f"{it.key} <- {p}" for p in it.parents if p in held_keys]
        for path in dict.fromkeys(it.images):
            images.checked += 1
            if sha(path) in covers:
                images.found.append(f"{it.key} -> {covers[sha(path)]}")
        for text in _stories(it):
            texts.checked += 1
            if normalise(text) in stories:
                texts.found.append(f"{it.key} -> {stories[normalise(text)]}")
    return AuditReport([keys, parents, images, texts], unchecked)


def audit_store(store: Store, extra: list[Item] | None = None, label: str = "training items") -> AuditReport:
    """The store's training and validation items (and `extra`, e.g. examples about to be exported) against its
    dev and test items."""
    held_out = [it for s in HELD_OUT_SPLITS for it in store.items(split=s)]
    training = [it for s in TRAINING_SPLITS for it in store.items(split=s)] + list(extra or [])
    return audit_items(held_out, training, label)


def require_clean(report: AuditReport, allow_leakage: bool, what: str) -> None:
    if report.leaks and not allow_leakage:
        raise LeakageError(
            f"{what} refused: {report.leaks} held-out item(s) reachable from training data "
            f"(pass --allow-leakage to go on anyway; it is recorded)\n{report.table()}"
        )
