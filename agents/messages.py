"""Turning an item into the neutral chat messages the backends take."""

from __future__ import annotations

from distill.data.items import Item


def describe_images(item: Item, descriptions: dict[str, str]) -> str:
    lines = []
    for k, path in enumerate(item.images):
        if path in descriptions:
            label = next((f" (option {o.letter})" for o in item.options if o.image == path), "")
            lines.append(f"Image {k + 1}{label}: {descriptions[path]}")
    return "\n".join(lines)
