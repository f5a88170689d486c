"""Loading data files into the store, with a validation split carved from train.

Each item keeps the split its source declares; ids are unique per task, and an id may not stand in two splits
of the same task (a test item seen in training would be a leak)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import track

from distill.data.filenames import split_of
from distill.data.images import DEFAULT_MAX_PIXELS, sha256_file
from distill.data.items import Item
from distill.data.loaders import DataError, RecordError, load_any
from distill.data.splits import carve_validation
from store.db import Store

log = logging.getLogger(__name__)
SKIP_HINT = "pass --skip-invalid (recipe: data.skip_invalid: true) to load the valid rest"


class DataConfig(BaseModel):
    """The recipe's `data:` section: files per split (task JSON, a LLaMA-Factory dataset_info.json, MAC CSVs)."""

    model_config = ConfigDict(extra="forbid")

    train: list[str] = Field(default_factory=list)
    dev: list[str] = Field(default_factory=list)
    test: list[str] = Field(default_factory=list)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0
    skip_invalid: bool = False
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=3136)


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
    out = Ingested()
    items: list[Item] = []
    for listed, paths in (("train", cfg.train), ("dev", cfg.dev), ("test", cfg.test)):
        for path in paths:
            named = split_of(path)
            if (
                Path(path).name != "dataset_info.json"
                and named
                and named != listed
                and not (listed == "train" and named == "val")
            ):
                raise DataError(
                    [RecordError(str(path), -1, None, "file", f"listed under data.{listed} but its name says {named}")],
                    hint="move it to the right list or rename it",
                )
            loaded = load_any(path, split=listed, check_images=check_images, skip_invalid=True)
            items.extend(loaded.items)
            out.errors.extend(loaded.errors)
    if out.errors and not cfg.skip_invalid:
        raise DataError(out.errors, SKIP_HINT)
    check_unique(items)
    for split in ("train", "dev", "test"):
        out.splits[split] = [it for it in items if it.split in ((split, "val") if split == "train" else (split,))]
    if out.splits["train"]:
        out.splits["train"], out.splits["val"] = carve_validation(
            out.splits["train"], cfg.validation_fraction, cfg.seed
        )
    return out


def check_unique(items: list[Item]) -> None:
    """Ids are unique per task across every file and split; a clash names both records and their splits."""
    seen: dict[str, Item] = {}
    errors = []
    for it in items:
        first = seen.setdefault(it.key, it)
        if first is not it:
            errors.append(
                RecordError(
                    it.source or "?",
                    -1,
                    it.id,
                    "id",
                    f"{it.task} id also in {first.source} ({first.split}); this one is {it.split}",
                )
            )
    if errors:
        raise DataError(errors, hint="ids must be unique per task")


def image_rows(items: list[Item]) -> list[dict]:
    rows, seen = [], set()
    paths = sorted({p for it in items for p in it.images})
    for path in track(paths, description="hashing images", transient=True, disable=len(paths) < 200):
        sha = sha256_file(path)
        if sha in seen:
            continue
        seen.add(sha)
        with Image.open(path) as im:
            w, h = im.size
        rows.append({"sha256": sha, "path": str(path), "width": w, "height": h, "bytes": Path(path).stat().st_size})
    return rows


def ingest(store: Store, cfg: DataConfig) -> Ingested:
    data = load_data(cfg)
    all_items = [it for items in data.splits.values() for it in items]
    store.add_items(all_items)
    store.add_images(image_rows(all_items))
    for split, per_task in data.counts().items():
        log.info("%s: %s", split, ", ".join(f"{t} {n}" for t, n in per_task.items()))
    return data
