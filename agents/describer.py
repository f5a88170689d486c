"""The describer: one faithful caption per cover image."""

from __future__ import annotations

from agents import prompts
from distill.backends.base import Backend, ChatRequest, ChatResult, TransientBackendError


class BlankDescription(TransientBackendError):
    """An empty or whitespace-only caption: a failed call (retried), never a description."""

    def __init__(self, result: ChatResult):
        super().__init__(f"the describer returned a blank description ({result.text!r})")
        self.result = result


def describe_request(image: str, max_tokens: int = 256) -> ChatRequest:
    return ChatRequest(
        messages=[
            {"role": "system", "content": prompts.DESCRIBER_SYSTEM},
            {
                "role": "user",
                "content": [{"type": "image", "image": image}, {"type": "text", "text": prompts.DESCRIBER_USER}],
            },
        ],
        max_tokens=max_tokens,
        temperature=0.0,
    )


async def describe(backend: Backend, image: str, max_tokens: int = 256) -> ChatResult:
    result = await backend.chat(describe_request(image, max_tokens))
    if not result.text.strip():
        raise BlankDescription(result)
    return result
