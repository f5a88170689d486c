"""Building a backend from its recipe section."""

from __future__ import annotations

from distill.backends.base import Backend
from distill.backends.config import BackendConfig
from distill.errors import UserError


def make_backend(config: BackendConfig | dict) -> Backend:
    if isinstance(config, dict):
        config = BackendConfig(**config)
    if not config.model:
        raise UserError(
            f"a {config.backend} backend with no model named: set its `model` (e.g. teacher.reasoner.model)"
        )
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
