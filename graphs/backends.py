"""The teacher's backends, built from its settings."""

from __future__ import annotations

from agents.settings import TeacherConfig
from distill.backends.base import Backend
from distill.backends.factory import make_backend


def teacher_backends(settings: TeacherConfig) -> tuple[Backend, Backend | None]:
    """(reasoner, describer). Where the two agents' settings are equal, one backend serves both: one model in memory,
    one connection pool to the server, whose `concurrency` then bounds all the requests in flight to it."""
    reasoner = make_backend(settings.reasoner)
    if settings.describer is None:
        return reasoner, None
    return reasoner, reasoner if settings.describer == settings.reasoner else make_backend(settings.describer)
