"""Where the graph goes after the critic has spoken."""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from graphs.context import Context
from graphs.state import GraphState


def after_critique(state: GraphState, runtime: Runtime[Context]) -> Literal["reason", "rationalize", "__end__"]:
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
