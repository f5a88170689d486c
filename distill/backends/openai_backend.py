"""Any OpenAI-compatible server: `vllm serve`, `transformers serve`, hosted APIs; one or several replicas.

Requests in flight are bounded by the HTTP client's connection pool (`concurrency` connections a replica). With
one server, the `openai` client's own retries (exponential backoff on 429/5xx/timeouts) handle failures. With
several replicas of one model, each request goes to the live replica with the fewest requests outstanding; a
replica that cannot be reached is set aside for a while and the request moves to another (the client's own
retries would keep it on the dead one)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass

from distill.backends.base import Backend, BackendError, ChatRequest, ChatResult, image_paths, letter_distribution
from distill.backends.config import BackendConfig
from distill.backends.covers import COVERS
from distill.secrets import api_key, redact, register_env

log = logging.getLogger(__name__)
DEAD_FOR_S = 30.0  # how long an unreachable replica is set aside before it is tried again
# token ids of the option letters per (server roots, model): looked up once a process, not once a request
_LETTER_IDS: dict[tuple[tuple[str, ...], str], dict[str, int]] = {}


def _root(url: str) -> str:
    """A server's root from its OpenAI base URL (`http://host:8000/v1` -> `http://host:8000`)."""
    return url.rstrip("/").removesuffix("/v1")


def to_openai_messages(
    messages: list[dict], max_pixels: int, text_only: bool = False, urls: dict[str, str] | None = None
) -> list[dict]:
    """`urls`: the covers' data URLs by path, fetched beforehand (`COVERS.urls`); others are looked up here."""
    urls = urls or {}
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
                url = urls.get(p["image"]) or COVERS.url(p["image"], max_pixels)
                parts.append({"type": "image_url", "image_url": {"url": url}})
        if all(p["type"] == "text" for p in parts):
            out.append({"role": m["role"], "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": m["role"], "content": parts})
    return out


def build_chat_kwargs(config: BackendConfig, request: ChatRequest, urls: dict[str, str] | None = None) -> dict:
    """The keyword arguments of `chat.completions.create` for one request (unit-tested)."""
    kw: dict = {
        "model": config.model,
        "messages": to_openai_messages(request.messages, config.max_pixels, config.text_only, urls),
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
    config: BackendConfig,
    request: ChatRequest,
    letters: list[str],
    letter_ids: list[int] | None = None,
    urls: dict[str, str] | None = None,
) -> dict:
    """One scored step: the first token's log-probabilities. Given the letters' token ids (a vLLM server), the
    step may only produce those, and the server reports their distribution after that restriction."""
    kw = build_chat_kwargs(config, ChatRequest(request.messages, max_tokens=1, temperature=0.0), urls)
    if letter_ids:
        kw.update(logprobs=True, top_logprobs=len(letters))
        kw["extra_body"] = kw.get("extra_body", {}) | {"allowed_token_ids": letter_ids}
    else:
        kw.update(logprobs=True, top_logprobs=20)
    return kw


_COVER_MARK = "\x00cover\x00"  # stands for a data URL while the rest of a body is encoded
_COVER_MARK_JSON = json.dumps(_COVER_MARK)[1:-1].encode()


def request_body(kw: dict) -> bytes:
    """`kw` (build_chat_kwargs) as the JSON body the server gets, `extra_body` merged in. The covers' data URLs,
    megabytes a request, are joined in as they are instead of passing through the JSON encoder on every request:
    base64 needs no escaping."""
    body = {k: v for k, v in kw.items() if k != "extra_body"} | kw.get("extra_body", {})
    urls: list[str] = []
    marked = body | {"messages": [_marked(m, urls) for m in body["messages"]]}
    head = json.dumps(marked, ensure_ascii=False, separators=(",", ":")).encode()
    pieces = head.split(_COVER_MARK_JSON)
    if len(pieces) != len(urls) + 1 or not all(u.isascii() and u.startswith("data:") for u in urls):
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()  # the mark in a text: no joins
    joined = [pieces[0]]
    for url, piece in zip(urls, pieces[1:]):
        joined += [url.encode("ascii"), piece]
    return b"".join(joined)


def _marked(message: dict, urls: list[str]) -> dict:
    """The message with each image part's URL moved to `urls` and a mark in its place."""
    if isinstance(message["content"], str):
        return message
    parts = []
    for p in message["content"]:
        if p.get("type") == "image_url":
            urls.append(p["image_url"]["url"])
            p = p | {"image_url": p["image_url"] | {"url": _COVER_MARK}}
        parts.append(p)
    return message | {"content": parts}


def reply_json(raw: bytes) -> dict:
    """A chat completion as plain JSON (read here rather than into the client's typed models: fewer round trips)."""
    try:
        reply = json.loads(raw)
    except ValueError:
        raise BackendError(redact(f"the server's reply is not JSON: {raw[:200]!r}")) from None
    if not isinstance(reply, dict) or not reply.get("choices"):
        raise BackendError(redact(f"the server's reply holds no choices: {raw[:200]!r}"))
    return reply


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
        # a server may echo the key in an error: it is cut out of every error; a key no HTTP header can carry is
        # one clear error now, not an encoding error at the first request
        api_key(config.api_key_env)

    def _clients(self) -> list[_Replica]:
        """Clients belong to the event loop that made them: a new loop (a second `asyncio.run`) gets new ones."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            import httpx
            from openai import AsyncOpenAI, DefaultAsyncHttpxClient

            from distill.backends.lanes import pooled

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
                        http_client=DefaultAsyncHttpxClient(**pooled(c.concurrency)),
                    ),
                )
                for url in c.base_urls
            ]
            self._lookup = asyncio.Lock()  # a lock belongs to its event loop, as the clients do
            self._loop = loop
        return self._replicas

    async def _create(self, kw: dict) -> dict:
        """One chat completion, as the server's JSON. The `openai` client sends a body built once (request_body) and
        hands back the reply's bytes: its per-request transform of the arguments and its typed reply model cost more
        than the request itself against a fast server; its retries, errors and connection pool are kept."""
        body = request_body(kw)
        raw = await self._call(lambda client: client.post("/chat/completions", cast_to=bytes, content=body))
        return reply_json(raw)

    async def _cover_urls(self, request: ChatRequest) -> dict[str, str]:
        """The request's covers as data URLs, encoded off the event loop where no one has yet."""
        if self.config.text_only:
            return {}
        return await COVERS.urls(image_paths(request.messages), self.config.max_pixels)

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
        kw = build_chat_kwargs(self.config, request, await self._cover_urls(request))
        reply = await self._create(kw)
        usage = reply.get("usage") or {}
        return ChatResult(
            text=(reply["choices"][0].get("message") or {}).get("content") or "",
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
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
        reply = await self._create(score_kwargs(self.config, request, letters, ids, await self._cover_urls(request)))
        content = (reply["choices"][0].get("logprobs") or {}).get("content")
        if not content:
            raise BackendError("the server returned no logprobs")
        top: dict[str, float] = {}
        for t in content[0].get("top_logprobs") or []:  # "A" and " A" are both the letter A
            tok, logprob = t["token"].strip(), t["logprob"]
            if tok in letters:
                top[tok] = math.log(math.exp(top[tok]) + math.exp(logprob)) if tok in top else logprob
        return letter_distribution(top, letters)

    async def aclose(self) -> None:
        for r in self._replicas:
            await r.client.close()
        self._replicas, self._loop = [], None
