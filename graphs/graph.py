"""The teacher graph: describe -> reason -> critique -> (retry | rationalize | end).

A node that meets a transient backend failure (a blank description, a dropped connection) is run again by
LangGraph's retry policy; any other failure ends the pass and fails the item, which a resume redoes."""

from __future__ import annotations

from langgraph.graph import START, StateGraph
from langgraph.types import RetryPolicy

from agents.settings import TeacherConfig
from distill.backends.base import TransientBackendError
from graphs.context import Context
from graphs.nodes import critique_node, describe_node, rationalize_node, reason_node
from graphs.routing import after_critique
from graphs.state import GraphState


def build_graph(settings: TeacherConfig):
    def retry(backend) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=1 + (backend.max_retries if backend else 0),
            retry_on=TransientBackendError,
            initial_interval=0.5,
            max_interval=30.0,
        )

    g = StateGraph(GraphState, context_schema=Context)
    g.add_node("describe", describe_node, retry_policy=retry(settings.describer))
    g.add_node("reason", reason_node, retry_policy=retry(settings.reasoner))
    g.add_node("critique", critique_node)  # a failed consistency call is a verdict: cannot judge
    g.add_node("rationalize", rationalize_node)
    g.add_edge(START, "describe")
    g.add_edge("describe", "reason")
    g.add_edge("reason", "critique")
    g.add_conditional_edges("critique", after_critique)
    g.add_edge("rationalize", "reason")
    return g.compile()


def recursion_limit(settings: TeacherConfig) -> int:
    return 3 * (settings.max_attempts + 1) + 5  # reason + critique per attempt, the hinted one, describe
