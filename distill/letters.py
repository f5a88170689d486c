"""Finding the letter a model committed to, in free text."""

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


def parse_answer(text: str, letters: list[str]) -> str | None:
    """The committed letter: a JSON `answer`, else the last 'Answer: X'-like phrase, else a lone letter
    on the last line. None when nothing names one of `letters`."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            ans = str(json.loads(stripped).get("answer", "")).strip().upper()
            if ans in letters:
                return ans
        except (json.JSONDecodeError, AttributeError):
            pass
    for k, pat in enumerate(_ANSWER_PATTERNS):
        flags = 0 if k == 1 else re.IGNORECASE  # pattern 1 keeps its letter case-sensitive
        found = [next(g for g in m.groups() if g) for m in re.finditer(pat, text, flags=flags)]
        found = [f.upper() for f in found if f.upper() in letters]
        if found:
            return found[-1]
    lines = [ln for ln in stripped.splitlines() if ln.strip()]
    if lines:
        m = re.fullmatch(r"\W*\(?([A-H])\)?\W*", lines[-1].strip())
        if m and m.group(1) in letters:
            return m.group(1)
    return None
