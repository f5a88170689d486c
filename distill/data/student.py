"""What the student sees and writes: the prompt for an item and the completion it is trained to give.

Training, export, prediction and evaluation all render prompts here, so the forms never drift apart. The prompt
layout is an explicit setting, recorded with every trained model:
- `llamafactory` (default): what LLaMA-Factory builds from the item's registry. With the task's registry
  (`"prompt": "system", "query": "input"`) the requirement text opens the user turn, joined to the question by a
  newline, under the chat template's default system prompt; from a registry's `system` column
  (`item.system_turn`) it is the system turn. A student trained this way reads the prompts `vllm_infer.py`
  gives it.
- `system`: the requirement text as the system message, the question alone as the user turn."""

from __future__ import annotations

import re
from typing import Literal

from distill.data.items import IMAGE_TOKEN, Item
from distill.data.letters import parse_answer
from distill.data.question import question_parts

Layout = Literal["llamafactory", "system"]
LAYOUTS: tuple[Layout, ...] = ("llamafactory", "system")
DEFAULT_LAYOUT: Layout = "llamafactory"

COT_INSTRUCTION = (
    "Think step by step about what the cover's visual elements stand for, compare the options, "
    "then end with a last line 'Answer: X'."
)
DESCRIBE_INSTRUCTION = "Describe this journal cover: its figures, their colour and shape, and how they are arranged."
# Describe, then answer: the covers' captions follow the question, one line per cover.
CAPTIONS_HEADER = "Cover descriptions:"
CAPTION_TOKENS = 128  # the longest caption a student writes of a cover before it answers
ANSWER_RE = re.compile(r"Answer:\s*\(?([A-Z])\)?\s*$", re.IGNORECASE)


def user_text(
    item: Item,
    mode: str = "direct",
    system: str | None = None,
    layout: Layout = DEFAULT_LAYOUT,
    text: str | None = None,
    captions: dict[str, str] | None = None,
) -> str:
    """The user turn's text, `<image>` placeholders included; with `captions` (cover path -> caption), the
    covers' captions after the question."""
    text = item.input if text is None else text
    if captions is not None:
        text = text.rstrip() + "\n" + captions_block(item, captions)
    if mode == "cot":
        text = text.rstrip() + "\n" + COT_INSTRUCTION
    sys_text = item.system if system is None else system
    if sys_text and not in_system_turn(item, layout):
        text = f"{sys_text}\n{text}"  # LLaMA-Factory joins `prompt` and `query` with a newline
    return text


def captions_block(item: Item, captions: dict[str, str]) -> str:
    """One line per cover of the item: "A. caption" for each text2image option's image, in letter order (a cover
    shown under two letters gets both lines), "Cover: caption" for any other image. A caption's line breaks become
    spaces, so each cover keeps one line, and an image placeholder in a caption becomes plain text (the
    question's placeholders are the item's images)."""

    def one_line(path: str) -> str:
        return " ".join(captions[path].replace(IMAGE_TOKEN, "image").split())

    option_images = {o.image for o in item.options if o.image}
    lines = [f"{o.letter}. {one_line(o.image)}" for o in item.options if o.image]
    lines += [f"Cover: {one_line(p)}" for p in item.cover_images() if p not in option_images]
    return "\n".join([CAPTIONS_HEADER, *lines])


def in_system_turn(item: Item, layout: Layout) -> bool:
    return layout == "system" or item.system_turn


def system_text(item: Item, system: str | None = None, layout: Layout = DEFAULT_LAYOUT) -> str | None:
    """The system message, or None for the chat template's default."""
    sys_text = item.system if system is None else system
    return sys_text if sys_text and in_system_turn(item, layout) else None


def prompt_messages(
    item: Item,
    mode: str = "direct",
    system: str | None = None,
    text: str | None = None,
    layout: Layout = DEFAULT_LAYOUT,
    captions: dict[str, str] | None = None,
) -> list[dict]:
    msgs = []
    sys_msg = system_text(item, system, layout)
    if sys_msg:
        msgs.append({"role": "system", "content": sys_msg})
    user = user_text(item, mode, system, layout, text, captions)
    msgs.append({"role": "user", "content": question_parts(item, user)})
    return msgs


def describe_messages(image: str) -> list[dict]:
    """The describe task's prompt: one cover and the instruction, under the chat template's default system
    prompt (the student learns to caption covers as the teacher's describer did)."""
    return [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": DESCRIBE_INSTRUCTION}]}
    ]


def completion(letter: str, rationale: str | None = None, answer_first: bool = False) -> str:
    """Direct: just the letter. Chain of thought: the rationale, then one fixed, parseable answer line. Answer
    first: the letter, then the rationale that backs it (the letter stays the first token, so letter scoring
    reads it as it reads a direct answer)."""
    if rationale is None:
        return letter
    if answer_first:
        return f"{letter}\n{rationale.strip()}"
    return f"{rationale.strip()}\nAnswer: {letter}"


def parse_completion(text: str, letters: list[str]) -> str | None:
    """The letter a student completion commits to (the trained form first, then robust fallbacks)."""
    m = ANSWER_RE.search(text.strip())
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    return parse_answer(text, letters)
