"""Turning an item into the neutral chat messages the backends take."""

from __future__ import annotations

from distill.items import IMAGE_TOKEN, Item


def question_parts(item: Item, text_only: bool = False) -> list[dict]:
    """The item's question verbatim, each `<image>` replaced by the image itself (or a label, text-only)."""
    parts: list[dict] = []
    chunks = item.input.split(IMAGE_TOKEN)
    for k, chunk in enumerate(chunks):
        if chunk:
            parts.append({"type": "text", "text": chunk})
        if k < len(item.images):
            if text_only:
                parts.append({"type": "text", "text": f"[Image {k + 1}]"})
            else:
                parts.append({"type": "image", "image": item.images[k]})
    return parts


def describe_images(item: Item, descriptions: dict[str, str]) -> str:
    lines = []
    for k, path in enumerate(item.images):
        if path in descriptions:
            label = next((f" (option {o.letter})" for o in item.options if o.image == path), "")
            lines.append(f"Image {k + 1}{label}: {descriptions[path]}")
    return "\n".join(lines)
