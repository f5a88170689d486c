"""Prompt templates: paraphrased system prompts per task, applied when rendering training examples so the
student does not overfit one phrasing. Template 0 is the data's own wording and is
the one prediction and evaluation use. The question text itself (with its options) is always kept verbatim."""

from __future__ import annotations

import hashlib

from distill.data.items import Item

SYSTEMS = {
    "image2text": [
        None,  # the data's own system prompt
        "You are an expert reader of scientific journal covers. Given a cover image, choose the cover story it "
        "illustrates. Reply with the option letter.",
        "Journal covers express research through visual metaphor. Match the cover to the story it belongs to and "
        "answer with a single letter.",
        "You are a scientist who knows how journals illustrate their papers. Pick the story that this cover "
        "was made for. Give the letter of your choice.",
    ],
    "text2image": [
        None,
        "You are an expert reader of scientific journal covers. Given a cover story, choose the cover image that "
        "illustrates it. Reply with the option letter.",
        "Journal covers express research through visual metaphor. Match the story to the cover made for it and "
        "answer with a single letter.",
        "You are a scientist who knows how journals illustrate their papers. Pick the cover that was made for "
        "this story. Give the letter of your choice.",
    ],
}


def template_count(task: str) -> int:
    return len(SYSTEMS[task])


def system_for(item: Item, template: int) -> str:
    s = SYSTEMS[item.task][template % len(SYSTEMS[item.task])]
    return item.system if s is None else s


def pick_template(item_id: str, k: int, n: int) -> int:
    """A deterministic template per (item, example): spread over the set, 0 included."""
    return int(hashlib.sha256(f"{item_id}:{k}".encode()).hexdigest(), 16) % n
