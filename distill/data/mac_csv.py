"""MAC's own CSVs: `journal, id, question, cover_image, answer, option_A..option_D` (for text2image,
`cover_image` holds the story and `option_X` hold image paths)."""

from __future__ import annotations

import csv
from pathlib import Path

from distill.data.filenames import split_of, task_of
from distill.data.items import IMAGE_TOKEN, Item, Task
from distill.data.options import render_options
from distill.data.records import DEFAULT_SYSTEM, DataError, Loaded, RecordError, build_item, collect, finish


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
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    def build(row: dict, index: int) -> Item:
        letters = [c.split("_", 1)[1] for c in row if c and c.startswith("option_") and row[c]]
        question = (row.get("question") or "").strip()
        if task == "image2text":
            body = render_options([row["option_" + L] for L in letters])
            text, images = f"{IMAGE_TOKEN}\n{question}\n{body}", [row.get("cover_image", "")]
        else:
            body = render_options([IMAGE_TOKEN] * len(letters))
            text, images = f"{question}\n{row.get('cover_image', '')}\n{body}", [row["option_" + L] for L in letters]
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
            fields={"input": "question", "output": "answer", "images": "option_*/cover_image"},
        )

    return finish(collect(rows, path, build), skip_invalid, hint)
