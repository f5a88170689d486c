"""The critic: plain-code checks of a rationale. "Can't judge" is an outcome of its own, apart from "wrong"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agents import prompts
from agents.settings import TeacherConfig
from distill.data.items import Item

Verdict = Literal["accepted", "rejected", "cannot_judge"]

# Phrases that give away a STaR hint, or a rationale that leans on being told the answer.
LEAK = re.compile(
    r"\b(hint|hinted|was told|were told|i was given|we were given|given answer|provided answer|"
    r"answer (?:was|is) (?:given|provided|stated)|as (?:stated|noted) in the (?:note|prompt)|"
    r"the note says|the matching option is)\b",
    re.IGNORECASE,
)


@dataclass
class Critique:
    verdict: Verdict
    reason: str
    feedback: str | None = None


def critique(item: Item, rationale: str, answer: str | None, settings: TeacherConfig) -> Critique:
    if answer is None:
        return Critique("rejected", "no_answer", prompts.CRITIC_FEEDBACK["no_answer"])
    if LEAK.search(rationale):
        return Critique("rejected", "hint_leak", prompts.CRITIC_FEEDBACK["hint_leak"])
    if not item.gold:
        return Critique("cannot_judge", "no_gold")
    if answer != item.gold:
        return Critique("rejected", "wrong_answer", prompts.CRITIC_FEEDBACK["wrong_answer"])
    n_words = len(rationale.split())
    if n_words < settings.min_words:
        return Critique("rejected", "too_short", prompts.CRITIC_FEEDBACK["too_short"])
    if n_words > settings.max_words:
        return Critique("rejected", "too_long", prompts.CRITIC_FEEDBACK["too_long"])
    return Critique("accepted", "ok")


def same_option(item: Item, rotated: Item, answer: str, rotated_answer: str | None) -> bool:
    """Consistency: do two answers, one on a reordering of the options, name the same content?"""
    if rotated_answer is None:
        return False
    a, b = item.option(answer), rotated.option(rotated_answer)
    return (a.image or a.text) == (b.image or b.text)
