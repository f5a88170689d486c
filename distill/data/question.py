"""An item's question as chat content: its text verbatim, each `<image>` replaced by the image."""

from __future__ import annotations

from distill.data.items import IMAGE_TOKEN, Item


def question_parts(item: Item, text: str | None = None, text_only: bool = False) -> list[dict]:
    """Content parts for `item` (or `text`, a reworded question with the same placeholders). Text-only
    models get a label in place of each image."""
    text = item.input if text is None else text
    parts: list[dict] = []
    chunks = text.split(IMAGE_TOKEN)
    for k, chunk in enumerate(chunks):
        if chunk:
            parts.append({"type": "text", "text": chunk})
        if k < len(chunks) - 1:
            if text_only:
                parts.append({"type": "text", "text": f"[Image {k + 1}]"})
            else:
                parts.append({"type": "image", "image": item.images[k]})
    return parts
