"""How requests are built for the OpenAI-compatible backend, and the one letter normaliser."""

import base64
import io

import pytest
from PIL import Image

from agents.reasoner import answer_request, answer_schema, reason_request
from distill.backends.base import BackendError, ChatRequest, letter_distribution
from distill.backends.config import BackendConfig
from distill.backends.factory import make_backend
from distill.backends.openai_backend import build_chat_kwargs
from distill.data.question import question_parts
from distill.data.records import load_json


@pytest.fixture
def t2i(sample_dir):
    return load_json(sample_dir / "text2image_dev.json").items[0]


def test_openai_images_are_capped_data_urls_in_placeholder_order(t2i):
    cfg = BackendConfig(backend="openai", base_url="http://x/v1", model="m", max_pixels=28 * 28 * 16)
    kw = build_chat_kwargs(cfg, ChatRequest([{"role": "user", "content": question_parts(t2i)}]))
    parts = kw["messages"][0]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == 4
    for url in urls:
        img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert img.mode == "RGB" and img.width * img.height <= 28 * 28 * 16
    # the text between images is the question verbatim
    assert "".join(p.get("text", "") for p in parts) == t2i.input.replace("<image>", "")


def test_openai_structured_choice_and_json_schema(t2i):
    req = reason_request(t2i, {}, structured=True)
    cfg = BackendConfig(backend="openai", base_url="http://x/v1", model="m", structured="json_schema")
    kw = build_chat_kwargs(cfg, req)
    assert kw["response_format"]["json_schema"]["schema"] == answer_schema(list("ABCD"))
    forced = answer_request(req, "some reasoning", list("ABCD"))
    kw = build_chat_kwargs(cfg.model_copy(update={"structured": "choice"}), forced)
    assert kw["extra_body"] == {"structured_outputs": {"choice": ["A", "B", "C", "D"]}}
    assert kw["max_tokens"] == 1 and forced.messages[-2] == {"role": "assistant", "content": "some reasoning"}


def test_text_only_reasoner_gets_no_images(t2i):
    cfg = BackendConfig(backend="openai", base_url="http://x/v1", model="m", text_only=True)
    kw = build_chat_kwargs(cfg, reason_request(t2i, {p: "d" for p in t2i.images}, text_only=True))
    assert all(isinstance(m["content"], str) for m in kw["messages"])


def test_api_key_comes_from_the_environment(monkeypatch):
    import asyncio

    monkeypatch.setenv("MY_KEY", "sk-abc")
    b = make_backend({"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "MY_KEY"})

    async def key():
        [replica] = b._clients()
        return replica.client.api_key

    assert asyncio.run(key()) == "sk-abc"
    assert "sk-abc" not in b.config.model_dump_json()


def test_letter_distribution_is_exact_or_an_error():
    import math

    probs = letter_distribution(
        {"A": math.log(0.5), "B": math.log(0.25), "C": math.log(0.2), "D": math.log(0.05)}, list("ABCD")
    )
    assert probs == pytest.approx({"A": 0.5, "B": 0.25, "C": 0.2, "D": 0.05})
    with pytest.raises(BackendError, match=r"\['C', 'D'\]"):  # never a uniform or zero stand-in
        letter_distribution({"A": math.log(0.5), "B": math.log(0.25)}, list("ABCD"))


def test_vllm_backend_without_vllm_says_how_to_install():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match=r"cover-distill\[vllm\]"):
            make_backend({"backend": "vllm", "model": "m"})
    else:
        pytest.skip("vLLM is installed here: the engine tests in tests/vllm cover it")
