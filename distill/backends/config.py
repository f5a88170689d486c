"""How to reach a model: one validated section of a recipe (`teacher.describer`, `teacher.reasoner`, predict)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from distill.data.images import DEFAULT_MAX_PIXELS


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    backend: Literal["transformers", "openai", "vllm"] = Field(
        "transformers",
        description="transformers (CPU or GPU, in process) | vllm (GPU, in process) | openai (a server).",
    )
    model: str = Field(
        "", description="The model: a local folder (transformers, vllm) or the name its server knows (openai)."
    )
    base_url: str | list[str] | None = Field(
        None,
        description="openai: the server's URL, or several replicas of one model (requests go to the least busy live "
        "one).",
    )
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never stored
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, description="Image cap (use the one the model trained or serves at).")
    timeout_s: float = 600.0
    max_retries: int = 5  # openai: the client's own retries; every backend: retries of a transient failure
    concurrency: int = Field(8, description="Requests in flight (openai); largest batch (transformers).")
    structured: Literal["none", "choice", "json_schema"] = "none"  # how to force a final letter
    scoring: Literal["top_logprobs", "allowed_tokens"] = Field(
        "top_logprobs",
        description="openai: how letters are scored. allowed_tokens (a vLLM server): the scored step may only produce "
        "the option letters, so all come back, exactly; top_logprobs (any server): they must be among its top 20.",
    )
    text_only: bool = False  # a text-only model (DAD reasoner): send descriptions, never images
    device: str = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="The weights' dtype (transformers, vllm); auto: bfloat16 on a GPU, float32 on a CPU (vLLM is "
        "given it: its own auto would run float32 weights in bfloat16 on a CPU).",
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="vllm: the share of the GPU's memory the engine takes (default: vLLM's, 0.92); lower it when "
        "another process holds some of the card.",
    )
    # transformers on CUDA: the vision tower's windows in one varlen flash call per layer (False: per-window SDPA)
    varlen_vision: bool = True
    extra: dict = {}  # more engine keyword arguments (vLLM: max_model_len, load_format, ...); they win over the above

    @field_validator("base_url")
    @classmethod
    def _urls(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("base_url: give at least one URL")
        return v

    def weights_dtype(self, on_gpu: bool) -> str:
        """`dtype` with `auto` decided: bfloat16 on a GPU, float32 on a CPU."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if on_gpu else "float32"

    @property
    def base_urls(self) -> list[str]:
        if self.base_url is None:
            return []
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)
