"""The OpenAI-compatible backend against a small real server: letter token ids are looked up once per (server,
model), under the same retries as every other call."""

import asyncio

import pytest

from distill.backends.base import ChatRequest
from distill.backends.config import BackendConfig
from distill.backends.openai_backend import OpenAIBackend
from tests.fake_openai import FakeTeacher

REQUEST = ChatRequest([{"role": "user", "content": "Which story matches the cover?\nA. a\nB. b\nC. c\nD. d"}])


def _score_all(backend: OpenAIBackend, n: int) -> list[dict[str, float]]:
    async def run():
        try:
            return await asyncio.gather(*(backend.score(REQUEST, list("ABCD")) for _ in range(n)))
        finally:
            await backend.aclose()

    return asyncio.run(run())


@pytest.mark.slow
def test_letter_ids_are_looked_up_once_per_server_and_model_and_retried():
    with FakeTeacher() as server:
        server.drop_tokenize = 1  # the first /tokenize loses its connection (httpx.ReadError): it is retried
        cfg = BackendConfig(
            backend="openai",
            base_url=server.url,
            model="letters-once",
            scoring="allowed_tokens",
            concurrency=64,
            max_retries=3,
            timeout_s=30,
        )
        scores = _score_all(OpenAIBackend(cfg), 384)  # 384 requests at once
        assert server.tokenize_calls == 4 + 1  # one lookup per letter, plus the retry of the dropped one
        assert len(scores) == 384 and all(s["A"] == pytest.approx(0.4) and s["D"] == pytest.approx(0.2) for s in scores)
        # another backend (another event loop) on the same server and model reuses the ids
        _score_all(OpenAIBackend(cfg), 8)
        assert server.tokenize_calls == 5
        # another model on that server has its own ids
        _score_all(OpenAIBackend(cfg.model_copy(update={"model": "letters-other"})), 8)
        assert server.tokenize_calls == 9
