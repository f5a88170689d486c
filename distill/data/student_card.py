"""The student's card: what a trained model folder records of how it was trained to read its prompts — the prompt
layout, the image cap, and whether its prompts carry the covers' captions (describe, then answer). Training writes
it beside every model it saves; DPO, `distill predict` and the kit read it here, through `read_card`, so a model
answers with the prompts and the image cap it was trained on unless told otherwise."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, PositiveInt, ValidationError

from distill.data.images import DEFAULT_MAX_PIXELS
from distill.data.student import DEFAULT_LAYOUT, Layout
from distill.errors import UserError, problems

CARD_FILE = "distill_student.json"
EARLIER_CARD_FILES = ("distill_prompt.json",)  # the name the card had: folders trained before still read


class StudentCard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layout: Layout = DEFAULT_LAYOUT
    max_pixels: PositiveInt | None = None  # folders trained before it was recorded have none
    captions: bool = False


def write_card(model_dir: str | Path, card: StudentCard) -> Path:
    from distill.data.fileio import atomic_write_json

    return atomic_write_json(Path(model_dir) / CARD_FILE, card.model_dump(exclude_none=True, exclude_defaults=False))


def card_path(model_dir: str | Path) -> Path | None:
    """The card's file in `model_dir` (its current name first), or None for a folder cover-distill did not train."""
    for name in (CARD_FILE, *EARLIER_CARD_FILES):
        if (Path(model_dir) / name).is_file():
            return Path(model_dir) / name
    return None


def read_card(model_dir: str | Path) -> StudentCard | None:
    """The card of a trained model folder, or None where there is none; a damaged card is one line naming it."""
    path = card_path(model_dir)
    if path is None:
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable student card ({exc})") from None
    if not isinstance(record, dict) or "layout" not in record:
        raise UserError(f'{path}: expected {{"layout": ..., "max_pixels": N, "captions": true|false}}')
    try:
        return StudentCard.model_validate(record, strict=True)
    except ValidationError as exc:
        raise UserError(f"{path}: {problems(exc)}") from None


def image_cap(model_dir: str | Path, max_pixels: int | None, given: str = "given") -> tuple[int, str]:
    """The image cap for working with `model_dir`, and where it came from: `max_pixels` when given (said as
    `given`), else the cap the model was trained at (its card), else LLaMA-Factory's default."""
    if max_pixels:
        return max_pixels, given
    card = read_card(model_dir)
    if card is not None and card.max_pixels:
        return card.max_pixels, f"recorded with the model in {card_path(model_dir)}"
    return DEFAULT_MAX_PIXELS, "the default (LLaMA-Factory's image_max_pixels): the model records no cap"
