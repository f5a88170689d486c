"""A scripted fake model for unit tests of routing logic: replies come from a function of the request."""

from __future__ import annotations

from collections.abc import Callable

from distill.backends.base import Backend, BackendError, ChatRequest, ChatResult
from distill.backends.config import BackendConfig


class ScriptedBackend(Backend):
    def __init__(self, reply: Callable[[ChatRequest, int], str | Exception], model: str = "scripted"):
        super().__init__(BackendConfig(model=model))
        self.reply = reply
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        out = self.reply(request, len(self.requests) - 1)
        if isinstance(out, Exception):
            raise BackendError(str(out))
        return ChatResult(
            text=out,
            prompt_tokens=10,
            completion_tokens=len(out.split()),
            request={"model": self.config.model, "messages": request.messages},
        )


def request_text(request: ChatRequest) -> str:
    parts = []
    for m in request.messages:
        if isinstance(m["content"], str):
            parts.append(m["content"])
        else:
            parts.extend(p.get("text", "") for p in m["content"])
    return "\n".join(parts)


RATIONALE = (
    "The cover shows repeated coloured shapes whose arrangement and hue stand for the physical idea "
    "of the story; comparing the options, only one names the same shapes, colour and layout."
)
