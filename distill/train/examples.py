"""SFT examples and DPO pairs built from the store, in one neutral form both TRL and LLaMA-Factory take.

Every agent's output is a task the student learns, each with its own prompt:
- `answer`: the item -> its gold letter (what prediction scores);
- `reason`: the item with the chain-of-thought instruction -> an accepted rationale and its answer line;
- `describe`: one training cover with the describe instruction -> the describer's caption of it.

An example is `{"id", "item_key", "task", "kind": answer | reason | describe, "messages": prompt messages,
"completion": str, "images": [paths], "template", "difficulty"}`; a pair has `chosen` and `rejected` instead of
`completion`. Everything comes out in an order fixed by the store's content (items by key, traces by item, run,
sample and attempt, covers by hash), never by when the teacher finished them."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Literal

from distill.data.items import Item
from distill.data.student import DEFAULT_LAYOUT, Layout, completion, describe_messages, prompt_messages
from distill.data.templates import pick_template, system_for, template_count
from distill.errors import UserError

KINDS = ("answer", "reason", "describe")


@dataclass
class ExampleOptions:
    """What the student trains on, declared once: `distill sft`/`dpo` recipes and flags, and `distill export`'s
    flags, are these fields."""

    answer_weight: float = field(
        default=1.0, metadata={"help": "Answer task (the item -> its gold letter): loss weight; 0 leaves it out."}
    )
    reason_weight: float = field(
        default=1.0,
        metadata={"help": "Reason task (the item -> an accepted teacher rationale): loss weight; 0 leaves it out."},
    )
    describe_weight: float = field(
        default=0.0,
        metadata={
            "help": "Describe task (a training cover -> the describer's caption): loss weight; 0 (the default, "
            "the ablation's best: bench/README.md) leaves it out."
        },
    )
    task_loss: Literal["task", "token"] = field(
        default="token",
        metadata={
            "help": "token (the default, the ablation's best): one mean over every completion token of the batch, "
            "so rationales carry most of the signal, and a task's weight only keeps it (above 0) or leaves it out; "
            "task: the weighted sum of each task's mean over its own tokens (a one-token letter weighs as much as "
            "a whole rationale)."
        },
    )
    answer_repeats: int = field(
        default=1,
        metadata={
            "help": "Answer task: how many examples of each item's letter (each with its own template), so that "
            "beside the reason and describe tasks' many examples the letters keep a share of the steps; 1: one."
        },
    )
    answer_first: bool = field(
        default=False,
        metadata={"help": "Answer-task completions give the letter first, then an accepted rationale behind it."},
    )
    captions: bool = field(
        default=False,
        metadata={
            "help": "Describe, then answer: each item's prompt carries the describer's caption of every cover after "
            "the question (items with an uncaptioned cover are left out); validation and `distill predict` have "
            "the student caption the covers first, so SFT needs the describe task too. Recorded with the model. "
            "An export's prompts carry the teacher's captions: predict a model trained from it with --captions."
        },
    )
    include_hinted: bool = field(default=False, metadata={"help": "Train on rationalized (hinted) traces too."})
    templates: bool = field(default=True, metadata={"help": "Vary the system prompt over the template set."})
    curriculum: Literal["none", "easy_to_hard", "staged"] = field(
        default="none", metadata={"help": "Order of the examples: none (shuffled), easy_to_hard, staged."}
    )
    pairs_per_item: int = field(default=2, metadata={"help": "DPO: most preference pairs per item."})
    teacher_run: str | None = field(default=None, metadata={"help": "Only traces of this graph run (default all)."})
    layout: Layout = field(
        default=DEFAULT_LAYOUT,
        metadata={
            "help": "Prompt layout: llamafactory (the task's text opens the user turn, as LLaMA-Factory builds it from "
            "the task's registry) or system (the task's text as the system message). Recorded with the model; "
            "predict uses it."
        },
    )

    def __post_init__(self):
        if self.answer_repeats < 1:
            raise UserError(f"answer_repeats: {self.answer_repeats} is not a whole number of at least 1")

    def weights(self) -> dict[str, float]:
        return {"answer": self.answer_weight, "reason": self.reason_weight, "describe": self.describe_weight}

    @classmethod
    def of(cls, settings) -> ExampleOptions:
        """The example options inside a larger settings object (DistillArguments)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


@dataclass
class Built:
    examples: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def counts(self) -> dict[str, int]:
        return dict(Counter(e["kind"] for e in self.examples))


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


def _example(
    item: Item,
    key: str,
    k: int,
    mode: str,
    opts: ExampleOptions,
    diff: float,
    captions: dict[str, str] | None = None,
    **fields_,
) -> dict:
    """One item's example; the prompt uses a template picked per (item, k)."""
    t = pick_template(item.id, k, template_count(item.task)) if opts.templates else 0
    return {
        "id": f"{item.key}:{key}",
        "item_key": item.key,
        "task": item.task,
        "messages": prompt_messages(item, mode, system=system_for(item, t), layout=opts.layout, captions=captions),
        "images": item.images,
        "template": t,
        "difficulty": diff,
        **fields_,
    }


def _traces_by_item(store, run: str | None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for t in store.training_traces(run_id=run):
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


def _accepted(traces: list[dict], opts: ExampleOptions, skipped: Counter) -> list[dict]:
    out = []
    for t in traces:
        if t["verdict"] != "accepted":
            continue
        if t["hinted"] and not opts.include_hinted:
            skipped["hinted"] += 1
            continue
        out.append(t)
    return out


class Captions:
    """The describer's caption of each cover, by the cover's path (through its hash in the store)."""

    def __init__(self, store):
        self.texts, self.sha_of = store.descriptions(), store.image_hashes()

    def of(self, item: Item) -> dict[str, str] | None:
        """Every cover of `item` -> its caption, or None when a cover has none."""
        shas = {path: self.sha_of.get(path) for path in item.cover_images()}
        if not all(sha in self.texts for sha in shas.values()):
            return None
        return {path: self.texts[sha] for path, sha in shas.items()}


def describe_examples(store, items: list[Item], skipped: Counter) -> list[dict]:
    """One example per distinct cover of `items` that the describer captioned, by cover hash."""
    captions = Captions(store)
    texts, sha_of = captions.texts, captions.sha_of
    first_item: dict[str, tuple[str, Item]] = {}
    missing = set()
    for it in items:
        for path in it.images:
            sha = sha_of.get(path)
            if sha in texts:
                first_item.setdefault(sha, (path, it))
            else:
                missing.add(sha or path)
    if missing:
        skipped["cover_not_described"] = len(missing)
    return [
        {
            "id": f"cover:{sha[:16]}",
            "item_key": it.key,  # the training item the cover came with
            "task": it.task,
            "kind": "describe",
            "messages": describe_messages(path),
            "images": [path],
            "template": 0,
            "difficulty": 0.0,
            "image_sha256": sha,
            "completion": texts[sha].strip(),
        }
        for sha, (path, it) in sorted(first_item.items())
    ]


def sft_examples(store, items: list[Item], opts: ExampleOptions, seed: int = 0) -> Built:
    """Every task whose weight is above zero, over the training `items` (their own traces and covers only)."""
    built = Built()
    items = sorted(items, key=lambda it: it.key)
    traces = _traces_by_item(store, opts.teacher_run)
    weights = opts.weights()
    captioned = Captions(store) if opts.captions else None
    examples = []
    for item in items:
        caps = captioned.of(item) if captioned else None
        if captioned and caps is None:
            built.skipped["item_cover_not_described"] += 1
            continue
        ts = traces.get(item.key, [])
        accepted = _accepted(ts, opts, built.skipped) if weights["reason"] > 0 or opts.answer_first else []
        diff = difficulty(ts)
        if weights["answer"] > 0 and item.gold:
            rationale = accepted[0]["rationale"] if opts.answer_first and accepted else None
            examples += [
                _example(
                    item,
                    f"a{r}" if r else "a",
                    -1 - r,
                    "direct",
                    opts,
                    diff,
                    caps,
                    completion=completion(item.gold, rationale, answer_first=True),
                    kind="answer",
                )  # fmt: skip
                for r in range(opts.answer_repeats)
            ]
        if weights["reason"] > 0:
            for k, t in enumerate(accepted):
                examples.append(
                    _example(
                        item,
                        f"r{k}",
                        k,
                        "cot",
                        opts,
                        diff,
                        caps,
                        completion=completion(item.gold, t["rationale"]),
                        kind="reason",
                    )  # fmt: skip
                )
    if weights["describe"] > 0:
        examples += describe_examples(store, items, built.skipped)
    built.examples = order(examples, opts.curriculum, seed)
    return built


def dpo_pairs(store, items: list[Item], opts: ExampleOptions, seed: int = 0) -> Built:
    """chosen = an accepted rationale, rejected = one the critic rejected for a wrong answer; same prompt."""
    built = Built()
    traces = _traces_by_item(store, opts.teacher_run)
    captioned = Captions(store) if opts.captions else None
    pairs = []
    for item in sorted(items, key=lambda it: it.key):
        caps = captioned.of(item) if captioned else None
        if captioned and caps is None:
            built.skipped["item_cover_not_described"] += 1
            continue
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
                    caps,
                    chosen=completion(item.gold, g["rationale"]),
                    rejected=completion(b["answer"], b["rationale"]),
                    kind="reason",
                )
            )
    built.examples = order(pairs, opts.curriculum, seed)
    return built
