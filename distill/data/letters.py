"""Finding the letter a model committed to, in free text. Strict: a letter must be named as an answer (an
`Answer: X` line, "the answer is X", `(X)`, `**X**`, a reply that is only the letter, a reply that opens with a
labelled letter such as "D." or "D)"), never taken from an article ("A cover with ..."). A JSON object's `answer`
(the key in any case; the object alone, in a ```json fence or after other words) is read by these same rules, as
a reply of its own: `{"answer": "(C)"}` is C as "(C)" is, `{"answer": "a cover ..."}` names no letter.

One case rule: a capital letter counts wherever one of these forms names it; a lower-case letter counts where it
cannot be the article "a", which is in parentheses ("(b)", "the answer is (c).") or with nothing but punctuation
after it on its line ("b", "b.", "Answer: b", "the answer is c."). So "b" is B as "(b)" is, while "Answer: a cover
with ..." and "the answer is a cover ..." name no letter."""

from __future__ import annotations

import json
import re

# A lower-case letter that cannot be the article: in parentheses, or last on its line (punctuation apart)
_LOWER = r"\(([a-z])\)|([a-z])(?=[*\])\]]*[.!]?[ \t]*$)"
_ANSWER_PATTERNS = [
    re.compile(rf"(?i:answer\s*(?:is)?\s*[:：])\s*\**\s*(?:\(?([A-Z])\)?\b|{_LOWER})", re.MULTILINE),
    # "the answer is B" / "answer is (c)": a lone letter, so that "the answer is a cover ..." is not A
    re.compile(rf"(?i:answer\s+is)\s+\**(?:\(([A-Z])\)|([A-Z])\**(?=[.,;:!)\s]|$)|{_LOWER})", re.MULTILINE),
    re.compile(
        r"(?i:\b(?:the\s+)?(?:correct|best|matching|final)\s+(?:answer|option|choice)\s+is)\s+\**"
        rf"(?:\(?([A-Z])\)?\b|{_LOWER})",
        re.MULTILINE,
    ),
    re.compile(
        r"(?i:\b(?:option|choice))\s+(?:\(?([A-Z])\)?|\(([a-z])\))"
        r"\s+(?i:(?:is\s+)?(?:the\s+)?(?:correct|best|right|matching))\b"
    ),
]
# The whole reply (or its last line) is the letter, in either case: "C", "c", "(C)", "**C**", "C.", "[C]"
_LONE = re.compile(r"\W*\(?\[?\**([A-Za-z])\**\]?\)?[.:!]?\W*")
# The reply opens with a labelled letter: "D. The cover ...", "(B) because ...", "(b) because", "**C**: ..."
_OPENING = re.compile(r"^\s*(?:\(([A-Za-z])\)|\[([A-Z])\]|\*\*([A-Z])\*\*|([A-Z])[.):])(?:\s|$)")
# It ends by naming its choice: "... matches story D." / "... so cover (B)." / "... story d."
_CLOSING = re.compile(r"\b(?:story|option|cover|image|choice|letter|picture)\s+\(?([A-Za-z])\)?[.!]?\s*$")
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def _json_answers(text: str) -> list[str]:
    """The string values of the `answer` keys (in any case) of the JSON objects in `text`, in order: a reply that
    is an object, one in a ```json fence, one after some words."""
    decoder = json.JSONDecoder()
    values, at = [], text.find("{")
    while at >= 0:
        try:
            obj, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at = text.find("{", at + 1)
            continue
        if isinstance(obj, dict):
            values += [v for k, v in obj.items() if isinstance(v, str) and k.strip().lower() == "answer"]
        at = text.find("{", end)
    return values


def parse_answer(text: str, letters: list[str]) -> str | None:
    """The committed letter, or None when nothing names one of `letters`."""
    stripped = text.strip()
    values = _json_answers(stripped)
    if values:
        letter = parse_answer(values[-1], letters)  # the last JSON answer, read as a reply of its own
        if letter:
            return letter
    for pat in _ANSWER_PATTERNS:
        found = [next(g for g in m.groups() if g).upper() for m in pat.finditer(text)]
        found = [f for f in found if f in letters]
        if found:
            return found[-1]
    lines = [ln for ln in stripped.splitlines() if ln.strip()]
    if lines:
        m = _LONE.fullmatch(lines[-1].strip())
        if m and m.group(1).upper() in letters:
            return m.group(1).upper()
    m = _OPENING.match(stripped)
    if m:
        letter = next(g for g in m.groups() if g).upper()
        if letter in letters:
            return letter
    m = _CLOSING.search(stripped)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    return None


def parse_reply(text: str, letters: list[str]) -> tuple[str | None, str]:
    """A generated reply (reasoning models' `<think>` blocks included) -> (letter or None, why not)."""
    if "<think>" in text and "</think>" not in text:
        return None, "unfinished <think> block (the generation was cut off)"
    body = _THINK.sub("", text).strip()
    if not body:
        return None, "empty reply"
    letter = parse_answer(body, letters)
    return (letter, "") if letter else (None, "no letter named as the answer")
