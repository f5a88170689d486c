"""How requests are built for the OpenAI-compatible and vLLM backends (vLLM itself cannot run here)."""

import base64
import io

import pytest
from PIL import Image

from distill.question import question_parts
from agents.reasoner import answer_request, answer_schema, reason_request
from distill.backends import BackendConfig, BackendError, ChatRequest, make_backend
from distill.backends.openai_backend import build_chat_kwargs
from distill.backends.vllm_backend import engine_kwargs, letter_probs, sampling_kwargs
from distill.loaders import load_json


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
    monkeypatch.setenv("MY_KEY", "sk-abc")
    b = make_backend({"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "MY_KEY"})
    assert b.client.api_key == "sk-abc"
    assert "sk-abc" not in b.config.model_dump_json()


def test_vllm_engine_and_sampling_arguments():
    cfg = BackendConfig(backend="vllm", model="/models/qwen", max_pixels=262144,
                        extra={"gpu_memory_utilization": 0.9})
    kw = engine_kwargs(cfg)
    assert kw["limit_mm_per_prompt"] == {"image": 4}
    assert kw["mm_processor_kwargs"] == {"max_pixels": 262144}
    assert kw["gpu_memory_utilization"] == 0.9
    s = sampling_kwargs(ChatRequest([], max_tokens=1, choices=["A", "B"]), logprobs=20)
    assert s == {"max_tokens": 1, "temperature": 0.0, "structured_outputs": {"choice": ["A", "B"]}, "logprobs": 20}


def test_vllm_letter_probabilities_from_logprobs():
    import math

    probs = letter_probs({"A": math.log(0.5), " B": math.log(0.25), "The": math.log(0.2)}, list("ABCD"))
    assert probs["A"] == pytest.approx(2 / 3) and probs["B"] == pytest.approx(1 / 3) and probs["C"] == 0


def test_vllm_backend_is_import_guarded():
    pytest.importorskip  # vLLM is an optional extra: without it the backend says how to install it
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match=r"cover-distill\[vllm\]"):
            make_backend({"backend": "vllm", "model": "m"})
