"""A seeded, stratified validation split carved from train: dev and test stay held out, so the scores taken
during training come from items of their own."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from distill.data.items import Item


def _rank(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def carve_validation(
    items: list[Item], fraction: float = 0.1, seed: int = 0, min_per_task: int = 1
) -> tuple[list[Item], list[Item]]:
    """Split train items into (train, validation), stratified by task and gold letter.

    Each (task, gold letter) stratum gives round(fraction * its size) items to validation: those first in the
    order of sha256(seed:id), topped up so each task has at least `min_per_task` (and keeps one for training).
    A `fraction` of 0 carves nothing: no validation split, no top-up. The same items and seed always give the
    same split, whatever their order; adding items can move earlier ones, as a stratum's size and ranking change
    with them.
    """
    if fraction <= 0:
        return [it.model_copy(update={"split": "train"}) for it in items], []
    groups: dict[tuple, list[Item]] = defaultdict(list)
    for it in items:
        groups[(it.task, it.gold)].append(it)
    per_task_total = defaultdict(int)
    for (task, _), group in groups.items():
        per_task_total[task] += len(group)
    val_ids: set[str] = set()
    for _key, group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        k = round(len(group) * fraction)
        val_ids.update(it.key for it in sorted(group, key=lambda it: _rank(seed, it.id))[:k])
    for task, total in per_task_total.items():  # small sets: make sure each task gets its minimum
        have = [it for it in items if it.task == task and it.key in val_ids]
        rest = sorted(
            (it for it in items if it.task == task and it.key not in val_ids), key=lambda it: _rank(seed, it.id)
        )
        need = min(min_per_task, total - 1) - len(have)
        val_ids.update(it.key for it in rest[: max(0, need)])
    train = [it.model_copy(update={"split": "train"}) for it in items if it.key not in val_ids]
    val = [it.model_copy(update={"split": "val"}) for it in items if it.key in val_ids]
    return train, val
