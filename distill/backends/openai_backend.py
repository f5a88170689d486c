"""Any OpenAI-compatible server: `vllm serve`, `transformers serve`, hosted APIs; one or several replicas.

Requests in flight are bounded by the HTTP client's connection pool (`concurrency` connections a replica). With
one server, the `openai` client's own retries (exponential backoff on 429/5xx/timeouts) handle failures. With
several replicas of one model, each request goes to the live replica with the fewest requests outstanding; a
replica that cannot be reached is set aside for a while and the request moves to another (the client's own
retries would keep it on the dead one)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from distill.backends.base import Backend, BackendError, ChatRequest, ChatResult, letter_distribution
from distill.backends.config import BackendConfig
from distill.data.images import data_url
from distill.secrets import redact, register_env

log = logging.getLogger(__name__)
DEAD_FOR_S = 30.0  # how long an unreachable replica is set aside before it is tried again
# token ids of the option letters per (server roots, model): looked up once a process, not once a request
_LETTER_IDS: dict[tuple[tuple[str, ...], str], dict[str, int]] = {}


def _root(url: str) -> str:
    """A server's root from its OpenAI base URL (`http://host:8000/v1` -> `http://host:8000`)."""
    return url.rstrip("/").removesuffix("/v1")


def to_openai_messages(messages: list[dict], max_pixels: int, text_only: bool = False) -> list[dict]:
    out = []
    for m in messages:
        if isinstance(m["content"], str):
            out.append({"role": m["role"], "content": m["content"]})
            continue
        parts = []
        for p in m["content"]:
            if p["type"] == "text":
                parts.append({"type": "text", "text": p["text"]})
            elif p["type"] == "image" and not text_only:
                parts.append({"type": "image_url", "image_url": {"url": data_url(p["image"], max_pixels)}})
        if all(p["type"] == "text" for p in parts):
            out.append({"role": m["role"], "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": m["role"], "content": parts})
    return out


def build_chat_kwargs(config: BackendConfig, request: ChatRequest) -> dict:
    """The keyword arguments of `chat.completions.create` for one request (unit-tested)."""
    kw: dict = {
        "model": config.model,
        "messages": to_openai_messages(request.messages, config.max_pixels, config.text_only),
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.seed is not None:
        kw["seed"] = request.seed
    extra: dict = {}
    if request.choices and config.structured == "choice":
        extra["structured_outputs"] = {"choice": request.choices}  # vLLM structured outputs
    if request.json_schema and config.structured in ("json_schema", "choice"):
        kw["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": request.json_schema, "strict": True},
        }
    if extra:
        kw["extra_body"] = extra
    return kw


def score_kwargs(
    config: BackendConfig, request: ChatRequest, letters: list[str], letter_ids: list[int] | None = None
) -> dict:
    """One scored step: the first token's log-probabilities. Given the letters' token ids (a vLLM server), the
    step may only produce those, and the server reports their distribution after that restriction."""
    kw = build_chat_kwargs(config, ChatRequest(request.messages, max_tokens=1, temperature=0.0))
    if letter_ids:
        kw.update(logprobs=True, top_logprobs=len(letters))
        kw["extra_body"] = kw.get("extra_body", {}) | {"allowed_token_ids": letter_ids}
    else:
        kw.update(logprobs=True, top_logprobs=20)
    return kw


@dataclass
class _Replica:
    url: str
    client: object
    outstanding: int = 0
    dead_until: float = 0.0
    served: int = 0


class OpenAIBackend(Backend):
    def __init__(self, config: BackendConfig):
        super().__init__(config)
        if not config.base_urls:
            raise BackendError("the openai backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replicas: list[_Replica] = []
        self._lookup = asyncio.Lock()
        register_env(config.api_key_env)  # a server may echo the key in an error: it is cut out of every error

    def _clients(self) -> list[_Replica]:
        """Clients belong to the event loop that made them: a new loop (a second `asyncio.run`) gets new ones."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            import httpx
            from openai import AsyncOpenAI, DefaultAsyncHttpxClient

            c = self.config
            key = register_env(c.api_key_env) or "EMPTY"
            retries = c.max_retries if len(c.base_urls) == 1 else 0
            self._replicas = [
                _Replica(
                    url,
                    AsyncOpenAI(
                        base_url=url,
                        api_key=key,
                        max_retries=retries,
                        timeout=httpx.Timeout(c.timeout_s, pool=None),
                        http_client=DefaultAsyncHttpxClient(
                            limits=httpx.Limits(max_connections=c.concurrency, max_keepalive_connections=c.concurrency)
                        ),
                    ),
                )
                for url in c.base_urls
            ]
            self._lookup = asyncio.Lock()  # a lock belongs to its event loop, as the clients do
            self._loop = loop
        return self._replicas

    async def _create(self, kw: dict):
        return await self._call(lambda client: client.chat.completions.create(**kw))

    async def _call(self, send):
        """`send(client)` on a live replica, under the backend's one retry policy: one server, the client's own
        retries (exponential backoff on 429/5xx/timeouts/lost connections); several, the next live replica."""
        import openai

        replicas = self._clients()
        tried: set[str] = set()
        errors = []
        for round_ in range(1 + (self.config.max_retries if len(replicas) > 1 else 0)):
            now = time.monotonic()
            live = [r for r in replicas if r.url not in tried and r.dead_until <= now] or [
                r for r in replicas if r.url not in tried
            ]
            if not live:  # every replica failed this request: wait, then try them all again
                tried.clear()
                await asyncio.sleep(min(30.0, 0.5 * 2**round_))
                continue
            r = min(live, key=lambda x: (x.outstanding, x.dead_until))
            r.outstanding += 1
            try:
                resp = await send(r.client)
                r.served += 1
                return resp
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                errors.append(redact(f"{r.url}: {type(exc).__name__}: {exc}"))
                if len(replicas) == 1:
                    break
                r.dead_until = time.monotonic() + DEAD_FOR_S
                tried.add(r.url)
                log.warning("replica %s unreachable (%s); set aside for %.0fs", r.url, redact(str(exc)), DEAD_FOR_S)
            except openai.OpenAIError as exc:  # an error body may echo the key (some proxies' 401s do)
                raise BackendError(redact(f"{r.url}: {type(exc).__name__}: {exc}")) from None
            finally:
                r.outstanding -= 1
        raise BackendError("; ".join(errors[-3:]) or "no replica answered")

    async def chat(self, request: ChatRequest) -> ChatResult:
        kw = build_chat_kwargs(self.config, request)
        resp = await self._create(kw)
        choice = resp.choices[0]
        usage = resp.usage
        return ChatResult(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            request=kw,
        )

    async def letter_ids(self, letters: list[str]) -> list[int]:
        """Token ids of the letters, from a vLLM server's /tokenize: looked up once per (server, model) and letter
        for the whole process, one lookup at a time however many requests wait for it, each under the same retry
        policy as every other call (`_call`)."""
        key = (tuple(_root(u) for u in self.config.base_urls), self.config.model)
        known = _LETTER_IDS.setdefault(key, {})
        if any(L not in known for L in letters):
            self._clients()
            async with self._lookup:  # the requests that arrive meanwhile wait for this lookup, then reuse it
                for L in letters:
                    if L not in known:
                        known[L] = await self._tokenize_letter(L)
        return [known[L] for L in letters]

    async def _tokenize_letter(self, letter: str) -> int:
        body = {"model": self.config.model, "prompt": letter, "add_special_tokens": False}
        root = _root(self.config.base_urls[0])
        try:
            # an absolute URL: the client sends it as it is (the server's root, not base_url's /v1)
            resp = await self._call(
                lambda client: client.post(f"{_root(str(client.base_url))}/tokenize", cast_to=object, body=body)
            )
        except BackendError as exc:
            raise BackendError(
                f"looking up the token id of letter {letter!r} at {root}/tokenize failed: {exc} (scoring: "
                "allowed_tokens needs a vLLM server)"
            ) from None
        tokens = resp.get("tokens") if isinstance(resp, dict) else None
        if not tokens or len(tokens) != 1:
            raise BackendError(
                redact(
                    f"{root}/tokenize gave {tokens!r} for letter {letter!r}: scoring: allowed_tokens needs a vLLM "
                    "server whose tokenizer has each letter as one token"
                )
            )
        return int(tokens[0])

    async def score(self, request: ChatRequest, letters: list[str]) -> dict[str, float]:
        ids = await self.letter_ids(letters) if self.config.scoring == "allowed_tokens" else None
        resp = await self._create(score_kwargs(self.config, request, letters, ids))
        content = resp.choices[0].logprobs.content if resp.choices[0].logprobs else None
        if not content:
            raise BackendError("the server returned no logprobs")
        top: dict[str, float] = {}
        for t in content[0].top_logprobs:  # "A" and " A" are both the letter A
            tok = t.token.strip()
            if tok in letters:
                top[tok] = math.log(math.exp(top[tok]) + math.exp(t.logprob)) if tok in top else t.logprob
        return letter_distribution(top, letters)

    async def aclose(self) -> None:
        for r in self._replicas:
            await r.client.close()
        self._replicas, self._loop = [], None
