"""Records into validated items: what every loader shares, and the task's own JSON files.

Every record is validated; a bad record yields a `RecordError` naming file, record, id and field. With
`skip_invalid` the valid rest loads and the errors are returned, otherwise they are raised together. Each item
carries the split its source declares (the file's or dataset's name, or the caller's word): training records
must have a gold letter, test records may lack it."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from distill.data.filenames import split_of, task_of
from distill.data.images import ImageFile, inspect_image
from distill.data.items import IMAGE_TOKEN, LETTERS, Item, Option, Task, content_id
from distill.data.options import OptionParseError, image_indices, parse_options
from distill.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_SYSTEM = {
    "image2text": "# Requirement\n You are an excellent scientific image reader. Choose the cover story that "
    "matches the journal cover image. Answer with the letter of the option.",
    "text2image": "# Requirement\n You are an excellent scientific image reader. Choose the journal cover image "
    "that matches the cover story. Answer with the letter of the option.",
}
TRAINING_SPLITS = ("train", "val")
LONG_LOAD = 200  # records from which checking a file shows a progress bar


@dataclass
class RecordError:
    file: str
    index: int
    id: str | None
    field: str
    message: str

    def __str__(self) -> str:
        rid = f" id={self.id}" if self.id else ""
        where = f" record #{self.index}" if self.index >= 0 else ""
        return f"{self.file}{where}{rid} [{self.field}]: {self.message}"


class DataError(UserError, ValueError):
    def __init__(self, errors: list[RecordError], hint: str | None = None):
        self.errors = errors
        lines = [str(e) for e in errors[:50]]
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        head = f"{len(errors)} invalid record(s)" + (f" ({hint})" if hint else "")
        super().__init__(
            head + ":\n  " + "\n  ".join(lines) + more
            if len(errors) > 1
            else f"{lines[0]}" + (f" ({hint})" if hint else "")
        )


@dataclass
class Loaded:
    items: list[Item] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)

    def extend(self, other: Loaded) -> None:
        self.items.extend(other.items)
        self.errors.extend(other.errors)


class Bad(Exception):
    """One record's problem, raised while building it; becomes a RecordError with the record's place."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        self.message = message


_FOUND: dict[tuple[str, tuple[Path, ...]], Path] = {}  # (image, roots) -> the existing file it names


def _resolve(image: str, roots: list[Path]) -> Path:
    """The file an image path names: as it is when absolute, else under the first root that holds it (else the
    first root). Found files are remembered: covers recur across records, and resolving costs system calls."""
    key = (image, tuple(roots))
    if key in _FOUND:
        return _FOUND[key]
    p = Path(image).expanduser()
    if p.is_absolute():
        return p
    for root in roots:
        if (root / p).exists():
            _FOUND[key] = (root / p).resolve()
            return _FOUND[key]
    return (roots[0] / p).resolve()


def check_image(path: Path) -> ImageFile:
    """The image read once (`inspect_image`), or Bad naming why it cannot be used."""
    image = inspect_image(path)
    if image.problem:
        raise Bad("images", image.problem)
    return image


def build_item(
    *,
    task: Task,
    system: str,
    text,
    images,
    gold,
    rid,
    journal,
    split: str | None,
    source: str,
    roots: list[Path],
    check_images: bool = True,
    fields: dict | None = None,
    meta: dict | None = None,
    system_turn: bool = False,
) -> Item:
    """One record's values into a validated Item. `fields` names the record's keys in messages."""
    names = {"system": "system", "input": "input", "output": "output", "images": "images"} | (fields or {})
    if not isinstance(text, str) or not text.strip():
        raise Bad(names["input"], "missing or empty question text")
    images = [images] if isinstance(images, str) else (images or [])
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise Bad(names["images"], "images must be a list of paths")
    n_placeholders = text.count(IMAGE_TOKEN)
    if n_placeholders != len(images):
        raise Bad(names["images"], f"{n_placeholders} {IMAGE_TOKEN} placeholder(s) but {len(images)} image(s)")
    resolved = [_resolve(i, roots) for i in images]
    shas = {str(p): check_image(p).sha256 for p in resolved} if check_images else {}
    options = _options(text, task, [str(p) for p in resolved])
    letters = [o.letter for o in options]
    norm = gold.strip().strip(".").upper() if isinstance(gold, str) and gold.strip() else None
    if gold is not None and not isinstance(gold, str):
        raise Bad(names["output"], f"gold must be a letter, got {gold!r}")
    if norm is not None and norm not in letters:
        raise Bad(names["output"], f"gold {gold!r} is not one of the options {letters}")
    if norm is None and split in TRAINING_SPLITS:
        raise Bad(names["output"], f"a {split} record needs a gold letter (got {gold!r})")
    rid = str(rid) if rid not in (None, "") else content_id(task, system or "", text, images)
    item = Item(
        id=rid,
        task=task,
        system=system or "",
        system_turn=system_turn,
        input=text,
        options=options,
        images=[str(p) for p in resolved],
        gold=norm,
        journal=journal or None,
        split=split,
        source=source,
        meta=meta or {},
    )
    warn_repeats(item, shas.get)
    return item


def warn_repeats(item: Item, identity=None) -> None:
    """A warning naming the record when two of its options show the same story or cover (accepted: the data may
    mean it, but it teaches nothing and augmentation leaves such items out)."""
    for letters in item.repeated_options(identity):
        what = "cover" if item.task == "text2image" else "story"
        log.warning("%s id=%s: options %s show the same %s", item.source, item.id, " and ".join(letters), what)


def _options(text: str, task: Task, images: list[str]) -> list[Option]:
    try:
        parsed = parse_options(text)
    except OptionParseError as exc:
        if task == "text2image" and 2 <= len(images) <= len(LETTERS):
            # Bare placeholders with no labels: the images are options A, B, C, ... in order.
            return [Option(letter=LETTERS[i], text=IMAGE_TOKEN, image=p) for i, p in enumerate(images)]
        raise Bad("input", f"cannot parse the options: {exc}") from None
    if task == "image2text":
        if len(images) != 1:
            raise Bad("images", f"image2text needs exactly one cover image, got {len(images)}")
        return [Option(letter=o.letter, text=o.text, span=(o.start, o.end)) for o in parsed]
    # text2image: each option holds one placeholder, in order
    offsets = image_indices(text)
    out = []
    for o in parsed:
        inside = [k for k, off in enumerate(offsets) if o.start <= off < o.end]
        if len(inside) != 1:
            raise Bad("input", f"text2image option {o.letter} holds {len(inside)} {IMAGE_TOKEN} placeholders")
        out.append(Option(letter=o.letter, text=o.text, image=images[inside[0]], span=(o.start, o.end)))
    if len(out) != len(images):
        raise Bad("input", f"{len(out)} options but {len(images)} images")
    return out


def read_records(path: Path) -> list:
    if not path.is_file():
        raise DataError([RecordError(str(path), -1, None, "file", "file not found")])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError([RecordError(str(path), -1, None, "file", f"not valid JSON: {exc}")]) from None
    except RecursionError:
        raise DataError([RecordError(str(path), -1, None, "file", "JSON nested too deeply to read")]) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError([RecordError(str(path), -1, None, "file", "expected a JSON array of records")])
    return data


def collect(records: list, path: Path, build) -> Loaded:
    """Build every record with `build(record, index) -> Item`; errors name their record, ids must be unique."""
    from rich.progress import track

    out = Loaded()
    seen: Counter = Counter()
    checking = track(records, f"checking {path.name}", transient=True, disable=len(records) < LONG_LOAD)
    for index, rec in enumerate(checking):
        rid = rec.get("id") if isinstance(rec, dict) else None
        try:
            if not isinstance(rec, dict):
                raise Bad("record", f"expected an object, got {type(rec).__name__}")
            item = build(rec, index)
        except Bad as bad:
            out.errors.append(RecordError(str(path), index, rid, bad.field, bad.message))
            continue
        seen[item.key] += 1
        if seen[item.key] > 1:
            out.errors.append(RecordError(str(path), index, item.id, "id", f"duplicate {item.task} id"))
            continue
        out.items.append(item)
    return out


def task_for(path: Path, explicit: Task | None, n_images: int) -> Task:
    return explicit or task_of(path) or ("image2text" if n_images == 1 else "text2image")


def load_json(
    path: str | Path,
    task: Task | None = None,
    *,
    split: str | None = None,
    check_images: bool = True,
    skip_invalid: bool = False,
    hint: str | None = None,
) -> Loaded:
    """A task JSON file: records with `system`, `input`, `output`, `images` and an optional `id`."""
    path = Path(path)
    split = split_of(path) or split
    records = read_records(path)

    def build(rec: dict, index: int) -> Item:
        images = rec.get("images")
        return build_item(
            task=task_for(path, task, len(images) if isinstance(images, list) else 1),
            system=rec.get("system") or "",
            text=rec.get("input"),
            images=images,
            gold=rec.get("output"),
            rid=rec.get("id"),
            journal=rec.get("journal"),
            split=split,
            source=f"{path}#{index}",
            roots=[path.parent],
            check_images=check_images,
            meta={k: v for k, v in rec.items() if k not in ("system", "input", "output", "images", "id", "journal")},
        )

    return finish(collect(records, path, build), skip_invalid, hint)


def finish(loaded: Loaded, skip_invalid: bool, hint: str | None = None) -> Loaded:
    """Raise the errors together, or (`skip_invalid`) return them with the valid rest: the caller reports them, once."""
    if loaded.errors and not skip_invalid:
        raise DataError(loaded.errors, hint)
    return loaded
