"""vLLM's offline engine (optional extra `[vllm]`; never imported unless this backend is chosen).

Request building is plain Python and unit-tested without vLLM; the engine itself needs a GPU box."""

from __future__ import annotations

import asyncio

from distill.backends.base import Backend, BackendError, ChatRequest, ChatResult, letter_distribution
from distill.backends.config import BackendConfig
from distill.backends.openai_backend import to_openai_messages


def engine_kwargs(config: BackendConfig, max_images: int = 4) -> dict:
    """Arguments of `vllm.LLM(...)`: the image cap and max_pixels come from the shared policy."""
    return {"model": config.model, "limit_mm_per_prompt": {"image": max_images},
            "mm_processor_kwargs": {"max_pixels": config.max_pixels}, "dtype": "bfloat16",
            "max_model_len": 8192, **config.extra}


def sampling_kwargs(request: ChatRequest, logprobs: int | None = None) -> dict:
    """Arguments of `vllm.SamplingParams(...)`; `choices` become structured outputs."""
    kw: dict = {"max_tokens": request.max_tokens, "temperature": request.temperature}
    if request.seed is not None:
        kw["seed"] = request.seed
    if request.choices:
        kw["structured_outputs"] = {"choice": list(request.choices)}
    if request.json_schema:
        kw["structured_outputs"] = {"json": request.json_schema}
    if logprobs:
        kw["logprobs"] = logprobs
    return kw




class VLLMBackend(Backend):
    def __init__(self, config: BackendConfig):
        super().__init__(config)
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise BackendError("the vllm backend needs the optional extra: pip install 'cover-distill[vllm]'") from exc
        self._llm = None

    @property
    def llm(self):
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(**engine_kwargs(self.config))
        return self._llm

    def _run(self, requests: list[ChatRequest], logprobs: int | None = None):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = []
        for r in requests:
            kw = sampling_kwargs(r, logprobs)
            if "structured_outputs" in kw:
                kw["structured_outputs"] = StructuredOutputsParams(**kw["structured_outputs"])
            params.append(SamplingParams(**kw))
        convs = [to_openai_messages(r.messages, self.config.max_pixels, self.config.text_only) for r in requests]
        return self.llm.chat(convs, params, use_tqdm=False)

    async def chat(self, request: ChatRequest) -> ChatResult:
        out = (await asyncio.to_thread(self._run, [request]))[0]
        c = out.outputs[0]
        return ChatResult(text=c.text, prompt_tokens=len(out.prompt_token_ids or []),
                          completion_tokens=len(c.token_ids), request={"messages": request.messages})

    async def score(self, request: ChatRequest, letters: list[str]) -> dict[str, float]:
        req = ChatRequest(request.messages, max_tokens=1, temperature=0.0)
        out = (await asyncio.to_thread(self._run, [req], 20))[0]
        first = out.outputs[0].logprobs[0]
        return letter_distribution({lp.decoded_token.strip(): lp.logprob for lp in first.values()}, letters)
