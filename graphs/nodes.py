"""Graph nodes. Each returns a partial state. Every agent call is recorded in the store the moment it ends,
failed ones included (a retried node keeps the history of what failed); traces reach the store when the item
finishes, together with its status."""

from __future__ import annotations

import asyncio
import hashlib
import time

from langgraph.runtime import Runtime

from agents import prompts
from agents.critic import critique, same_option
from agents.describer import describe, describe_request
from agents.reasoner import rationale_of, reason, reason_request
from distill.backends.base import BackendError, ChatRequest, ChatResult
from distill.data.images import sha256_file
from distill.data.permute import permute, rotation
from graphs.context import Context
from graphs.state import GraphState
from store.db import call_row


def _record(
    ctx: Context,
    state: GraphState,
    agent: str,
    model: str,
    request: ChatRequest | dict,
    result: ChatResult | None,
    started: float,
    error: str | None = None,
) -> dict:
    req = (
        result.request
        if result is not None
        else ({"messages": request.messages} if isinstance(request, ChatRequest) else request)
    )
    row = call_row(
        ctx.run_id,
        state["item"].key,
        agent,
        model,
        req,
        result.text if result else None,
        result.prompt_tokens if result else None,
        result.completion_tokens if result else None,
        (time.perf_counter() - started) * 1000,
        error,
    )
    row["item_attempt"] = state.get("item_attempt")
    return row


async def _description(ctx: Context, state: GraphState, path: str) -> str:
    assert ctx.describer is not None
    model = ctx.describer.model_name
    if path not in ctx.shas:
        ctx.shas[path] = await asyncio.to_thread(sha256_file, path)
    sha = ctx.shas[path]
    cached = ctx.described.get(sha) or ctx.store.description(sha, model, prompts.DESCRIBER_VERSION)
    if cached is not None:
        ctx.described[sha] = cached
        return cached
    if sha not in ctx.pending:  # covers recur across items: describe each once, even when concurrent

        async def run() -> str:
            started = time.perf_counter()
            req = describe_request(path, ctx.settings.describe_tokens)
            try:
                res = await describe(ctx.describer, path, ctx.settings.describe_tokens)
            except BackendError as exc:  # a blank description is a failed call too, recorded with its reply
                await ctx.writes.record_call(
                    _record(ctx, state, "describer", model, req, getattr(exc, "result", None), started, str(exc))
                )
                raise
            kept = await ctx.writes.save_description(
                sha,
                model,
                prompts.DESCRIBER_VERSION,
                res.text,
                _record(ctx, state, "describer", model, req, res, started),
            )
            ctx.described[sha] = kept
            return kept

        ctx.pending[sha] = asyncio.ensure_future(run())
    try:
        return await ctx.pending[sha]
    finally:
        if ctx.pending.get(sha) is not None and ctx.pending[sha].done():
            ctx.pending.pop(sha, None)


async def describe_node(state: GraphState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    if ctx.describer is None:
        return {"descriptions": {}}
    covers = state["item"].cover_images()
    texts = await asyncio.gather(*(_description(ctx, state, p) for p in covers))
    return {"descriptions": dict(zip(covers, texts))}


async def _reason(
    ctx: Context, state: GraphState, req: ChatRequest, letters: list[str], agent: str
) -> tuple[list[dict], str, str | None]:
    """The reasoner's calls for one request, each recorded; a failure is recorded, then raised."""
    started = time.perf_counter()
    model = ctx.reasoner.model_name
    try:
        results, text, answer = await reason(ctx.reasoner, req, letters)
    except BackendError as exc:
        await ctx.writes.record_call(_record(ctx, state, agent, model, req, None, started, str(exc)))
        raise
    calls = [_record(ctx, state, agent, model, req, r, started) for r in results]
    await ctx.writes.record_calls(calls)
    return calls, text, answer


def _sample_seed(*parts) -> int:
    """A sampled attempt's own seed: runs reproduce, and an item's samples differ."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big") >> 1


async def reason_node(state: GraphState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    item, s = state["item"], ctx.settings
    attempt = state.get("attempt", 0)
    hinted = state.get("hinted", False)
    cfg = ctx.reasoner.config
    req = reason_request(
        item,
        state.get("descriptions", {}),
        feedback=state.get("feedback"),
        hint=item.gold if hinted else None,
        text_only=cfg.text_only,
        structured=cfg.structured == "json_schema",
        max_tokens=s.max_new_tokens,
        temperature=s.temperature,
        seed=None if s.seed is None else _sample_seed(s.seed, item.key, state.get("sample", 0), attempt),
    )
    calls, text, answer = await _reason(ctx, state, req, item.letters, "reasoner")
    trace = {
        "sample": state.get("sample", 0),
        "attempt": attempt,
        "hinted": int(hinted),
        "descriptions": state.get("descriptions", {}),
        "rationale": rationale_of(text),
        "answer": answer,
        "call_id": calls[0]["id"],
    }
    return {"attempt": attempt + 1, "current": trace}


async def critique_node(state: GraphState, runtime: Runtime[Context]) -> dict:
    ctx = runtime.context
    item, s = state["item"], ctx.settings
    trace = dict(state["current"])
    verdict = critique(item, trace["rationale"], trace["answer"], s)
    if verdict.verdict == "accepted" and s.consistency and len(item.options) > 1:
        rotated = permute(item, rotation(len(item.options), 1))
        cfg = ctx.reasoner.config
        req = reason_request(
            rotated,
            state.get("descriptions", {}),
            text_only=cfg.text_only,
            structured=cfg.structured == "json_schema",
            max_tokens=s.max_new_tokens,
            temperature=0.0,
        )
        try:
            _, _, other = await _reason(ctx, state, req, rotated.letters, "critic")
        except BackendError as exc:
            verdict.verdict, verdict.reason = "cannot_judge", f"consistency call failed: {exc}"
        else:
            consistent = same_option(item, rotated, trace["answer"], other)
            trace["consistency"] = {"rotation": 1, "answer": other, "consistent": consistent}
            if not consistent:
                verdict.verdict, verdict.reason = "rejected", "inconsistent"
                verdict.feedback = prompts.CRITIC_FEEDBACK["inconsistent"]
    trace.update(verdict=verdict.verdict, reason=verdict.reason, feedback=verdict.feedback)
    return {"traces": [trace], "current": None, "verdict": verdict.verdict, "feedback": verdict.feedback}


async def rationalize_node(state: GraphState, runtime: Runtime[Context]) -> dict:
    """Switch to STaR rationalization: the next attempt sees the gold letter as a hint."""
    return {"hinted": True, "feedback": None}
