"""Finding the letter a model committed to, in free text."""

from __future__ import annotations

import json
import re

_ANSWER_PATTERNS = [
    r"answer\s*(?:is)?\s*[:：]\s*\**\s*\(?([A-H])\)?\b",
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
    for pat in _ANSWER_PATTERNS:
        found = [m.group(1) for m in re.finditer(pat, text, flags=re.IGNORECASE)]
        found = [f.upper() for f in found if f.upper() in letters]
        if found:
            return found[-1]
    lines = [ln for ln in stripped.splitlines() if ln.strip()]
    if lines:
        m = re.fullmatch(r"\W*\(?([A-H])\)?\W*", lines[-1].strip())
        if m and m.group(1) in letters:
            return m.group(1)
    return None
