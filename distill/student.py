"""What the student sees and writes: the prompt for an item and the completion it is trained to give.

Training, prediction and evaluation all render prompts here, so the forms never drift apart."""

from __future__ import annotations

import re

from distill.items import Item
from distill.letters import parse_answer
from distill.question import question_parts

COT_INSTRUCTION = ("Think step by step about what the cover's visual elements stand for, compare the options, "
                   "then end with a last line 'Answer: X'.")
ANSWER_RE = re.compile(r"Answer:\s*\(?([A-H])\)?\s*$", re.IGNORECASE)


def user_content(item: Item, mode: str = "direct", text: str | None = None) -> list[dict]:
    """The item's question (or `text`, a reworded one); chain-of-thought mode adds the instruction."""
    text = item.input if text is None else text
    if mode == "cot":
        text = text.rstrip() + "\n" + COT_INSTRUCTION
    return question_parts(item, text)


def prompt_messages(item: Item, mode: str = "direct", system: str | None = None,
                    text: str | None = None) -> list[dict]:
    msgs = []
    sys_text = item.system if system is None else system
    if sys_text:
        msgs.append({"role": "system", "content": sys_text})
    msgs.append({"role": "user", "content": user_content(item, mode, text)})
    return msgs


def completion(letter: str, rationale: str | None = None) -> str:
    """Direct: just the letter. Chain of thought: the rationale, then one fixed, parseable answer line."""
    if rationale is None:
        return letter
    return f"{rationale.strip()}\nAnswer: {letter}"


def parse_completion(text: str, letters: list[str]) -> str | None:
    """The letter a student completion commits to (the trained form first, then robust fallbacks)."""
    m = ANSWER_RE.search(text.strip())
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    return parse_answer(text, letters)
