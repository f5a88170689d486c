"""A real OpenAI-compatible server (`transformers serve` with the tiny model on 127.0.0.1) behind the graph."""

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agents.settings import TeacherConfig
from distill.backends.config import BackendConfig
from distill.backends.openai_backend import OpenAIBackend
from distill.data.records import load_json
from graphs.runner import run_items
from tests.helpers import free_port

pytestmark = pytest.mark.slow
MAX_PIXELS = 50176


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path_factory.mktemp("hub")))
    exe = Path(sys.executable).parent / "transformers"
    proc = subprocess.Popen(
        [str(exe), "serve", str(tiny_model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("transformers serve exited: " + proc.stdout.read().decode()[-2000:])
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("transformers serve did not come up in 120 s")
    yield url + "/v1"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_graph_through_a_real_server(server, tiny_model_dir, sample_dir, store, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-test-secret-123")
    cfg = BackendConfig(
        backend="openai",
        base_url=server,
        model=str(tiny_model_dir),
        max_pixels=MAX_PIXELS,
        api_key_env="TEST_TEACHER_KEY",
        max_retries=1,
        timeout_s=120,
    )
    items = (
        load_json(sample_dir / "image2text_dev.json").items[:1]
        + load_json(sample_dir / "text2image_dev.json").items[:1]
    )
    store.add_items(items)
    settings = TeacherConfig(
        describer=cfg, reasoner=cfg, max_attempts=1, rationalize=False, max_new_tokens=8, describe_tokens=8, min_words=1
    )
    # With the describer: a random model's caption may well be blank, and a blank caption is a failed call
    # (retried, then the item fails), never a description.
    described = asyncio.run(
        run_items(
            store, items, settings, OpenAIBackend(cfg), OpenAIBackend(cfg), run_id="described", show_progress=False
        )
    )
    captions = [c for c in store.db.query("select * from calls where agent = 'describer'")]
    assert captions and all((c["error"] is not None) == (not (c["response"] or "").strip()) for c in captions)
    kept = {r["text"] for r in store.db.query("select text from descriptions")}
    assert all(t.strip() for t in kept) and described.failed == sum(
        any(not (c["response"] or "").strip() for c in captions if c["item_key"] == it.key) for it in items
    )

    # The reasoner alone: every call reaches the model with its images.
    settings = settings.model_copy(update={"describer": None})
    summary = asyncio.run(
        run_items(store, items, settings, OpenAIBackend(cfg), None, run_id="served", show_progress=False)
    )
    assert summary.failed == 0, summary.errors
    calls = list(store.db.query("select * from calls where run_id = 'served'"))
    reasoner_calls = {c["item_key"]: c for c in calls if c["agent"] == "reasoner"}
    assert set(reasoner_calls) == {it.key for it in items}

    # The images reached the model: the server's prompt count is the local processor's, image tokens included.
    from transformers import AutoProcessor

    from agents.reasoner import reason_request
    from distill.backends.transformers_backend import to_hf_messages
    from distill.data.images import image_tokens, load_image

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    for it in items:
        call = reasoner_calls[it.key]
        per_image = [image_tokens(*load_image(p, MAX_PIXELS).size, MAX_PIXELS) for p in it.images]
        assert call["prompt_tokens"] > sum(per_image) > 0
        t = [t for t in store.traces(run_id="served") if t["item_key"] == it.key][0]
        import json

        req = reason_request(it, json.loads(t["descriptions"]), max_tokens=8)
        msgs, paths = to_hf_messages(req.messages)
        text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        enc = processor(text=[text], images=[load_image(p, MAX_PIXELS) for p in paths])
        assert call["prompt_tokens"] == len(enc["input_ids"][0])
        assert "sk-test-secret-123" not in call["request"] and "base64" not in call["request"]
