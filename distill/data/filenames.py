"""What a file or dataset name says about its task and split: one rule, used everywhere.

Names are split into words at every non-alphanumeric character ("image2text_train.json" -> image2text, train,
json), and a word must match whole: "latest_train.json" is train, "contest.json" says nothing."""

from __future__ import annotations

import re
from pathlib import Path

from distill.data.items import TASKS, Task

SPLIT_WORDS = {"train": "train", "dev": "dev", "test": "test", "val": "val", "validation": "val"}


def words(name: str | Path) -> list[str]:
    name = Path(name).name if isinstance(name, Path) or "/" in str(name) else str(name)
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def task_of(name: str | Path) -> Task | None:
    found = {w for w in words(name) if w in TASKS}
    return found.pop() if len(found) == 1 else None  # type: ignore[return-value]


def split_of(name: str | Path) -> str | None:
    found = {SPLIT_WORDS[w] for w in words(name) if w in SPLIT_WORDS}
    return found.pop() if len(found) == 1 else None
