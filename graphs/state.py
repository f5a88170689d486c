"""What flows through the graph for one pass (one sample) over one item."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from distill.data.items import Item


class GraphState(TypedDict, total=False):
    item: Item
    item_attempt: int  # which attempt at this item in its run (resume makes new ones); calls are filed under it
    sample: int
    descriptions: dict[str, str]  # image path -> description
    attempt: int  # reasoning attempts made so far in this sample
    hinted: bool
    feedback: str | None
    current: dict | None  # the attempt awaiting the critic
    verdict: str | None
    traces: Annotated[list[dict], operator.add]
