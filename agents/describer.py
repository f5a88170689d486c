"""The describer: one faithful caption per cover image."""

from __future__ import annotations

from agents import prompts
from distill.backends import Backend, ChatRequest, ChatResult


def describe_request(image: str, max_tokens: int = 256) -> ChatRequest:
    return ChatRequest(messages=[
        {"role": "system", "content": prompts.DESCRIBER_SYSTEM},
        {"role": "user", "content": [{"type": "image", "image": image},
                                     {"type": "text", "text": prompts.DESCRIBER_USER}]},
    ], max_tokens=max_tokens, temperature=0.0)


async def describe(backend: Backend, image: str, max_tokens: int = 256) -> ChatResult:
    return await backend.chat(describe_request(image, max_tokens))
