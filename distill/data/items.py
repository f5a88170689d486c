"""The data model: one multiple-choice item of either MAC task."""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

Task = Literal["image2text", "text2image"]
TASKS: tuple[Task, ...] = ("image2text", "text2image")
LETTERS = string.ascii_uppercase  # option letters: A-D in MAC; items with more options go on to Z
IMAGE_TOKEN = "<image>"


class Option(BaseModel):
    letter: str
    text: str  # verbatim option text; for text2image the `<image>` placeholder (plus any label text)
    image: str | None = None  # text2image: the image path of this option
    span: tuple[int, int] | None = None  # [start, end) of `text` inside Item.input, for re-rendering


class Item(BaseModel):
    id: str
    task: Task
    system: str = ""  # the task's requirement text ("# Requirement\n You are an excellent scientific ...")
    # Where LLaMA-Factory puts `system`: False (the task's registry maps it to `prompt`): at the start of the user
    # turn, under the chat template's default system prompt; True (a registry's `system` column): the system turn.
    system_turn: bool = False
    input: str  # the question verbatim, one `<image>` per entry of `images`
    options: list[Option]
    images: list[str]  # resolved paths, in placeholder order
    gold: str | None = None
    journal: str | None = None
    split: str | None = None
    source: str | None = None  # file (and record index) the item came from
    parents: list[str] = Field(default_factory=list)  # augmentation provenance
    transform: str | None = None
    meta: dict = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """Ids are unique per task, not across tasks (MAC's ids name the journal issue): this is unique."""
        return item_key(self.task, self.id)

    @property
    def letters(self) -> list[str]:
        return [o.letter for o in self.options]

    def option(self, letter: str) -> Option:
        for o in self.options:
            if o.letter == letter:
                return o
        raise KeyError(f"item {self.id}: no option {letter}")

    @property
    def gold_option(self) -> Option | None:
        return self.option(self.gold) if self.gold else None

    def repeated_options(self, identity: Callable[[str], str | None] | None = None) -> list[list[str]]:
        """Groups of letters whose options show the same thing: the same story (spacing and case aside) or the same
        cover (the same `identity(path)`, e.g. its sha256; where that is None or not given, the same path)."""
        groups: dict[str, list[str]] = {}
        for o in self.options:
            if self.task == "text2image" and o.image:
                shown = "cover:" + ((identity(o.image) if identity else None) or o.image)
            else:
                shown = "story:" + " ".join(o.text.split()).lower()
            groups.setdefault(shown, []).append(o.letter)
        return [letters for letters in groups.values() if len(letters) > 1]

    def cover_images(self) -> list[str]:
        """The images a describer has to caption (all images of the item)."""
        return list(dict.fromkeys(self.images))

    def record(self, images: list[str] | None = None) -> dict:
        """The item in the task's own JSON format (`images`: the paths to write, default the item's)."""
        rec = {
            "system": self.system,
            "input": self.input,
            "output": self.gold or "",
            "images": self.images if images is None else images,
            "id": self.id,
        }
        if self.journal:
            rec["journal"] = self.journal
        return rec


def item_key(task: str, item_id: str) -> str:
    return f"{task}/{item_id}"


def content_id(task: str, system: str, text: str, images: list[str]) -> str:
    """A stable id for records that carry none: a hash of what the model sees."""
    from pathlib import Path

    payload = json.dumps([task, system, text, [Path(p).name for p in images]], ensure_ascii=False)
    return "h" + hashlib.sha256(payload.encode()).hexdigest()[:15]
