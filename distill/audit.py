"""`distill audit`: can anything that trains teach the answer to a held-out (dev or test) item?

Held out is each dev/test item's own content: its key, its cover (image2text: the image; text2image: the gold
image when known) by sha256 of the bytes, and its story (text2image: the story in the question; image2text: the
gold story when known) by normalised text. What trains is every train and validation item, augmented items with
their distractors and parents, and exported examples. Each held-out item touched is counted once, under the worst
of three kinds:

- (a) the held-out item itself in training (its key, or the parent of an augmented item);
- (b) its cover or story in a training item's gold cover-story pair (the training item's question or its right
  answer): what teaches the student a held-out answer;
- (c) its cover or story only as a training item's distractor (a wrong option). In MAC, whose distractors are
  drawn from the whole pool, held-out covers and stories recur this way; the student is never told they belong
  together.

(a) and (b) are refused (by `distill audit`, and before augment, export, sft and dpo, unless told
`--allow-leakage`); (c) is reported and counted, and refused only under `strict` (`distill audit --strict`).

Items that show the same story or the same cover (by sha256) under two letters are counted too: not a leak, but
an item whose options repeat teaches nothing (augmentation leaves them out)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from distill.data.images import sha256_file
from distill.data.items import Item
from distill.data.stories import StoryError, story_of, strip_label
from distill.errors import UserError
from store.db import Store

log = logging.getLogger(__name__)
TRAINING_SPLITS = ("train", "val")
HELD_OUT_SPLITS = ("dev", "test")
KINDS = {
    "item": "(a) held-out item itself in training",
    "pair": "(b) its cover or story in a training item's gold pair",
    "distractor": "(c) its cover or story only as a distractor",
}
REFUSED = ("item", "pair")  # what lets the student learn a held-out answer; `strict` refuses "distractor" too


class LeakageError(UserError, ValueError):
    pass


def normalise(text: str) -> str:
    """Stories compare without case, punctuation, spacing or a leading label ("Cover story: ...")."""
    return " ".join(re.sub(r"[^\w\s]", " ", strip_label(text).lower()).split())


@dataclass
class AuditReport:
    held_out: int  # held-out items checked against
    checked: dict[str, int]  # what of the training data was checked: items, parents, covers, stories
    # kind -> {held-out item key: ["training item (how)", ...]}; each held-out item under its worst kind only
    found: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    unchecked: list[str] = field(default_factory=list)  # held-out items whose story could not be read
    repeated: dict[str, str] = field(default_factory=dict)  # item key -> its repeated options ("A=C"), every split
    label: str = "training items"
    traces: int | None = None  # the teacher's traces in the store (None: not a store's audit)

    def count(self, kind: str) -> int:
        """Distinct held-out items of this kind."""
        return len(self.found[kind])

    @property
    def leaks(self) -> int:
        """Held-out items whose answer the training data holds ((a) and (b)): what is refused by default."""
        return sum(self.count(k) for k in REFUSED)

    @property
    def distractor_only(self) -> int:
        return self.count("distractor")

    def refused(self, strict: bool = False) -> int:
        return self.leaks + (self.distractor_only if strict else 0)

    def examples(self, kind: str, n: int = 3) -> list[str]:
        return [f"{where[0]} -> {key}" for key, where in list(self.found[kind].items())[:n]]

    def summary(self, strict: bool = False) -> str:
        """One line: the held-out items touched, per kind, with an example of each."""
        parts = []
        for kind in KINDS:
            if self.count(kind):
                refused = kind in REFUSED or strict
                parts.append(
                    f"{KINDS[kind]}: {self.count(kind)}{'' if refused else ' (not refused; --strict refuses it)'}, "
                    f"e.g. {self.examples(kind, 1)[0]}"
                )
        total = self.refused(strict)
        head = (
            f"{total} held-out item(s) reachable from {self.label}" if total else f"no held-out answer in {self.label}"
        )
        return f"{head} ({'; '.join(parts) or 'nothing found'})"

    def table(self) -> str:
        lines = [
            "| kind | held-out items | refused | examples (training item -> held-out item) |",
            "|---|---:|---|---|",
        ]
        for kind, name in KINDS.items():
            refused = "yes" if kind in REFUSED else "with --strict"
            lines.append(f"| {name} | {self.count(kind)} | {refused} | {'; '.join(self.examples(kind))} |")
        c = self.checked
        lines.append(
            f"\nchecked {c['items']} {self.label} ({c['parents']} parents, {c['covers']} covers by sha256, "
            f"{c['stories']} stories by text) against {self.held_out} held-out item(s)"
        )
        if self.repeated:
            shown = ", ".join(f"{key} ({letters})" for key, letters in list(self.repeated.items())[:5])
            lines.append(f"{len(self.repeated)} item(s) show the same story or cover under two letters: {shown}")
        if self.unchecked:
            lines.append(
                f"{len(self.unchecked)} held-out item(s) with no readable story, not checked by text: "
                f"{', '.join(self.unchecked[:5])}"
            )
        if self.traces == 0:  # clean of leakage, but nothing to train on beyond the letters
            lines.append("the store holds no teacher traces: the graph has not run here, or every item it ran failed")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "leaks": self.leaks,
            "distractor_only": self.distractor_only,
            "held_out": self.held_out,
            "held_out_items": {k: self.count(k) for k in KINDS},
            "examples": {k: self.examples(k, 10) for k in KINDS},
            "checked": dict(self.checked),
            "unchecked": self.unchecked,
            "repeated_options": len(self.repeated),
            "repeated_examples": dict(list(self.repeated.items())[:10]),
        }


class _Hashes:
    def __init__(self):
        self.by_path: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        if path not in self.by_path:
            self.by_path[path] = sha256_file(path)
        return self.by_path[path]


def _story(item: Item) -> str | None:
    try:
        return story_of(item)
    except StoryError:
        return None


def _content(item: Item) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """What a training item shows, split by role: (its gold pair, its distractors), each as (kind, value) with kind
    "cover" (a path) or "story" (a text). image2text: the cover and the right story, against the other stories;
    text2image: the story and the right cover, against the other covers. Without a known gold every option counts
    as part of the pair (nothing is known to be only a distractor)."""
    gold = item.gold
    if item.task == "image2text":
        pair = [("cover", path) for path in item.images]
        pair += [("story", o.text) for o in item.options if gold is None or o.letter == gold]
        distractors = [("story", o.text) for o in item.options if gold is not None and o.letter != gold]
    else:
        story = _story(item)
        pair = [("story", story)] if story else []
        right = [o.image for o in item.options if o.image and (gold is None or o.letter == gold)]
        pair += [("cover", path) for path in right]
        distractors = [("cover", path) for path in dict.fromkeys(item.images) if path not in right]
    return pair, distractors


def audit_items(held_out: list[Item], training: list[Item], label: str = "training items") -> AuditReport:
    sha = _Hashes()
    covers: dict[str, list[str]] = {}  # sha256 -> held-out items whose own cover it is
    stories: dict[str, list[str]] = {}  # normalised story -> held-out items whose own story it is
    unchecked = []
    for it in held_out:
        gold = it.gold_option
        own_covers = [it.images[0]] if it.task == "image2text" else ([gold.image] if gold and gold.image else [])
        for path in own_covers:
            covers.setdefault(sha(path), []).append(it.key)
        if it.task == "text2image":
            story = _story(it)
            if story is None:
                unchecked.append(it.key)
            else:
                stories.setdefault(normalise(story), []).append(it.key)
        elif gold:
            stories.setdefault(normalise(gold.text), []).append(it.key)
    held_keys = {it.key for it in held_out}
    hits: dict[str, dict[str, list[str]]] = {k: {} for k in KINDS}
    checked = {"items": 0, "parents": 0, "covers": 0, "stories": 0}

    def hit(kind: str, held: str, where: str) -> None:
        hits[kind].setdefault(held, []).append(where)

    for it in training:
        checked["items"] += 1
        if it.key in held_keys:
            hit("item", it.key, f"{it.key} ({it.split or 'training'})")
        checked["parents"] += len(it.parents)
        for p in it.parents:
            if p in held_keys:
                hit("item", p, f"{it.key} (augmented from it)")
        pair, distractors = _content(it)
        for kind, content in (("pair", pair), ("distractor", distractors)):
            for what, value in content:
                checked["covers" if what == "cover" else "stories"] += 1
                owners = covers.get(sha(value), []) if what == "cover" else stories.get(normalise(value), [])
                how = f"the {what} of its gold pair" if kind == "pair" else f"a distractor {what}"
                for held in owners:
                    hit(kind, held, f"{it.key} ({how})")
    report = AuditReport(
        len(held_out), checked, unchecked=unchecked, label=label, repeated=repeats(held_out + training, sha)
    )
    counted: set[str] = set()
    for kind in KINDS:  # each held-out item under its worst kind
        for held, where in hits[kind].items():
            if held not in counted:
                report.found[kind][held] = where
                counted.add(held)
    return report


def repeats(items: list[Item], identity) -> dict[str, str]:
    """Item key -> its options that show the same story or cover (`identity` of a cover's path), e.g. "A=C"."""
    out = {}
    for it in items:
        groups = it.repeated_options(identity)
        if groups:
            out[it.key] = ", ".join("=".join(g) for g in groups)
    return out


def audit_store(store: Store, extra: list[Item] | None = None, label: str = "training items") -> AuditReport:
    """The store's training and validation items (and `extra`, e.g. examples about to be exported) against its
    dev and test items."""
    held_out = [it for s in HELD_OUT_SPLITS for it in store.items(split=s)]
    training = [it for s in TRAINING_SPLITS for it in store.items(split=s)] + list(extra or [])
    report = audit_items(held_out, training, label)
    report.traces = len(store.training_traces())
    return report


def require_clean(report: AuditReport, allow_leakage: bool, what: str, strict: bool = False) -> None:
    """Refuse (one line) when the training data can teach a held-out answer ((a), (b)); with `strict`, also when a
    held-out cover or story is seen as a distractor ((c)), which is otherwise only reported."""
    if report.refused(strict) and not allow_leakage:
        raise LeakageError(
            f"{what} refused: {report.summary(strict)}; `distill audit` lists them (pass --allow-leakage to go on "
            "anyway; it is recorded)"
        )
    if report.refused(strict):
        log.warning("%s goes on with leaked data (--allow-leakage): %s", what, report.summary(strict))
    elif report.distractor_only:
        log.info("%s: %s", what, report.summary(strict))
