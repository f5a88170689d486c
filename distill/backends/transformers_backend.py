"""In-process transformers: batched generation and one-pass letter scoring (concurrent callers are batched by
`distill.backends.batching`)."""

from __future__ import annotations

import asyncio
import logging
import threading

from distill.backends.base import Backend, BackendError, ChatRequest, ChatResult
from distill.backends.batching import Batcher, Job
from distill.backends.config import BackendConfig
from distill.backends.vision_attention import use_varlen_vision_attention
from distill.data.images import cap_processor, load_image

log = logging.getLogger(__name__)


def to_hf_messages(messages: list[dict], text_only: bool = False) -> tuple[list[dict], list[str]]:
    """Neutral messages -> (messages for the chat template, image paths in order)."""
    out, images = [], []
    for m in messages:
        if isinstance(m["content"], str):
            out.append({"role": m["role"], "content": [{"type": "text", "text": m["content"]}]})
            continue
        parts = []
        for p in m["content"]:
            if p["type"] == "image":
                if not text_only:
                    parts.append({"type": "image"})
                    images.append(p["image"])
            else:
                parts.append({"type": "text", "text": p["text"]})
        out.append({"role": m["role"], "content": parts})
    return out, images


class Model:
    """A loaded model + processor with batched generate/score; thread-safe through one lock."""

    def __init__(self, config: BackendConfig, model=None, processor=None):
        """Load `config.model`, or wrap an already loaded model and processor (validation during training)."""
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.config = config
        if model is not None:
            self.device = str(next(model.parameters()).device)
        else:
            self.device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
        dtype = {
            "auto": torch.bfloat16 if self.device.startswith("cuda") else torch.float32,
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
            "float32": torch.float32,
        }[config.dtype]
        self.processor = processor or AutoProcessor.from_pretrained(config.model)
        cap_processor(self.processor, config.max_pixels)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.model = (
            model
            if model is not None
            else AutoModelForImageTextToText.from_pretrained(config.model, dtype=dtype).to(self.device).eval()
        )
        if model is None and config.varlen_vision:
            use_varlen_vision_attention(self.model)
        self.lock = threading.Lock()
        self._letter_ids: dict[str, int] = {}

    def encode(self, requests: list[ChatRequest]):
        texts, images = [], []
        for r in requests:
            msgs, paths = to_hf_messages(r.messages, self.config.text_only)
            texts.append(self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
            images.extend(load_image(p, self.config.max_pixels) for p in paths)
        enc = self.processor(text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt")
        return enc.to(self.device)

    def encode_cached(self, requests: list[ChatRequest], cache) -> tuple[dict, list[str]]:
        """Like `encode` (on the CPU), with each image preprocessed once; also returns the batch's image paths,
        which the caller hands to the cache right before the forward pass."""
        import torch

        texts, paths = [], []
        for r in requests:
            msgs, ps = to_hf_messages(r.messages, self.config.text_only)
            text = self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            texts.append(cache.expand(text, ps))
            paths.extend(ps)
        enc = self.tokenizer(texts, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False)
        image_id = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        enc["mm_token_type_ids"] = (enc["input_ids"] == image_id).to(torch.int32)
        enc.update(cache.inputs(paths))
        return enc, paths

    def score_sorted(
        self, requests: list[ChatRequest], letters: list[list[str]], batch_size: int, share_vision: bool = True
    ) -> list[dict[str, float]]:
        """Score many prompts: batches of similar length (little padding), each image encoded once, and the
        next batch prepared on the CPU while the current one runs on the device."""
        from concurrent.futures import ThreadPoolExecutor

        import torch

        from distill.backends.vision_cache import VisionCache

        def length(r: ChatRequest) -> int:
            return sum(
                len(p.get("text", "")) + 1000 * (p["type"] == "image")
                for m in r.messages
                if isinstance(m["content"], list)
                for p in m["content"]
            )

        self.letter_ids(sorted({L for ls in letters for L in ls}))  # before the thread that tokenizes batches starts
        order = sorted(range(len(requests)), key=lambda i: length(requests[i]))
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        cache = VisionCache(self.model, self.processor, self.config.max_pixels)

        def prepare(idx: list[int]):
            if share_vision:
                return self.encode_cached([requests[i] for i in idx], cache)
            paths = [p for i in idx for p in to_hf_messages(requests[i].messages, self.config.text_only)[1]]
            return self.encode([requests[i] for i in idx]).to("cpu"), paths

        pending: list[tuple[list[int], object]] = []
        with self.lock, torch.inference_mode(), cache.active(), ThreadPoolExecutor(1) as pool:
            future = pool.submit(prepare, batches[0]) if batches else None
            for b, idx in enumerate(batches):
                enc, paths = future.result()
                if b + 1 < len(batches):
                    future = pool.submit(prepare, batches[b + 1])
                cache.batch_keys = paths
                if not share_vision:
                    cache.features.clear()
                logits = self.model(**enc.to(self.device), logits_to_keep=1).logits[:, -1, :].float()
                rows = self.letter_probs(logits, [letters[i] for i in idx])
                pending.append((idx, rows))  # stays on the device: no sync until every batch is queued
        out: list[dict | None] = [None] * len(requests)
        for idx, rows in pending:
            for i, row in zip(idx, rows):
                out[i] = dict(zip(letters[i], row.tolist()))
        return out  # type: ignore[return-value]

    def letter_ids(self, letters: list[str]) -> list[int]:
        """Each letter's token id, tokenized once: a fast tokenizer's padding setting is shared state, so encoding
        a letter while another thread pads a batch (score_sorted's next batch) can leave that batch unpadded."""
        for L in letters:
            if L not in self._letter_ids:
                tok = self.tokenizer.encode(L, add_special_tokens=False)
                if len(tok) != 1:
                    raise BackendError(f"letter {L!r} is not a single token")
                self._letter_ids[L] = tok[0]
        return [self._letter_ids[L] for L in letters]

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        import torch

        first = requests[0]
        with self.lock, torch.inference_mode():
            enc = self.encode(requests)
            kw = dict(
                max_new_tokens=max(r.max_tokens for r in requests),
                do_sample=first.temperature > 0,
                use_cache=True,  # a model in training may have switched its cache off
                pad_token_id=self.tokenizer.pad_token_id,
            )
            if first.temperature > 0:
                kw["temperature"] = first.temperature
            if first.seed is not None:
                torch.manual_seed(first.seed)
            out = self.model.generate(**enc, **kw)
        new = out[:, enc["input_ids"].shape[1] :]
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        eos = set(self.model.generation_config.eos_token_id or []) | {self.tokenizer.pad_token_id}
        results = []
        for i, r in enumerate(requests):
            ids = new[i].tolist()[: r.max_tokens]
            n = next((k for k, t in enumerate(ids) if t in eos), len(ids))
            results.append(
                ChatResult(
                    text=self.tokenizer.decode(ids[:n], skip_special_tokens=True),
                    prompt_tokens=int(prompt_lens[i]),
                    completion_tokens=n,
                    request={
                        "model": self.config.model,
                        "messages": r.messages,
                        "max_tokens": r.max_tokens,
                        "temperature": r.temperature,
                    },
                )
            )
        return results

    def score(self, requests: list[ChatRequest], letters: list[list[str]]) -> list[dict[str, float]]:
        import torch

        with self.lock, torch.inference_mode():
            enc = self.encode(requests)
            logits = self.model(**enc, logits_to_keep=1).logits[:, -1, :].float()
        rows = self.letter_probs(logits, letters)
        return [dict(zip(ls, row.tolist())) for ls, row in zip(letters, rows)]

    def letter_probs(self, logits, letters: list[list[str]]) -> list:
        """Per row, the probabilities of its option letters as the next token, renormalised over them
        (tensors, left on the device)."""
        import torch

        logp = torch.log_softmax(logits, dim=-1)
        return [torch.softmax(logp[row, self.letter_ids(ls)], dim=-1) for row, ls in enumerate(letters)]


class TransformersBackend(Backend):
    _models: dict[tuple, Model] = {}
    _load_lock = threading.Lock()  # agents load in worker threads; one load at a time

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        # one generate() call samples at one temperature (and seeds the batch with its first request's seed)
        self._batcher = Batcher(self._run, config.concurrency, lambda j: (j.kind, j.request.temperature))

    def start(self) -> None:
        self.check()  # loads it, a failure in one line

    def check(self) -> None:
        """The folder exists and the model loads (agents that name the same model share one copy)."""
        from distill.backends.base import require_local_model

        require_local_model(self.config.model)
        try:
            _ = self.model  # loads it
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load the model {self.config.model!r}: {exc}") from None

    @property
    def model(self) -> Model:
        key = (self.config.model, self.config.device, self.config.dtype, self.config.text_only, self.config.max_pixels)
        with self._load_lock:
            if key not in self._models:  # agents that name the same model share one copy of it
                log.info("loading %s", self.config.model)
                self._models[key] = Model(self.config)
            return self._models[key]

    async def score_many(self, requests: list[ChatRequest], letters: list[list[str]]) -> list[dict[str, float]]:
        model = await asyncio.to_thread(lambda: self.model)
        return await asyncio.to_thread(model.score_sorted, requests, letters, self.config.concurrency)

    async def chat(self, request: ChatRequest) -> ChatResult:
        if request.choices:  # a forced choice of single-token strings, sampled at the request's temperature
            probs = await self._batcher.submit("score", request, list(request.choices))
            if request.temperature > 0:
                import random

                weights = [p ** (1.0 / request.temperature) for p in probs.values()]
                best = random.Random(request.seed).choices(list(probs), weights=weights)[0]
            else:
                best = max(probs, key=probs.get)
            return ChatResult(
                text=best,
                completion_tokens=1,
                request={
                    "model": self.config.model,
                    "messages": request.messages,
                    "choices": request.choices,
                    "probs": probs,
                },
            )
        return await self._batcher.submit("chat", request)

    async def score(self, request: ChatRequest, letters: list[str]) -> dict[str, float]:
        return await self._batcher.submit("score", request, letters)

    def _run(self, kind: str, jobs: list[Job]) -> list:
        if kind == "chat":
            return self.model.generate([j.request for j in jobs])
        return self.model.score([j.request for j in jobs], [j.letters for j in jobs])
