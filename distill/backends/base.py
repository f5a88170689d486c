"""The backend interface. Messages use one neutral form:
`{"role": ..., "content": [{"type": "text", "text": ...}, {"type": "image", "image": "/path.png"}]}`;
each backend turns it into what its engine takes, after the shared image policy."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from distill.images import DEFAULT_MAX_PIXELS


class BackendError(RuntimeError):
    """A call failed for good (after the retries the backend does)."""


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    backend: Literal["transformers", "openai", "vllm", "scripted"] = "transformers"
    model: str = "runs/demo/tiny-model"
    base_url: str | None = None  # openai: e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never stored
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_new_tokens: int = 512
    temperature: float = 0.0
    timeout_s: float = 600.0
    max_retries: int = 5
    concurrency: int = 8  # openai: requests in flight; transformers: largest batch
    structured: Literal["none", "choice", "json_schema"] = "none"  # how to force a final letter
    text_only: bool = False  # a text-only model (DAD reasoner): send descriptions, never images
    device: str = "auto"
    dtype: str = "auto"
    extra: dict = {}  # engine keyword arguments (vLLM: tensor_parallel_size, gpu_memory_utilization, ...)


@dataclass
class ChatRequest:
    messages: list[dict]
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int | None = None
    choices: list[str] | None = None  # when set, the reply must be exactly one of these strings
    json_schema: dict | None = None


@dataclass
class ChatResult:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    request: dict = field(default_factory=dict)  # what was sent, for the store (secrets scrubbed there)


def image_paths(messages: list[dict]) -> list[str]:
    return [p["image"] for m in messages if isinstance(m["content"], list) for p in m["content"]
            if p.get("type") == "image"]


class Backend(abc.ABC):
    def __init__(self, config: BackendConfig):
        self.config = config

    @property
    def model_name(self) -> str:
        return self.config.model

    @abc.abstractmethod
    async def chat(self, request: ChatRequest) -> ChatResult: ...

    async def score(self, request: ChatRequest, letters: list[str]) -> dict[str, float]:
        """Probabilities of each letter as the first token of the reply, normalised over `letters`."""
        raise NotImplementedError(f"{type(self).__name__} cannot score letters")

    async def score_many(self, requests: list[ChatRequest], letters: list[list[str]]) -> list[dict[str, float]]:
        """Score many prompts at once; backends that can batch across them override this."""
        import asyncio

        return list(await asyncio.gather(*(self.score(r, ls) for r, ls in zip(requests, letters))))

    async def aclose(self) -> None:
        return None


def make_backend(config: BackendConfig | dict) -> Backend:
    if isinstance(config, dict):
        config = BackendConfig(**config)
    if config.backend == "openai":
        from distill.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    if config.backend == "transformers":
        from distill.backends.transformers_backend import TransformersBackend

        return TransformersBackend.shared(config)
    if config.backend == "vllm":
        from distill.backends.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    raise ValueError(f"backend {config.backend!r} cannot be built from a config (scripted backends are for tests)")
