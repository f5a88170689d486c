"""Building a backend from its recipe section."""

from __future__ import annotations

from distill.backends.base import Backend
from distill.backends.config import BackendConfig


def make_backend(config: BackendConfig | dict) -> Backend:
    if isinstance(config, dict):
        config = BackendConfig(**config)
    if config.backend == "openai":
        from distill.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    if config.backend == "transformers":
        from distill.backends.transformers_backend import TransformersBackend

        return TransformersBackend(config)
    if config.backend == "vllm":
        from distill.backends.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    raise ValueError(f"backend {config.backend!r} cannot be built from a config (scripted backends are for tests)")
