"""The reasoner: a chain of thought tying the cover's metaphors to the science, ending in one letter."""

from __future__ import annotations

import json
import re

from agents import prompts
from agents.messages import describe_images
from distill.backends.base import Backend, ChatRequest, ChatResult
from distill.data.items import Item
from distill.data.letters import parse_answer
from distill.data.question import question_parts


def rationale_of(text: str) -> str:
    """The reasoning without its final answer line (the answer is stored apart)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return str(json.loads(stripped).get("reasoning", "")).strip()
        except (json.JSONDecodeError, AttributeError):
            pass
    lines = stripped.splitlines()
    while lines and (not lines[-1].strip() or re.match(r"\W*answer\s*[:：]", lines[-1], re.IGNORECASE)):
        lines.pop()
    return "\n".join(lines).strip()


def answer_schema(letters: list[str]) -> dict:
    return {
        "type": "object",
        "properties": {"reasoning": {"type": "string"}, "answer": {"type": "string", "enum": letters}},
        "required": ["reasoning", "answer"],
        "additionalProperties": False,
    }


def reason_request(
    item: Item,
    descriptions: dict[str, str],
    *,
    feedback: str | None = None,
    hint: str | None = None,
    text_only: bool = False,
    structured: bool = False,
    max_tokens: int = 512,
    temperature: float = 0.0,
    seed: int | None = None,
) -> ChatRequest:
    letters = item.letters
    content: list[dict] = []
    described = describe_images(item, descriptions)
    if described:
        content.append({"type": "text", "text": f"{prompts.DESCRIPTIONS_HEADER}\n{described}\n\n"})
    content.extend(question_parts(item, text_only=text_only))
    tail = "\n\n" + prompts.REASONER_INSTRUCTION.format(letters=", ".join(letters))
    if feedback:
        tail += "\n\n" + prompts.FEEDBACK.format(feedback=feedback)
    if hint:
        tail += "\n\n" + prompts.HINT.format(gold=hint)
    content.append({"type": "text", "text": tail})
    return ChatRequest(
        messages=[{"role": "system", "content": prompts.REASONER_SYSTEM}, {"role": "user", "content": content}],
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        json_schema=answer_schema(letters) if structured else None,
    )


def answer_request(request: ChatRequest, rationale: str, letters: list[str]) -> ChatRequest:
    """The follow-up turn that forces one letter after a free-form rationale."""
    return ChatRequest(
        messages=request.messages
        + [
            {"role": "assistant", "content": rationale},
            {"role": "user", "content": prompts.DIRECT_INSTRUCTION},
        ],
        max_tokens=1,
        temperature=request.temperature,
        seed=request.seed,
        choices=list(letters),
    )


async def reason(
    backend: Backend, request: ChatRequest, letters: list[str]
) -> tuple[list[ChatResult], str, str | None]:
    """Run the reasoner: (calls made, full text, committed letter or None).

    With `structured: choice` the rationale is generated freely and the letter is then forced to one of the
    options in a second, constrained turn (vLLM structured choice; letter scoring in-process)."""
    result = await backend.chat(request)
    answer = parse_answer(result.text, letters)
    if backend.config.structured != "choice" or answer is not None:
        return [result], result.text, answer
    forced = await backend.chat(answer_request(request, rationale_of(result.text), letters))
    letter = forced.text.strip()[:1].upper()
    answer = letter if letter in letters else None
    text = result.text.rstrip() + "\n" + prompts.ANSWER_LINE.format(letter=letter)
    return [result, forced], text, answer
