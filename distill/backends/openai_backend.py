"""Any OpenAI-compatible server: `vllm serve`, `transformers serve`, hosted APIs.

Retries with exponential backoff on 429/5xx/timeouts are the `openai` client's own (`max_retries`);
concurrency is bounded by a semaphore."""

from __future__ import annotations

import asyncio
import math
import os

from distill.backends.base import Backend, BackendConfig, BackendError, ChatRequest, ChatResult
from distill.images import data_url


def to_openai_messages(messages: list[dict], max_pixels: int, text_only: bool = False) -> list[dict]:
    out = []
    for m in messages:
        if isinstance(m["content"], str):
            out.append({"role": m["role"], "content": m["content"]})
            continue
        parts = []
        for p in m["content"]:
            if p["type"] == "text":
                parts.append({"type": "text", "text": p["text"]})
            elif p["type"] == "image" and not text_only:
                parts.append({"type": "image_url", "image_url": {"url": data_url(p["image"], max_pixels)}})
        if all(p["type"] == "text" for p in parts):
            out.append({"role": m["role"], "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": m["role"], "content": parts})
    return out


def build_chat_kwargs(config: BackendConfig, request: ChatRequest) -> dict:
    """The keyword arguments of `chat.completions.create` for one request (unit-tested)."""
    kw: dict = {
        "model": config.model,
        "messages": to_openai_messages(request.messages, config.max_pixels, config.text_only),
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.seed is not None:
        kw["seed"] = request.seed
    extra: dict = {}
    if request.choices and config.structured == "choice":
        extra["structured_outputs"] = {"choice": request.choices}  # vLLM structured outputs
    if request.json_schema and config.structured in ("json_schema", "choice"):
        kw["response_format"] = {"type": "json_schema",
                                 "json_schema": {"name": "answer", "schema": request.json_schema, "strict": True}}
    if extra:
        kw["extra_body"] = extra
    return kw


class OpenAIBackend(Backend):
    def __init__(self, config: BackendConfig):
        super().__init__(config)
        from openai import AsyncOpenAI

        if not config.base_url:
            raise BackendError("the openai backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
        self.client = AsyncOpenAI(base_url=config.base_url, api_key=os.environ.get(config.api_key_env) or "EMPTY",
                                  timeout=config.timeout_s, max_retries=config.max_retries)
        self._sem = asyncio.Semaphore(config.concurrency)

    async def chat(self, request: ChatRequest) -> ChatResult:
        import openai

        kw = build_chat_kwargs(self.config, request)
        async with self._sem:
            try:
                resp = await self.client.chat.completions.create(**kw)
            except openai.OpenAIError as exc:
                raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        choice = resp.choices[0]
        usage = resp.usage
        return ChatResult(text=choice.message.content or "",
                          prompt_tokens=usage.prompt_tokens if usage else None,
                          completion_tokens=usage.completion_tokens if usage else None, request=kw)

    async def score(self, request: ChatRequest, letters: list[str]) -> dict[str, float]:
        import openai

        kw = build_chat_kwargs(self.config, ChatRequest(request.messages, max_tokens=1, temperature=0.0))
        kw.update(logprobs=True, top_logprobs=20)
        async with self._sem:
            try:
                resp = await self.client.chat.completions.create(**kw)
            except openai.OpenAIError as exc:
                raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        content = resp.choices[0].logprobs.content if resp.choices[0].logprobs else None
        if not content:
            raise BackendError("the server returned no logprobs")
        mass = {L: 0.0 for L in letters}
        for top in content[0].top_logprobs:
            tok = top.token.strip()
            if tok in mass:
                mass[tok] += math.exp(top.logprob)
        total = sum(mass.values())
        if total == 0:
            return {L: 1.0 / len(letters) for L in letters}
        return {L: v / total for L, v in mass.items()}

    async def aclose(self) -> None:
        await self.client.close()
