"""Where the graph goes after the critic has spoken."""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from graphs.state import GraphContext, GraphState


def after_describe(state: GraphState) -> Literal["reason", "__end__"]:
    return "__end__" if state.get("error") else "reason"


def after_reason(state: GraphState) -> Literal["critique", "__end__"]:
    return "__end__" if state.get("error") else "critique"


def after_critique(state: GraphState, runtime: Runtime[GraphContext]) -> Literal["reason", "rationalize", "__end__"]:
    s = runtime.context.settings
    if state.get("verdict") != "rejected":
        return "__end__"  # accepted, or the critic cannot judge: retrying would not help
    if state.get("hinted"):
        return "__end__"
    if state.get("attempt", 0) < s.max_attempts:
        return "reason"
    if s.rationalize and state["item"].gold:
        return "rationalize"
    return "__end__"
