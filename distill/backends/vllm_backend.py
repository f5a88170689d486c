"""vLLM's offline engine (the optional extra `[vllm]`; imported only when this backend is chosen).

- One engine per process and model, created once (under a lock), and one call into it at a time: two threads
  calling one engine abort the process. Concurrent callers are batched (`distill.backends.batching`), and a
  scoring call sends all its prompts in one `generate`.
- Prompts are rendered by the model's own chat template, as the in-process backend renders them, with the images
  after the shared image policy; vLLM expands the image placeholders itself.
- Letter scores are exact: the scored step may only produce the option letters (`allowed_token_ids`) and the
  engine reports log-probabilities after that restriction (`logprobs_mode="processed_logprobs"`), so every letter
  comes back with its probability. A letter missing from the reply is an error, never a uniform stand-in.
- Prefix caching is on: an item's rotations go into the same call one after another and share the prompt up to
  the first option (image2text: the cover and the question).
- The weights' dtype is always given: `auto` is bfloat16 on a GPU and float32 on a CPU, as in process (vLLM's own
  `auto` runs float32 weights in bfloat16 on a CPU).
- The engine's processes print their logs and tracebacks themselves: their output is held while the engine starts,
  and a failed start is one line (for lack of memory on a CPU, naming VLLM_CPU_KVCACHE_SPACE) with the held output
  saved to a file."""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import threading

from distill.backends.base import (
    Backend,
    BackendError,
    ChatRequest,
    ChatResult,
    image_paths,
    letter_distribution,
    require_local_model,
)
from distill.backends.batching import Batcher, Job
from distill.backends.config import BackendConfig
from distill.backends.held_output import held_output
from distill.data.images import cap_processor, load_image

log = logging.getLogger(__name__)
_engines: dict[tuple, tuple[object, threading.Lock]] = {}
_engines_lock = threading.Lock()


# vLLM's CPU worker refusing to start: "Available memory on node 0 (9.97/13.21 GiB) on startup is less than desired
# CPU memory utilization (0.92, 12.16 GiB). ..." (or "... on kv cache allocation is less than requested ...")
_CPU_MEMORY = re.compile(r"Available memory on node .+?\)(?=\.(?:\s|$))", re.MULTILINE)
# vLLM's GPU worker when another process holds memory: "Free memory on device cuda:0 (123.0/139.8 GiB) on startup ..."
_GPU_MEMORY = re.compile(
    r"Free memory on device \S+ \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on startup is less than desired GPU memory "
    r"utilization \([\d.]+, [\d.]+ GiB\)"
)
# The first exception a process reports: "ValueError: ...", "(EngineCore pid=7) ERROR ... [core.py:1] KeyError: ..."
_CAUSE = re.compile(r"(?:^|\] )(\w*(?:Error|Exception)): (.+)$", re.MULTILINE)


def engine_on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def engine_kwargs(config: BackendConfig, on_cpu: bool | None = None) -> dict:
    """Arguments of `vllm.LLM(...)`; `extra` adds or overrides any (gpu_memory_utilization, max_model_len,
    load_format, ...). `on_cpu`: where the engine runs (None: ask vLLM)."""
    on_cpu = engine_on_cpu() if on_cpu is None else on_cpu
    return {
        "model": config.model,
        "dtype": config.weights_dtype(on_gpu=not on_cpu),
        "max_model_len": 8192,
        "limit_mm_per_prompt": {"image": 4, "video": 0},
        "enable_prefix_caching": True,
        "mm_processor_kwargs": {"max_pixels": config.max_pixels},  # the processor rounds under the same cap
        "logprobs_mode": "processed_logprobs",
        "seed": 0,
        **({} if config.gpu_memory_utilization is None else {"gpu_memory_utilization": config.gpu_memory_utilization}),
        **config.extra,
    }


def start_failure(output: str, log_file: str) -> BackendError:
    """A failed engine start, from what its processes printed, as one line: the first exception they report, or,
    for a CPU engine short of memory, the setting that bounds what it takes."""
    gpu = _GPU_MEMORY.search(output)
    if gpu:
        free, total = float(gpu.group("free")), float(gpu.group("total"))
        return BackendError(
            f"the vLLM engine did not start for lack of GPU memory ({gpu.group(0)}): another process holds some of "
            f"the card; free it, or give the engine a smaller share (gpu_memory_utilization in a recipe's backend, "
            f"or --gpu-memory-utilization, e.g. "
            f"{max(0.05, int(100 * free / total - 2) / 100):.2f}); vLLM's output is in {log_file}"
        )
    memory = _CPU_MEMORY.search(output)
    if memory:
        return BackendError(
            f"the vLLM engine did not start for lack of memory ({memory.group(0)}): set VLLM_CPU_KVCACHE_SPACE to the "
            f"GiB its KV cache may take, within the free memory (e.g. VLLM_CPU_KVCACHE_SPACE=1 for a small model); "
            f"vLLM's output is in {log_file}"
        )
    cause = _CAUSE.search(output)
    what = f": {cause.group(1)}: {cause.group(2).strip().rstrip('.')}" if cause else ""
    return BackendError(f"the vLLM engine did not start{what}; vLLM's output is in {log_file}")


def start_engine(kwargs: dict):
    """`vllm.LLM(**kwargs)`, its processes' output held until it is up."""
    from vllm import LLM

    with held_output() as held:
        try:
            return LLM(**kwargs)
        except Exception as exc:
            output = held.release(write_held=False)
            with tempfile.NamedTemporaryFile("w", prefix="vllm-engine-", suffix=".log", delete=False) as f:
                f.write(output)
            raise start_failure(output, f.name) from exc


class VLLMBackend(Backend):
    def __init__(self, config: BackendConfig):
        super().__init__(config)
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise BackendError("the vllm backend needs the optional extra: pip install 'cover-distill[vllm]'") from exc
        self._batcher = Batcher(self._run, max(1, config.concurrency), lambda j: (j.kind,))
        self._processor = None
        self._images: dict[tuple, object] = {}

    def check(self) -> None:
        require_local_model(self.config.model)

    def start(self) -> None:
        _ = self.engine

    @property
    def engine(self) -> tuple[object, threading.Lock]:
        kw = engine_kwargs(self.config)
        key = tuple(sorted((k, repr(v)) for k, v in kw.items()))
        with _engines_lock:
            if key not in _engines:
                log.info("starting the vLLM engine for %s (dtype %s)", self.config.model, kw["dtype"])
                _engines[key] = (start_engine(kw), threading.Lock())
            return _engines[key]

    @property
    def processor(self):
        if self._processor is None:
            from transformers import AutoProcessor

            self._processor = AutoProcessor.from_pretrained(self.config.model)
            cap_processor(self._processor, self.config.max_pixels)
        return self._processor

    def image(self, path: str):
        """A policy-applied image, decoded once: an item's rotations and recurring distractors reuse it."""
        key = (path, self.config.max_pixels)
        if key not in self._images:
            if len(self._images) > 4096:
                self._images.clear()
            self._images[key] = load_image(path, self.config.max_pixels)
        return self._images[key]

    def prompt(self, request: ChatRequest) -> dict:
        """The chat template's text (one placeholder an image) and the policy-applied images."""
        from distill.backends.transformers_backend import to_hf_messages

        msgs, paths = to_hf_messages(request.messages, self.config.text_only)
        text = self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        prompt: dict = {"prompt": text}
        if paths:
            prompt["multi_modal_data"] = {"image": [self.image(p) for p in paths]}
        return prompt

    def prompts(self, requests: list[ChatRequest]) -> list[dict]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:  # decoding images releases the GIL
            list(pool.map(self.image, dict.fromkeys(p for r in requests for p in image_paths(r.messages))))
        return [self.prompt(r) for r in requests]

    def letter_ids(self, letters: list[str]) -> list[int]:
        ids = []
        for L in letters:
            tok = self.processor.tokenizer.encode(L, add_special_tokens=False)
            if len(tok) != 1:
                raise BackendError(f"letter {L!r} is not a single token")
            ids.append(tok[0])
        return ids

    def _generate(self, prompts: list[dict], params: list) -> list:
        llm, lock = self.engine
        with lock:
            return llm.generate(prompts, params, use_tqdm=False)

    def score_sync(self, requests: list[ChatRequest], letters: list[list[str]]) -> list[dict[str, float]]:
        from vllm import SamplingParams

        ids = [self.letter_ids(ls) for ls in letters]
        params = [SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=i, logprobs=len(i)) for i in ids]
        outs = self._generate(self.prompts(requests), params)
        probs = []
        for out, ls, i in zip(outs, letters, ids):
            first = out.outputs[0].logprobs[0]  # token id -> Logprob, after the restriction to the letters
            probs.append(letter_distribution({L: first[t].logprob for L, t in zip(ls, i) if t in first}, ls))
        return probs

    def chat_sync(self, requests: list[ChatRequest]) -> list[ChatResult]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = []
        for r in requests:
            kw: dict = {"max_tokens": r.max_tokens, "temperature": r.temperature}
            if r.seed is not None:
                kw["seed"] = r.seed
            if r.choices:
                kw["structured_outputs"] = StructuredOutputsParams(choice=list(r.choices))
            elif r.json_schema:
                kw["structured_outputs"] = StructuredOutputsParams(json=r.json_schema)
            params.append(SamplingParams(**kw))
        outs = self._generate(self.prompts(requests), params)
        return [
            ChatResult(
                text=o.outputs[0].text,
                prompt_tokens=len(o.prompt_token_ids or []),
                completion_tokens=len(o.outputs[0].token_ids),
                request={
                    "model": self.config.model,
                    "messages": r.messages,
                    "max_tokens": r.max_tokens,
                    "temperature": r.temperature,
                    "choices": r.choices,
                },
            )
            for r, o in zip(requests, outs)
        ]

    def _run(self, kind: str, jobs: list[Job]) -> list:
        if kind == "chat":
            return self.chat_sync([j.request for j in jobs])
        return self.score_sync([j.request for j in jobs], [j.letters for j in jobs])

    async def chat(self, request: ChatRequest) -> ChatResult:
        return await self._batcher.submit("chat", request)

    async def score(self, request: ChatRequest, letters: list[str]) -> dict[str, float]:
        return await self._batcher.submit("score", request, letters)

    async def score_many(self, requests: list[ChatRequest], letters: list[list[str]]) -> list[dict[str, float]]:
        """All of a call's prompts in one `generate`: vLLM schedules and batches them itself."""
        return await asyncio.to_thread(self.score_sync, requests, letters)
