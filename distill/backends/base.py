"""The backend interface. Messages use one neutral form:
`{"role": ..., "content": [{"type": "text", "text": ...}, {"type": "image", "image": "/path.png"}]}`;
each backend turns it into what its engine takes, after the shared image policy."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field

from distill.backends.config import BackendConfig
from distill.errors import UserError


class BackendError(UserError, RuntimeError):
    """A call failed for good (after the retries the backend does)."""


class TransientBackendError(BackendError):
    """A call failed in a way a retry may fix (a blank reply, a dropped connection): graph nodes retry these."""


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
    return [
        p["image"] for m in messages if isinstance(m["content"], list) for p in m["content"] if p.get("type") == "image"
    ]


def letter_distribution(logprobs: dict[str, float], letters: list[str]) -> dict[str, float]:
    """Log-probabilities of the option letters as the next token -> their distribution over the options.
    Every letter must be present: a letter the engine did not return has no probability we know, and filling
    it in (uniform, or zero) would be an answer the model never gave."""
    missing = [L for L in letters if L not in logprobs]
    if missing:
        raise BackendError(f"no log-probability for option letter(s) {missing}: the engine did not score them")
    top = max(logprobs[L] for L in letters)
    mass = {L: math.exp(logprobs[L] - top) for L in letters}
    total = sum(mass.values())
    return {L: v / total for L, v in mass.items()}


def require_local_model(path: str, what: str = "model") -> None:
    """A local model folder with a config, or one clear error: never a hub lookup that waits minutes offline."""
    from pathlib import Path

    p = Path(path)
    if not p.is_dir():
        raise BackendError(f"{what} folder not found: {p}")
    if not (p / "config.json").is_file() and not (p / "adapter_config.json").is_file():
        raise BackendError(f"{what} folder {p} holds no config.json (nor adapter_config.json)")


class Backend(abc.ABC):
    def __init__(self, config: BackendConfig):
        self.config = config

    def check(self) -> None:  # noqa: B027 (a backend with nothing to check keeps this)
        """Fail now, with one clear line, on a configuration that cannot work (a missing model folder, ...)."""

    def start(self) -> None:  # noqa: B027 (a backend with nothing to bring up keeps this)
        """Bring the model up now (load its weights, start its engine) rather than at the first request."""

    @property
    def model_name(self) -> str:
        return self.config.model

    @abc.abstractmethod
    async def chat(self, request: ChatRequest) -> ChatResult: ...

    async def score(self, request: ChatRequest, letters: list[str]) -> dict[str, float]:
        """Probabilities of each letter as the first token of the reply, normalised over `letters`."""
        raise NotImplementedError(f"{type(self).__name__} cannot score letters")

    async def score_many(self, requests: list[ChatRequest], letters: list[list[str]]) -> list[dict[str, float]]:
        """Score many prompts at once; backends that batch across prompts override this."""
        import asyncio

        return list(await asyncio.gather(*(self.score(r, ls) for r, ls in zip(requests, letters))))

    async def aclose(self) -> None:
        return None
