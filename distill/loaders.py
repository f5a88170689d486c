"""Loading MAC data: the task's JSON files, a LLaMA-Factory registry, and MAC's own CSVs.

Every record is validated; a bad record yields a `RecordError` naming file, record and field.
With `skip_invalid` the valid rest loads and the errors are returned, otherwise they are raised together.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from distill.items import IMAGE_TOKEN, LETTERS, TASKS, Item, Option, Task, content_id
from distill.options import OptionParseError, image_indices, parse_options

log = logging.getLogger(__name__)

DEFAULT_SYSTEM = {
    "image2text": "# Requirement\n You are an excellent scientific image reader. Choose the cover story that "
                  "matches the journal cover image. Answer with the letter of the option.",
    "text2image": "# Requirement\n You are an excellent scientific image reader. Choose the journal cover image "
                  "that matches the cover story. Answer with the letter of the option.",
}


@dataclass
class RecordError:
    file: str
    index: int
    id: str | None
    field: str
    message: str

    def __str__(self) -> str:
        rid = f" id={self.id}" if self.id else ""
        return f"{self.file} record #{self.index}{rid} [{self.field}]: {self.message}"


class DataError(ValueError):
    def __init__(self, errors: list[RecordError], hint: str = "pass --skip-invalid to load the valid rest"):
        self.errors = errors
        lines = [str(e) for e in errors[:50]]
        more = f"\n... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(f"{len(errors)} invalid record(s) ({hint}):\n  " + "\n  ".join(lines) + more)


@dataclass
class Loaded:
    items: list[Item] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)

    def extend(self, other: "Loaded") -> None:
        self.items.extend(other.items)
        self.errors.extend(other.errors)


class _Bad(Exception):
    def __init__(self, field_name: str, message: str):
        self.field = field_name
        self.message = message


def infer_task(path: Path, n_images: int) -> Task:
    for t in TASKS:
        if t in path.name:
            return t
    return "image2text" if n_images == 1 else "text2image"


def _resolve(image: str, roots: list[Path]) -> Path:
    p = Path(image).expanduser()
    if p.is_absolute():
        return p
    for root in roots:
        if (root / p).exists():
            return (root / p).resolve()
    return (roots[0] / p).resolve()


def check_image(path: Path) -> None:
    if not path.exists():
        raise _Bad("images", f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:  # verify() leaves the file unusable; load() catches truncation
            im.load()
    except Exception as exc:  # PIL raises many types for broken files
        raise _Bad("images", f"image does not decode: {path} ({type(exc).__name__}: {exc})") from None


def build_item(rec: dict, *, task: Task, index: int, source: Path, roots: list[Path],
               check_images: bool = True, columns: dict | None = None) -> Item:
    """One raw record (task JSON layout, columns renamed per a registry) into a validated Item."""
    cols = {"prompt": "system", "query": "input", "response": "output", "images": "images"} | (columns or {})
    if not isinstance(rec, dict):
        raise _Bad("record", f"expected an object, got {type(rec).__name__}")
    system = rec.get(cols["prompt"]) or ""
    text = rec.get(cols["query"])
    if not isinstance(text, str) or not text.strip():
        raise _Bad(cols["query"], "missing or empty question text")
    images = rec.get(cols["images"]) or []
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise _Bad(cols["images"], "images must be a list of paths")
    n_placeholders = text.count(IMAGE_TOKEN)
    if n_placeholders != len(images):
        raise _Bad(cols["images"], f"{n_placeholders} {IMAGE_TOKEN} placeholder(s) but {len(images)} image(s)")
    resolved = [_resolve(i, roots) for i in images]
    if check_images:
        for p in resolved:
            check_image(p)
    options = _options(text, task, [str(p) for p in resolved])
    gold = rec.get(cols["response"])
    gold = gold.strip().strip(".").upper() if isinstance(gold, str) and gold.strip() else None
    letters = [o.letter for o in options]
    if gold is not None and gold not in letters:
        raise _Bad(cols["response"], f"gold {rec.get(cols['response'])!r} is not one of the options {letters}")
    rid = rec.get("id")
    rid = str(rid) if rid not in (None, "") else content_id(task, system, text, images)
    return Item(id=rid, task=task, system=system, input=text, options=options, images=[str(p) for p in resolved],
                gold=gold, journal=rec.get("journal"), source=f"{source}#{index}",
                meta={k: v for k, v in rec.items() if k not in set(cols.values()) | {"id", "journal"}})


def _options(text: str, task: Task, images: list[str]) -> list[Option]:
    try:
        parsed = parse_options(text)
    except OptionParseError as exc:
        if task == "text2image" and len(images) >= 2:
            # Bare placeholders with no labels: the images are options A, B, C, ... in order.
            return [Option(letter=LETTERS[i], text=IMAGE_TOKEN, image=p) for i, p in enumerate(images)]
        raise _Bad("input", f"cannot parse the options: {exc}") from None
    if task == "image2text":
        if len(images) != 1:
            raise _Bad("images", f"image2text needs exactly one cover image, got {len(images)}")
        return [Option(letter=o.letter, text=o.text, span=(o.start, o.end)) for o in parsed]
    # text2image: each option holds one placeholder, in order
    offsets = image_indices(text)
    out = []
    for o in parsed:
        inside = [k for k, off in enumerate(offsets) if o.start <= off < o.end]
        if len(inside) != 1:
            raise _Bad("input", f"text2image option {o.letter} holds {len(inside)} {IMAGE_TOKEN} placeholders")
        out.append(Option(letter=o.letter, text=o.text, image=images[inside[0]], span=(o.start, o.end)))
    if len(out) != len(images):
        raise _Bad("input", f"{len(out)} options but {len(images)} images")
    return out


def _records(path: Path) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError([RecordError(str(path), -1, None, "file", f"not valid JSON: {exc}")],
                        hint="fix the file") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError([RecordError(str(path), -1, None, "file", "expected a JSON array of records")],
                        hint="fix the file")
    return data


def _collect(records, path: Path, task_of, roots, *, check_images, columns=None, split=None) -> Loaded:
    out = Loaded()
    seen: Counter = Counter()
    for index, rec in enumerate(records):
        rid = rec.get("id") if isinstance(rec, dict) else None
        try:
            n_img = len(rec.get((columns or {}).get("images", "images")) or []) if isinstance(rec, dict) else 0
            item = build_item(rec, task=task_of(n_img), index=index, source=path, roots=roots,
                              check_images=check_images, columns=columns)
        except _Bad as bad:
            out.errors.append(RecordError(str(path), index, rid, bad.field, bad.message))
            continue
        seen[item.id] += 1
        if seen[item.id] > 1:
            out.errors.append(RecordError(str(path), index, item.id, "id", "duplicate id"))
            continue
        item.split = split
        out.items.append(item)
    return out


def split_of(path: Path) -> str | None:
    stem = path.stem.lower()
    for s in ("train", "dev", "test", "val"):
        if stem.endswith(s):
            return s
    return None


def load_json(path: str | Path, task: Task | None = None, *, check_images: bool = True,
              skip_invalid: bool = False, columns: dict | None = None, media_dir: Path | None = None) -> Loaded:
    return _finish(_load_json(Path(path), task, check_images, columns, media_dir), skip_invalid)


def _load_json(path: Path, task: Task | None, check_images: bool, columns: dict | None,
               media_dir: Path | None) -> Loaded:
    if not path.exists():
        raise DataError([RecordError(str(path), -1, None, "file", "file not found")], hint="check the path")
    roots = [r for r in (media_dir, path.parent) if r is not None]
    return _collect(_records(path), path, lambda n: task or infer_task(path, n), roots,
                    check_images=check_images, columns=columns, split=split_of(path))


def _finish(loaded: Loaded, skip_invalid: bool) -> Loaded:
    if loaded.errors:
        if not skip_invalid:
            raise DataError(loaded.errors)
        for e in loaded.errors:
            log.warning("skipped %s", e)
    return loaded


def load_registry(path: str | Path, names: list[str] | None = None, *, check_images: bool = True,
                  skip_invalid: bool = False) -> Loaded:
    """Datasets registered in a LLaMA-Factory `dataset_info.json` (paths relative to its folder)."""
    path = Path(path)
    reg = json.loads(path.read_text(encoding="utf-8"))
    out = Loaded()
    for name, entry in reg.items():
        if names and name not in names:
            continue
        if "file_name" not in entry:
            raise DataError([RecordError(str(path), -1, name, "file_name", "registry entry has no file_name")],
                            hint="fix the registry")
        file = Path(entry["file_name"])
        file = file if file.is_absolute() else path.parent / file
        task = next((t for t in TASKS if t in name), None)
        out.extend(_load_json(file, task, check_images, entry.get("columns"), path.parent))
    return _finish(out, skip_invalid)


def load_csv(path: str | Path, task: Task, *, check_images: bool = True, skip_invalid: bool = False) -> Loaded:
    """MAC's CSV layout: journal, id, question, cover_image, answer, option_A..option_D
    (text2image: cover_image holds the story and option_X hold image paths)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    records = []
    for row in rows:
        letters = [c.split("_", 1)[1] for c in row if c and c.startswith("option_") and row[c]]
        question = (row.get("question") or "").strip()
        if task == "image2text":
            body = "\n".join(f"{L}. {row['option_' + L]}" for L in letters)
            text, images = f"{IMAGE_TOKEN}\n{question}\n{body}", [row.get("cover_image", "")]
        else:
            body = "\n".join(f"{L}. {IMAGE_TOKEN}" for L in letters)
            text, images = f"{question}\n{row.get('cover_image', '')}\n{body}", [row["option_" + L] for L in letters]
        records.append({"system": DEFAULT_SYSTEM[task], "input": text, "output": row.get("answer", ""),
                        "images": images, "id": row.get("id") or None, "journal": row.get("journal") or None})
    loaded = _collect(records, path, lambda n: task, [path.parent], check_images=check_images,
                      split=split_of(path))
    return _finish(loaded, skip_invalid)


def load_any(path: str | Path, task: Task | None = None, **kw) -> Loaded:
    """Dispatch on the file: a registry (`dataset_info.json`), a CSV, or a task JSON file."""
    path = Path(path)
    if path.name == "dataset_info.json":
        return load_registry(path, **kw)
    if path.suffix.lower() == ".csv":
        return load_csv(path, task or infer_task(path, 1), **kw)
    return load_json(path, task, **kw)
