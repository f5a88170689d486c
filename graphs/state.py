"""What flows through the graph for one (item, sample)."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, TypedDict

from distill.backends import Backend
from distill.items import Item


class GraphState(TypedDict, total=False):
    item: Item
    sample: int
    descriptions: dict[str, str]  # image path -> description
    attempt: int  # attempts made so far in this sample
    hinted: bool
    feedback: str | None
    current: dict | None  # the attempt awaiting the critic
    verdict: str | None
    error: str | None
    traces: Annotated[list[dict], operator.add]
    calls: Annotated[list[dict], operator.add]


@dataclass
class GraphSettings:
    max_attempts: int = 3  # un-hinted attempts per sample
    rationalize: bool = True  # one hinted (STaR) attempt after the others fail
    consistency: bool = False  # re-ask with rotated options; accepted only if the same option wins
    describe: bool = True
    temperature: float = 0.7
    max_new_tokens: int = 512
    describe_tokens: int = 256
    min_words: int = 15
    max_words: int = 800


@dataclass
class GraphContext:
    """What nodes need beyond the state: backends, the store, settings (LangGraph's runtime context)."""

    reasoner: Backend
    describer: Backend | None
    store: object  # store.Store; typed loosely so graphs don't import the store's internals
    run_id: str
    settings: GraphSettings = field(default_factory=GraphSettings)
    pending: dict = field(default_factory=dict)  # image sha -> in-flight description task
    shas: dict = field(default_factory=dict)  # image path -> sha256 (covers recur across items)
