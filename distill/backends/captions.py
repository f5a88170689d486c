"""The student's captions of covers (describe, then answer): one request per distinct cover, built here for every
place that asks for them — prediction, validation during training, and the kit's reading of a student's words."""

from __future__ import annotations

from distill.backends.base import ChatRequest
from distill.data.items import Item
from distill.data.student import CAPTION_TOKENS, describe_messages


def caption_requests(items: list[Item], max_tokens: int = CAPTION_TOKENS) -> tuple[list[str], list[ChatRequest]]:
    """Every distinct cover of `items`, in order of first appearance, and the describe request for each (greedy)."""
    covers = list(dict.fromkeys(p for it in items for p in it.cover_images()))
    return covers, [ChatRequest(describe_messages(p), max_tokens=max_tokens) for p in covers]
