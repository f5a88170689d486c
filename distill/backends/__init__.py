"""Model backends behind one small interface: OpenAI-compatible HTTP, in-process transformers, vLLM."""

from distill.backends.base import Backend, BackendConfig, BackendError, ChatRequest, ChatResult, make_backend

__all__ = ["Backend", "BackendConfig", "BackendError", "ChatRequest", "ChatResult", "make_backend"]
