"""Loading the configured data files into the store, with the validation split carved from train."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from rich.progress import track

from distill.config import DataConfig
from distill.images import sha256_file
from distill.items import Item
from distill.loaders import DataError, RecordError, load_any
from distill.splits import carve_validation

log = logging.getLogger(__name__)


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
    for split in ("train", "dev", "test"):
        items: list[Item] = []
        for path in getattr(cfg, split):
            loaded = load_any(path, check_images=check_images, skip_invalid=True)
            items.extend(loaded.items)
            out.errors.extend(loaded.errors)
        for it in items:
            it.split = split
        out.splits[split] = items
    if out.errors and not cfg.skip_invalid:
        raise DataError(out.errors)
    seen: dict[str, str] = {}
    for split, items in out.splits.items():  # one id space across splits: test ids must not hit train
        for it in items:
            if it.id in seen:
                raise DataError([RecordError(it.source or "?", -1, it.id, "id",
                                             f"id appears in both {seen[it.id]} and {split}")], hint="fix the ids")
            seen[it.id] = split
    if out.splits.get("train"):
        out.splits["train"], out.splits["val"] = carve_validation(out.splits["train"], cfg.validation_fraction,
                                                                  cfg.seed)
    return out


def image_rows(items: list[Item]) -> list[dict]:
    rows, seen = [], set()
    for path in track(sorted({p for it in items for p in it.images}), description="hashing images",
                      transient=True, disable=len(items) < 50):
        sha = sha256_file(path)
        if sha in seen:
            continue
        seen.add(sha)
        with Image.open(path) as im:
            w, h = im.size
        rows.append({"sha256": sha, "path": str(path), "width": w, "height": h, "bytes": Path(path).stat().st_size})
    return rows


def ingest(store, cfg: DataConfig) -> Ingested:
    data = load_data(cfg)
    all_items = [it for items in data.splits.values() for it in items]
    store.add_items(all_items)
    store.add_images(image_rows(all_items))
    for split, per_task in data.counts().items():
        log.info("%s: %s", split, ", ".join(f"{t} {n}" for t, n in per_task.items()))
    return data
