"""Graph nodes. Each returns a partial state; calls and traces accumulate in the state and reach the
store together when the item finishes."""

from __future__ import annotations

import asyncio
import time

from langgraph.runtime import Runtime

from agents import prompts
from agents.critic import CriticConfig, critique, same_option
from agents.describer import describe, describe_request
from agents.reasoner import rationale_of, reason, reason_request
from distill.backends import BackendError, ChatResult
from distill.images import sha256_file
from distill.permute import permute, rotation
from graphs.state import GraphContext, GraphState
from store.db import Store


def _call(ctx: GraphContext, item_id: str | None, agent: str, model: str, request: dict,
          result: ChatResult | None, started: float, error: str | None = None) -> dict:
    return Store.call_row(ctx.run_id, item_id, agent, model, request, result.text if result else None,
                          result.prompt_tokens if result else None, result.completion_tokens if result else None,
                          (time.perf_counter() - started) * 1000, error)


async def _description(ctx: GraphContext, path: str) -> str:
    assert ctx.describer is not None
    model = ctx.describer.model_name
    if path not in ctx.shas:
        ctx.shas[path] = await asyncio.to_thread(sha256_file, path)
    sha = ctx.shas[path]
    cached = ctx.store.description(sha, model, prompts.DESCRIBER_VERSION)
    if cached is not None:
        return cached
    if sha not in ctx.pending:  # covers recur across items: describe each once, even when concurrent
        async def run() -> str:
            started = time.perf_counter()
            req = describe_request(path, ctx.settings.describe_tokens)
            try:
                res = await describe(ctx.describer, path, ctx.settings.describe_tokens)
            except BackendError as exc:
                ctx.store.db["calls"].insert(_call(ctx, None, "describer", model, {"messages": req.messages},
                                                   None, started, str(exc)))
                raise
            ctx.store.save_description(sha, model, prompts.DESCRIBER_VERSION, res.text,
                                       _call(ctx, None, "describer", model, res.request, res, started))
            return res.text

        ctx.pending[sha] = asyncio.ensure_future(run())
    try:
        return await ctx.pending[sha]
    finally:
        if ctx.pending.get(sha) is not None and ctx.pending[sha].done():
            ctx.pending.pop(sha, None)


async def describe_node(state: GraphState, runtime: Runtime[GraphContext]) -> dict:
    ctx = runtime.context
    item = state["item"]
    if ctx.describer is None or not ctx.settings.describe:
        return {"descriptions": {}}
    try:
        texts = await asyncio.gather(*(_description(ctx, p) for p in item.cover_images()))
    except BackendError as exc:
        return {"error": f"describer: {exc}"}
    return {"descriptions": dict(zip(item.cover_images(), texts))}


async def reason_node(state: GraphState, runtime: Runtime[GraphContext]) -> dict:
    ctx = runtime.context
    item, s = state["item"], ctx.settings
    attempt = state.get("attempt", 0)
    hinted = state.get("hinted", False)
    cfg = ctx.reasoner.config
    req = reason_request(item, state.get("descriptions", {}), feedback=state.get("feedback"),
                         hint=item.gold if hinted else None, text_only=cfg.text_only,
                         structured=cfg.structured == "json_schema", max_tokens=s.max_new_tokens,
                         temperature=s.temperature, seed=None)
    started = time.perf_counter()
    try:
        results, text, answer = await reason(ctx.reasoner, req, item.letters)
    except BackendError as exc:
        call = _call(ctx, item.id, "reasoner", ctx.reasoner.model_name, {"messages": req.messages}, None, started,
                     str(exc))
        return {"error": f"reasoner: {exc}", "calls": [call], "attempt": attempt + 1}
    calls = [_call(ctx, item.id, "reasoner", ctx.reasoner.model_name, r.request, r, started) for r in results]
    trace = {"sample": state.get("sample", 0), "attempt": attempt, "hinted": int(hinted),
             "descriptions": state.get("descriptions", {}), "rationale": rationale_of(text),
             "answer": answer, "call_id": calls[0]["id"]}
    return {"attempt": attempt + 1, "calls": calls, "current": trace}


async def critique_node(state: GraphState, runtime: Runtime[GraphContext]) -> dict:
    ctx = runtime.context
    item, s = state["item"], ctx.settings
    trace = dict(state["current"])
    verdict = critique(item, trace["rationale"], trace["answer"], CriticConfig(s.min_words, s.max_words))
    calls = []
    if verdict.verdict == "accepted" and s.consistency and len(item.options) > 1:
        rotated = permute(item, rotation(len(item.options), 1))
        cfg = ctx.reasoner.config
        req = reason_request(rotated, state.get("descriptions", {}), text_only=cfg.text_only,
                             structured=cfg.structured == "json_schema", max_tokens=s.max_new_tokens,
                             temperature=0.0)
        started = time.perf_counter()
        try:
            results, _, other = await reason(ctx.reasoner, req, rotated.letters)
            calls.extend(_call(ctx, item.id, "critic", ctx.reasoner.model_name, r.request, r, started)
                         for r in results)
            consistent = same_option(item, rotated, trace["answer"], other)
            trace["consistency"] = {"rotation": 1, "answer": other, "consistent": consistent}
            if not consistent:
                verdict.verdict, verdict.reason = "rejected", "inconsistent"
                verdict.feedback = prompts.CRITIC_FEEDBACK["inconsistent"]
        except BackendError as exc:
            calls.append(_call(ctx, item.id, "critic", ctx.reasoner.model_name, {"messages": req.messages}, None,
                               started, str(exc)))
            verdict.verdict, verdict.reason = "cannot_judge", f"consistency call failed: {exc}"
    trace.update(verdict=verdict.verdict, reason=verdict.reason, feedback=verdict.feedback)
    return {"traces": [trace], "current": None, "calls": calls, "verdict": verdict.verdict,
            "feedback": verdict.feedback}


async def rationalize_node(state: GraphState, runtime: Runtime[GraphContext]) -> dict:
    """Switch to STaR rationalization: the next attempt sees the gold letter as a hint."""
    return {"hinted": True, "feedback": None}
