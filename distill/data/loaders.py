"""Loading MAC data from any of its sources: a LLaMA-Factory registry, a MAC CSV, or the task's JSON files."""

from __future__ import annotations

from pathlib import Path

from distill.data.items import Task
from distill.data.mac_csv import load_csv
from distill.data.records import Loaded, load_json
from distill.data.registry import load_registry


def load_any(path: str | Path, task: Task | None = None, *, split: str | None = None, **kw) -> Loaded:
    """Dispatch on the file: a LLaMA-Factory registry (`dataset_info.json`), a MAC CSV, or a task JSON file.
    `split` applies to sources whose names do not declare one."""
    path = Path(path)
    if path.name == "dataset_info.json":
        return load_registry(path, split=split, **kw)
    if path.suffix.lower() == ".csv":
        return load_csv(path, task, split=split, **kw)
    return load_json(path, task, split=split, **kw)
