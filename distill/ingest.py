"""Loading data files into the store, with a validation split carved from train.

Each item keeps the split its source declares; ids are unique per task, and an id may not stand in two splits
of the same task (a test item seen in training would be a leak)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.progress import track

from distill.data.filenames import split_of
from distill.data.images import inspect_image
from distill.data.items import Item
from distill.data.loaders import load_any
from distill.data.records import DataError, RecordError
from distill.data.splits import carve_validation
from store.db import Store

log = logging.getLogger(__name__)
SKIP_HINT = "pass --skip-invalid (recipe: data.skip_invalid: true) to load the valid rest"


class DataConfig(BaseModel):
    """The recipe's `data:` section: files per split (task JSON, a LLaMA-Factory dataset_info.json, MAC CSVs)."""

    model_config = ConfigDict(extra="forbid")

    train: list[str] = Field(default_factory=list)
    val: list[str] = Field(default_factory=list)  # labelled held-out items that score training: given for a task,
    # they replace the split carved from its train items
    dev: list[str] = Field(default_factory=list)
    test: list[str] = Field(default_factory=list)
    validation_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of train carved out for validation (when no val files are given); 0 carves none.",
    )
    seed: int = Field(0, description="Seed of the validation split.")
    skip_invalid: bool = Field(
        False, description="Report bad records, unreadable files and ids given twice, and load the valid rest."
    )


@dataclass
class Ingested:
    splits: dict[str, list[Item]] = field(default_factory=dict)
    errors: list[RecordError] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for split, items in self.splits.items():
            for it in items:
                out.setdefault(split, {}).setdefault(it.task, 0)
                out[split][it.task] += 1
        return out


def load_data(cfg: DataConfig, check_images: bool = True) -> Ingested:
    """Every file read and checked. A bad record, a file that cannot be read and an id given twice (across files)
    are errors, raised together; with `skip_invalid` they are returned in `errors` and the valid rest loads. Where
    one id stands in a held-out split and in one that trains, the held-out copy is the one kept."""
    out = Ingested()
    items: list[Item] = []
    for listed, paths in (("train", cfg.train), ("val", cfg.val), ("dev", cfg.dev), ("test", cfg.test)):
        for path in paths:
            named = split_of(path)
            if Path(path).name != "dataset_info.json" and named and named != listed:
                raise DataError(
                    [RecordError(str(path), -1, None, "file", f"listed under data.{listed} but its name says {named}")],
                    hint="move it to the right list or rename it",
                )
            try:
                loaded = load_any(path, split=listed, check_images=check_images, skip_invalid=True)
            except DataError as exc:  # the file as a whole: missing, not JSON, not a list of records
                out.errors.extend(exc.errors)
                continue
            items.extend(loaded.items)
            out.errors.extend(loaded.errors)
    items, clashes = unique(items)
    out.errors.extend(clashes)
    if out.errors and not cfg.skip_invalid:
        raise DataError(out.errors, SKIP_HINT)
    if not items and out.errors:
        raise DataError(out.errors, "no valid record left to load")
    for split in ("train", "val", "dev", "test"):
        out.splits[split] = [it for it in items if it.split == split]
    given = {it.task for it in out.splits["val"]}
    carve = [it for it in out.splits["train"] if it.task not in given]
    if carve:
        kept, carved = carve_validation(carve, cfg.validation_fraction, cfg.seed)
        out.splits["train"] = [it for it in out.splits["train"] if it.task in given] + kept
        out.splits["val"] += carved
    return out


def unique(items: list[Item]) -> tuple[list[Item], list[RecordError]]:
    """Ids are unique per task across every file and split: the items with each key once, and an error for every
    other copy, naming both records and their splits. The first copy stays, but a held-out (dev, test) copy wins
    over one that trains: an id in both must never train."""
    kept: dict[str, Item] = {}
    errors = []
    for it in items:
        first = kept.setdefault(it.key, it)
        if first is it:
            continue
        if _held_out(it) and not _held_out(first):
            kept[it.key], first, it = it, it, first
        errors.append(
            RecordError(
                it.source or "?",
                -1,
                it.id,
                "id",
                f"{it.task} id also in {first.source} ({first.split}); this one is {it.split}",
            )
        )
    return list(kept.values()), errors


def _held_out(item: Item) -> bool:
    return item.split in ("dev", "test")


def check_unique(items: list[Item]) -> None:
    """Ids are unique per task across every file and split; a clash names both records and their splits."""
    _, errors = unique(items)
    if errors:
        raise DataError(errors, hint="ids must be unique per task")


def image_rows(items: list[Item]) -> list[dict]:
    """One row per distinct image (by sha256); each file is read once however many items name it (and not again
    where loading already checked it)."""
    rows, seen = [], set()
    paths = sorted({p for it in items for p in it.images})
    for path in track(paths, description="hashing images", transient=True, disable=len(paths) < 200):
        image = inspect_image(path)
        if image.problem:
            raise DataError([RecordError(str(path), -1, None, "images", image.problem)])
        if image.sha256 in seen:
            continue
        seen.add(image.sha256)
        rows.append(
            {
                "sha256": image.sha256,
                "path": str(path),
                "width": image.width,
                "height": image.height,
                "bytes": image.n_bytes,
            }
        )
    return rows


def store_data(store: Store, data: Ingested) -> None:
    """Loaded items and their images into the store."""
    all_items = [it for items in data.splits.values() for it in items]
    store.add_items(all_items, image_rows(all_items))  # one transaction: items and their images, or neither


def report_data(data: Ingested) -> None:
    """What was skipped (each record once) and what loaded, per split, in the log."""
    for e in data.errors:
        log.warning("skipped %s", e)
    for split, per_task in data.counts().items():
        log.info("%s: %s", split, ", ".join(f"{t} {n}" for t, n in per_task.items()))


def ingest(store: Store, cfg: DataConfig) -> Ingested:
    data = load_data(cfg)
    store_data(store, data)
    report_data(data)
    return data
