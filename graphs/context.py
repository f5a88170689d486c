"""The graph's runtime context (LangGraph's `context_schema`): the teacher's settings, the backends the agents
use, the store calls are recorded in (read on the loop's connection, written by its writer), and the run they belong
to."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agents.settings import TeacherConfig
from distill.backends.base import Backend
from graphs.writer import StoreWriter
from store.db import Store


@dataclass
class Context:
    settings: TeacherConfig
    reasoner: Backend
    describer: Backend | None
    store: Store
    writes: StoreWriter
    run_id: str
    pending: dict[str, asyncio.Future] = field(default_factory=dict)  # image sha -> description in flight
    shas: dict[str, str] = field(default_factory=dict)  # image path -> sha256 (covers recur across items)
    described: dict[str, str] = field(default_factory=dict)  # image sha -> description, as the store holds it
