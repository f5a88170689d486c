"""vLLM's real engine and server on the CPU (opt-in: `pytest -m vllm`), in the venv that
tests/vllm/setup_vllm_cpu.sh builds (.venv-vllm, or the venv named by DISTILL_VLLM_VENV)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("DISTILL_VLLM_VENV", ROOT / ".venv-vllm"))
ENV = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/vllm/" in str(item.fspath):
            item.add_marker(pytest.mark.vllm)


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no vLLM venv at {VENV}: run `bash tests/vllm/setup_vllm_cpu.sh`")
    return python


@pytest.fixture(scope="session")
def tiny32(tmp_path_factory) -> Path:
    """The demo's own tiny model, as `distill tiny-model` builds it: its heads are 32 wide, which vLLM's CPU
    attention takes (head sizes 32, 64, 80, ...; not 16)."""
    from distill.kit.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path_factory.mktemp("tiny32") / "model", seed=0)
    config = json.loads((model / "config.json").read_text())["text_config"]
    assert config["hidden_size"] // config["num_attention_heads"] == 32
    return model


@pytest.fixture(scope="session")
def vllm_server(vllm_python, tiny32, tmp_path_factory):
    """`vllm serve` (the OpenAI-compatible server, one engine) on 127.0.0.1 for the session."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [
        str(vllm_python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny32),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "4096",
        "--seed",
        "0",
        "--limit-mm-per-prompt",
        '{"image": 4, "video": 0}',
        "--enforce-eager",
        "--logprobs-mode",
        "processed_logprobs",
        # CPU-only failures of vLLM's CPU build: seeded sampling under chunked prefill, and "Multi-modal cache
        # miss" after aborted requests
        "--no-enable-chunked-prefill",
        "--mm-processor-cache-gb",
        "0",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ENV)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 900
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("vllm serve exited:\n" + log.read_text()[-3000:])
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2):
                break
        except OSError:
            time.sleep(2)
    else:
        proc.kill()
        pytest.fail("vllm serve was not ready after 900 s:\n" + log.read_text()[-3000:])
    yield url + "/v1"
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
