"""MAC's own CSVs: `journal, id, question, cover_image, answer, option_A..option_D` (for text2image,
`cover_image` holds the story and `option_X` hold image paths). MAC's builders may add per-option columns
(`option_A_path`, `option_A_embedding_name`, `option_A_embedding_id`) and a `split` column: only `option_<letter>`
columns are options.

The question text is assembled as the task's JSON files lay it out: image2text, the cover, the question, the
stories as options; text2image, the question, the story (unless the question already holds it), the covers as
options. A blank line inside a cell would end an option early (the option rule), so cells' blank lines are
collapsed."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from distill.data.filenames import split_of, task_of
from distill.data.items import IMAGE_TOKEN, LETTERS, Item, Task
from distill.data.options import render_options
from distill.data.records import DEFAULT_SYSTEM, Bad, DataError, Loaded, RecordError, build_item, collect, finish

OPTION_COLUMN = re.compile(r"option_([A-Z])")
FIELDS = {"input": "question", "output": "answer", "images": "option_*/cover_image"}


def load_csv(
    path: str | Path,
    task: Task | None = None,
    *,
    split: str | None = None,
    check_images: bool = True,
    skip_invalid: bool = False,
    hint: str | None = None,
) -> Loaded:
    path = Path(path)
    task = task or task_of(path)
    if task is None:
        raise DataError(
            [
                RecordError(
                    str(path),
                    -1,
                    None,
                    "file",
                    "cannot tell the task from the file name (name it *image2text* or *text2image*)",
                )
            ]
        )
    split = split_of(path) or split
    if not path.is_file():
        raise DataError([RecordError(str(path), -1, None, "file", "file not found")])
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError([RecordError(str(path), -1, None, "file", f"not a readable CSV: {exc}")]) from None

    def build(row: dict, index: int) -> Item:
        text, images = question_text(task, row)
        return build_item(
            task=task,
            system=DEFAULT_SYSTEM[task],
            text=text,
            images=images,
            gold=row.get("answer") or None,
            rid=row.get("id"),
            journal=row.get("journal"),
            split=split,
            source=f"{path}#{index}",
            roots=[path.parent],
            check_images=check_images,
            fields=FIELDS,
        )

    return finish(collect(rows, path, build), skip_invalid, hint)


def option_cells(row: dict) -> list[str]:
    """The `option_<letter>` cells of a row that hold something, in letter order: A, B, C, ... without a gap."""
    filled = {m[1]: row[c] for c in row if c and (m := OPTION_COLUMN.fullmatch(c)) and (row[c] or "").strip()}
    letters = LETTERS[: len(filled)]
    if set(filled) != set(letters):
        raise Bad("option_*", f"options {', '.join(sorted(filled))} are not a run from A (one is empty or missing)")
    return [filled[L] for L in letters]


def question_text(task: Task, row: dict) -> tuple[str, list[str]]:
    """(the item's question text with its `<image>` placeholders, its image paths) from a MAC row."""
    question = _cell(row.get("question"))
    options = option_cells(row)
    if task == "image2text":
        body = render_options([_cell(o) for o in options])
        return f"{IMAGE_TOKEN}\n{question}\n{body}", [row.get("cover_image") or ""]
    story = _cell(row.get("cover_image"))
    if story and _squash(question).endswith(_squash(story)):  # the question already ends with the story: not twice
        story = ""
    head = "\n".join(part for part in (question, story) if part)
    return f"{head}\n{render_options([IMAGE_TOKEN] * len(options))}", [o.strip() for o in options]


def _cell(value: str | None) -> str:
    """A cell's text, trimmed, its blank lines collapsed (a blank line ends an option in a question's text)."""
    return re.sub(r"\n[ \t]*(?:\n[ \t]*)+", "\n", (value or "").strip().replace("\r\n", "\n"))


def _squash(text: str) -> str:
    return " ".join(text.split())
