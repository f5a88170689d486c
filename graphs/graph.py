"""The teacher graph: describe -> reason -> critique -> (retry | rationalize | end)."""

from __future__ import annotations

from langgraph.graph import START, StateGraph

from graphs.nodes import critique_node, describe_node, rationalize_node, reason_node
from graphs.routing import after_critique, after_describe, after_reason
from graphs.state import GraphContext, GraphState


def build_graph():
    g = StateGraph(GraphState, context_schema=GraphContext)
    g.add_node("describe", describe_node)
    g.add_node("reason", reason_node)
    g.add_node("critique", critique_node)
    g.add_node("rationalize", rationalize_node)
    g.add_edge(START, "describe")
    g.add_conditional_edges("describe", after_describe)
    g.add_conditional_edges("reason", after_reason)
    g.add_conditional_edges("critique", after_critique)
    g.add_edge("rationalize", "reason")
    return g.compile()


async def run_sample(graph, ctx: GraphContext, item, sample: int) -> dict:
    """One pass of the graph for one item; returns the final state."""
    limit = 4 * (ctx.settings.max_attempts + 2) + 10  # each attempt is two steps
    return await graph.ainvoke({"item": item, "sample": sample, "attempt": 0, "hinted": False, "traces": [],
                                "calls": []}, context=ctx, config={"recursion_limit": limit})
