"""Finding the letter a model committed to, in free text. Strict: a letter must be named as an answer (an
`Answer: X` line, "the answer is X", a JSON `answer`, `(X)`, `**X**`, a reply that is only the letter, a reply
that opens with a labelled letter such as "D." or "D)"), never taken from an article ("A cover with ...")."""

from __future__ import annotations

import json
import re

_ANSWER_PATTERNS = [
    r"answer\s*(?:is)?\s*[:：]\s*\**\s*\(?([A-H])\)?\b",
    # "the answer is B" / "answer is (c)": a lone letter, so that "the answer is a cover ..." is not A
    r"(?i:answer\s+is)\s+\**(?:\(([A-Ha-h])\)|([A-H]))\**(?:[.,;:!)\s]|$)",
    r"\b(?:the\s+)?(?:correct|best|matching|final)\s+(?:answer|option|choice)\s+is\s+\**\(?([A-H])\)?\b",
    r"\b(?:option|choice)\s+\(?([A-H])\)?\s+(?:is\s+)?(?:the\s+)?(?:correct|best|right|matching)\b",
]
_CASE_SENSITIVE = {1}
# The whole reply (or its last line) is a letter: "C", "(C)", "**C**", "C.", "[C]"
_LONE = re.compile(r"\W*\(?\[?\**([A-H])\**\]?\)?[.:!]?\W*")
# The reply opens with a labelled letter: "D. The cover ...", "(B) because ...", "**C**: ..."
_OPENING = re.compile(r"^\s*(?:\(([A-H])\)|\[([A-H])\]|\*\*([A-H])\*\*|([A-H])[.):])(?:\s|$)")
# It ends by naming its choice: "... matches story D." / "... so cover (B)."
_CLOSING = re.compile(r"\b(?:story|option|cover|image|choice|letter|picture)\s+\(?([A-H])\)?[.!]?\s*$")
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def parse_answer(text: str, letters: list[str]) -> str | None:
    """The committed letter, or None when nothing names one of `letters`."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            ans = str(json.loads(stripped).get("answer", "")).strip().upper()
            if ans in letters:
                return ans
        except (json.JSONDecodeError, AttributeError):
            pass
    for k, pat in enumerate(_ANSWER_PATTERNS):
        flags = 0 if k in _CASE_SENSITIVE else re.IGNORECASE
        found = [next(g for g in m.groups() if g) for m in re.finditer(pat, text, flags=flags)]
        found = [f.upper() for f in found if f.upper() in letters]
        if found:
            return found[-1]
    lines = [ln for ln in stripped.splitlines() if ln.strip()]
    if lines:
        m = _LONE.fullmatch(lines[-1].strip())
        if m and m.group(1) in letters:
            return m.group(1)
    m = _OPENING.match(stripped)
    if m:
        letter = next(g for g in m.groups() if g)
        if letter in letters:
            return letter
    m = _CLOSING.search(stripped)
    if m and m.group(1) in letters:
        return m.group(1)
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
