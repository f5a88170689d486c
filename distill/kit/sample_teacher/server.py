"""The sample-cover teacher behind an OpenAI-compatible HTTP API, the way `vllm serve` puts a real teacher.

Served: `GET /health`, `GET /v1/models`, `POST /v1/chat/completions` with what the `openai` client sends:
string or part messages (text, `image_url` as a base64 data URL), `max_tokens` (replies are cut there, with
finish_reason "length"), `temperature` and `seed` (at temperature > 0 each request is a sample of its own, the
same again for the same seed; at temperature 0 the teacher is deterministic), `logprobs` and
`top_logprobs` (a question's first token carries the teacher's belief over the option letters), vLLM's
`structured_outputs: {"choice": [...]}` (and the older `guided_choice`), and a `response_format` json_schema
(or `structured_outputs: {"json": ...}`) answered as {"reasoning", "answer"}. Valid only on the sample covers
of `distill.kit.sample_data`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

from distill.data.images import image_tokens
from distill.kit.sample_teacher.reasoning import Reply, Teacher

TOKEN_RE = re.compile(r"\w+|[^\w\s]")  # a stand-in tokenizer: words and punctuation marks


class BadRequest(ValueError):
    pass


def create_app(teacher: Teacher, model: str = "sample-teacher") -> FastAPI:
    app = FastAPI(title="sample-cover teacher")
    app.state.teacher, app.state.model = teacher, model
    created = int(time.time())

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": model, "object": "model", "created": created, "owned_by": "cover-distill"}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await request.json()
            return await run_in_threadpool(complete, teacher, body, model)  # reading covers takes a while
        except BadRequest as exc:
            return JSONResponse(
                status_code=400,
                content={"error": {"message": str(exc), "type": "invalid_request_error", "param": None, "code": None}},
            )
        except ValueError as exc:  # a body that is not JSON
            return JSONResponse(
                status_code=400,
                content={"error": {"message": f"invalid request body: {exc}", "type": "invalid_request_error"}},
            )

    return app


def complete(teacher: Teacher, body: Any, model: str) -> dict:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise BadRequest("'messages' must be a non-empty list")
    if body.get("stream"):
        raise BadRequest("streaming is not supported")
    if body.get("n", 1) != 1:
        raise BadRequest("only n=1 is supported")
    messages, image_cost = _messages(body["messages"])
    structured = body.get("structured_outputs") if isinstance(body.get("structured_outputs"), dict) else {}
    choices = structured.get("choice") or body.get("guided_choice")
    if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
        raise BadRequest("structured_outputs.choice must be a list of strings")
    sample = ""  # at temperature > 0 a seed names a sample of its own; no seed: a fresh one each time
    if (body.get("temperature") or 0) > 0 and body.get("max_tokens", 2) > 1:
        sample = f"seed {body['seed']}" if body.get("seed") is not None else uuid.uuid4().hex
    reply = teacher.respond(messages, choices=choices, json_answer=_wants_json(body), sample=sample)
    max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096)
    if body.get("logprobs") and max_tokens == 1 and reply.letter:  # a scoring call: the letter is the token
        reply.text = reply.letter
    text, finish = _cut(reply.text, max_tokens)
    prompt_tokens = image_cost + sum(len(TOKEN_RE.findall(_text(m["content"]))) + 4 for m in messages)
    completion_tokens = max(1, len(TOKEN_RE.findall(text)))
    choice: dict = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish,
        "logprobs": None,
    }
    if body.get("logprobs"):
        choice["logprobs"] = {"content": _logprobs(text, reply, int(body.get("top_logprobs") or 0))}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _messages(raw: list) -> tuple[list[dict], int]:
    """OpenAI messages -> the teacher's form (images decoded), and the prompt tokens the images cost."""
    out, image_cost = [], 0
    for m in raw:
        if not isinstance(m, dict) or "role" not in m:
            raise BadRequest("each message needs a role")
        content = m.get("content")
        if content is None or isinstance(content, str):
            out.append({"role": m["role"], "content": content or ""})
            continue
        if not isinstance(content, list):
            raise BadRequest("message content must be a string or a list of parts")
        parts = []
        for p in content:
            kind = p.get("type") if isinstance(p, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(p.get("text", ""))})
            elif kind == "image_url":
                url = p.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                image, key = _decode(url)
                image_cost += image_tokens(*image.size, max_pixels=image.width * image.height)
                parts.append({"type": "image", "image": image, "key": key})
            else:
                raise BadRequest(f"unsupported content part type {kind!r}")
        out.append({"role": m["role"], "content": parts})
    return out, image_cost


def _decode(url: Any) -> tuple[Image.Image, str]:
    if not isinstance(url, str) or not url.startswith("data:image/"):
        raise BadRequest(
            "images must be base64 data URLs (data:image/...;base64,...): this server reaches nothing outside it"
        )
    header, _, data = url.partition(",")
    if ";base64" not in header:
        raise BadRequest("image data URLs must be base64-encoded")
    try:
        raw = base64.b64decode(data, validate=True)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (binascii.Error, UnidentifiedImageError, OSError) as exc:
        raise BadRequest(f"the image does not decode: {exc}") from None
    return image.convert("RGB"), hashlib.sha256(raw).hexdigest()


def _wants_json(body: dict) -> bool:
    """A json_schema response format (or vLLM's structured_outputs json) asking for reasoning and answer."""
    fmt = body.get("response_format")
    schema = {}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
    elif isinstance(body.get("structured_outputs"), dict):
        schema = body["structured_outputs"].get("json") or {}
    return isinstance(schema, dict) and {"reasoning", "answer"} <= set(schema.get("properties") or {})


def _cut(text: str, max_tokens: int) -> tuple[str, str]:
    tokens = list(TOKEN_RE.finditer(text))
    if len(tokens) <= max_tokens:
        return text, "stop"
    return text[: tokens[max_tokens - 1].end()], "length"


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in content if p["type"] == "text")


def _logprobs(text: str, reply: Reply, k: int) -> list[dict]:
    """One entry per token. A reply that opens with the option letter carries the teacher's belief over the
    letters there; every other token was certain."""
    out = []
    for n, m in enumerate(TOKEN_RE.finditer(text)):
        token = m.group()
        if n == 0 and reply.belief and token in reply.belief:
            ranked = sorted(reply.belief.items(), key=lambda kv: -kv[1])
            top = [_entry(t, math.log(p)) for t, p in ranked[:k]]
            out.append(_entry(token, math.log(reply.belief[token])) | {"top_logprobs": top})
        else:
            out.append(_entry(token, 0.0) | {"top_logprobs": [_entry(token, 0.0)] if k else []})
    return out


def _entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}
