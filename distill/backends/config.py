"""How to reach a model: one validated section of a recipe (`teacher.describer`, `teacher.reasoner`, predict)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from distill.data.images import DEFAULT_MAX_PIXELS


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    backend: Literal["transformers", "openai", "vllm", "scripted"] = "transformers"
    model: str = "runs/demo/tiny-model"
    # openai: one server, or several replicas of the same model (requests go to the least busy live one)
    base_url: str | list[str] | None = None
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never stored
    max_pixels: int = DEFAULT_MAX_PIXELS
    timeout_s: float = 600.0
    max_retries: int = 5  # openai: the client's own retries; every backend: retries of a transient failure
    concurrency: int = 8  # openai: requests in flight; transformers: largest batch
    structured: Literal["none", "choice", "json_schema"] = "none"  # how to force a final letter
    # openai: how letters are scored. allowed_tokens (a vLLM server): the scored step may only produce the option
    # letters, so all come back, exactly; top_logprobs (any server): they must be among its top 20
    scoring: Literal["top_logprobs", "allowed_tokens"] = "top_logprobs"
    text_only: bool = False  # a text-only model (DAD reasoner): send descriptions, never images
    device: str = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    # transformers on CUDA: the vision tower's windows in one varlen flash call per layer (False: per-window SDPA)
    varlen_vision: bool = True
    extra: dict = {}  # engine keyword arguments (vLLM: gpu_memory_utilization, max_model_len, ...)

    @field_validator("base_url")
    @classmethod
    def _urls(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("base_url: give at least one URL")
        return v

    @property
    def base_urls(self) -> list[str]:
        if self.base_url is None:
            return []
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)
