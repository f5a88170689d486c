"""The cover story inside a text2image item's question, taken from the item's structure.

The question text is free: MAC conversions put the question on its own line and the story on the next, or both
on one line ("Which of the following options best describe the cover story? The story is: ..."), sometimes
with a label ("Cover story:") or an instruction line before the options. The story is what remains of the text
before the options once question sentences, lead-ins and instructions are taken away. A result that still reads
like the question is an error, never a story."""

from __future__ import annotations

import re

from distill.data.items import IMAGE_TOKEN, Item
from distill.data.options import INSTRUCTION_LINE
from distill.errors import UserError

# A question sentence: up to the first "?" of a line, when what precedes it asks about covers, stories, options.
_QUESTION = re.compile(r"^(?P<q>.*?\?)\s*(?P<rest>.*)$", re.DOTALL)
# Lead-ins between the question and the story: "The story is:", "Cover story:", "Story -", "Here is the story:"
_LEAD_IN = re.compile(
    r"^\s*(?:(?:here\s+is|this\s+is)\s+)?(?:the\s+)?(?:cover\s+)?(?:story|text|article|abstract|"
    r"description)(?:\s+is)?\s*[:\-–]\s*",
    re.IGNORECASE,
)
_ASKS = re.compile(r"\b(?:which|what|cover|story|option|image|picture|match)", re.IGNORECASE)
_OPTIONS_HEADER = re.compile(r"^\s*(?:options|choices|candidates)\s*:?\s*$", re.IGNORECASE)
# Wording that belongs to a multiple-choice question, not to a cover story.
_QUESTION_WORDS = re.compile(
    r"\b(?:which\s+of\s+the\s+following|which\s+(?:journal\s+)?cover|the\s+following\s+"
    r"options?|best\s+(?:describes?|matches?)|choose\s+the|select\s+the)\b",
    re.IGNORECASE,
)


class StoryError(UserError, ValueError):
    pass


def strip_label(text: str) -> str:
    """A story without a leading label ("Cover story: ..."), for comparing stories across tasks."""
    return _LEAD_IN.sub("", text.strip(), count=1)


def story_of(item: Item) -> str:
    """The cover story of a text2image item (verbatim, trimmed); StoryError when the text gives none."""
    if item.task != "text2image":
        raise StoryError(f"item {item.key}: only text2image items hold a story in their question")
    # bare placeholders (no option labels): the whole text but the images
    cut = min((o.span[0] for o in item.options if o.span), default=len(item.input))
    head = item.input[:cut]
    head = re.sub(r"(?:\(?[A-Z][.):\]]|\[[A-Z]\]|Option\s+[A-Z][.):]?)\s*$", "", head.rstrip())  # first label
    lines = []
    for line in head.replace(IMAGE_TOKEN, " ").splitlines():
        line = line.strip()
        if not line or _OPTIONS_HEADER.match(line) or INSTRUCTION_LINE.match(line):
            continue
        lead = _LEAD_IN.match(line)
        m = _QUESTION.match(line)
        if lead:  # "Cover story: ..." introduces the story itself
            line = line[lead.end() :]
        elif m and _ASKS.search(m.group("q")):  # a question, possibly followed by the story on the same line
            line = _LEAD_IN.sub("", m.group("rest").strip())
        if line:
            lines.append(line)
    story = "\n".join(lines).strip()
    if not story:
        raise StoryError(f"item {item.key}: no cover story found before the options")
    if _QUESTION_WORDS.search(story):
        raise StoryError(f"item {item.key}: the text taken as the story still reads like the question: {story[:80]!r}")
    return story
