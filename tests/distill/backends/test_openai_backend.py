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


def test_a_cover_is_encoded_once_across_many_requests(tmp_path, sample_dir, monkeypatch):
    """Sixty requests at once over one cover, found at two paths: one encoding, and every request carries it."""
    import shutil

    from distill.backends import covers

    fresh = covers.CoverURLs()
    monkeypatch.setattr("distill.backends.openai_backend.COVERS", fresh)
    encoded = []
    monkeypatch.setattr(
        covers, "encode_cover", lambda path, cap: encoded.append(path) or f"data:image/png;base64,{cap}"
    )
    cover = next((sample_dir / "images").rglob("*.jpg"))
    copy = shutil.copy(cover, tmp_path / "same-cover.jpg")
    requests = [
        ChatRequest([{"role": "user", "content": [{"type": "image", "image": str(p)}, {"type": "text", "text": "?"}]}])
        for p in [cover, copy] * 30
    ]
    with FakeTeacher() as server:
        backend = OpenAIBackend(BackendConfig(backend="openai", base_url=server.url, model="m", max_pixels=50176))

        async def run():
            try:
                return await asyncio.gather(*(backend.chat(r) for r in requests))
            finally:
                await backend.aclose()

        results = asyncio.run(run())
    assert len(encoded) == 1 and fresh.encodings == 1
    assert server.requests == 60 and all(r.text.endswith("Answer: A") for r in results)
    urls = {r.request["messages"][0]["content"][0]["image_url"]["url"] for r in results}
    assert urls == {"data:image/png;base64,50176"}


def test_the_body_sent_is_the_json_of_the_arguments(sample_dir):
    """The body with its data URLs joined in is exactly the JSON of the arguments (extra_body merged), also where a
    text holds the placeholder the joining uses."""
    import json

    from agents.reasoner import answer_request, reason_request
    from distill.backends.openai_backend import _COVER_MARK, build_chat_kwargs, request_body
    from distill.data.records import load_json

    item = load_json(sample_dir / "text2image_dev.json").items[0]
    cfg = BackendConfig(backend="openai", base_url="http://x/v1", model="m", structured="choice", max_pixels=50176)
    forced = answer_request(reason_request(item, {}), f"a rationale {_COVER_MARK} ünïcode", item.letters)
    for req in (reason_request(item, {}), forced):
        kw = build_chat_kwargs(cfg, req)
        expected = {k: v for k, v in kw.items() if k != "extra_body"} | kw.get("extra_body", {})
        assert json.loads(request_body(kw)) == expected
    assert json.loads(request_body(build_chat_kwargs(cfg, forced)))["structured_outputs"] == {"choice": item.letters}


def test_a_reply_that_is_not_a_completion_is_one_clear_error():
    from distill.backends.base import BackendError
    from distill.backends.openai_backend import reply_json

    with pytest.raises(BackendError, match="not JSON"):
        reply_json(b"<html>502 Bad Gateway</html>")
    with pytest.raises(BackendError, match="no choices"):
        reply_json(b'{"object": "error", "message": "model not found"}')


def test_connections_go_in_lanes_unless_the_environment_names_a_proxy(monkeypatch):
    from distill.backends.lanes import LanedTransport, pooled

    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    lanes = pooled(64)["transport"]
    assert isinstance(lanes, LanedTransport) and len(lanes.lanes) == 4
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert "transport" not in pooled(64)  # the client's own transport, which honours the proxy


def test_a_response_frees_its_lane_when_it_is_read():
    """Each request goes on the least busy lane, which holds it until its response is closed."""
    import httpx2

    from distill.backends.lanes import LanedTransport

    transport = LanedTransport(8, lane_connections=4)  # two lanes of four connections
    with FakeTeacher() as server:

        async def run():
            async with httpx2.AsyncClient(transport=transport) as client:
                held = await client.send(
                    client.build_request("POST", f"{server.url}/chat/completions", json={}), stream=True
                )
                busy = list(transport.busy)
                await held.aclose()
                replies = await asyncio.gather(
                    *(client.post(f"{server.url}/chat/completions", json={}) for _ in range(40))
                )
                return busy, [r.status_code for r in replies]

        busy, codes = asyncio.run(run())
    assert len(transport.lanes) == 2 and busy == [1, 0]  # the open response holds its lane
    assert transport.busy == [0, 0] and codes == [200] * 40
