"""Finding the lettered options inside a question's free text, and rendering them back."""

from __future__ import annotations

import re
from dataclasses import dataclass

from distill.data.items import IMAGE_TOKEN, LETTERS

# "A. text", "A) text", "(A) text", "A: text", "[A] text", optionally "Option A." / "**A.**"
_LABEL = re.compile(
    r"^[ \t]*(?:\*\*)?(?:Option[ \t]+)?(?:\((?P<p>[A-Z])\)|\[(?P<b>[A-Z])\]|(?P<l>[A-Z])[.):])(?:\*\*)?[ \t]*",
    re.MULTILINE,
)


# A line that instructs rather than informs: "Answer with the option's letter...", "Please choose...", ...
INSTRUCTION_LINE = re.compile(
    r"^[ \t]*(?:answer|please|choose|select|respond|reply|output|give|pick|only|return|note|think)\b.*$",
    re.IGNORECASE | re.MULTILINE,
)


class OptionParseError(ValueError):
    pass


@dataclass
class ParsedOption:
    letter: str
    text: str
    start: int  # span of the option text (label excluded) in the source string
    end: int


def parse_options(text: str, min_options: int = 2) -> list[ParsedOption]:
    """The last run of consecutive labels A, B, C, ... in `text`.

    An option runs to the next label; the last option runs to the first blank line after it, or to the first
    instruction line after it (instructions may follow the options), or to the end of the text.
    """
    labels = [(m, m.group("p") or m.group("b") or m.group("l")) for m in _LABEL.finditer(text)]
    best: list = []
    run: list = []
    for m, letter in labels:
        if letter == "A":
            run = [(m, letter)]
        elif run and LETTERS.index(letter) == LETTERS.index(run[-1][1]) + 1:
            run.append((m, letter))
        else:
            continue
        if len(run) >= len(best):
            best = list(run)
    if len(best) < min_options:
        found = ", ".join(sorted({letter for _, letter in labels})) or "none"
        raise OptionParseError(f"found no run of option labels A, B, ... (labels seen: {found})")
    out = []
    for i, (m, letter) in enumerate(best):
        start = m.end()
        if i + 1 < len(best):
            end = best[i + 1][0].start()
        else:
            rest = text[start:]
            stops = [m.start() for m in (re.search(r"\n[ \t]*\n", rest), INSTRUCTION_LINE.search(rest, 1)) if m]
            end = start + min(stops) if stops else len(text)
        body = text[start:end]
        stripped = body.rstrip()
        out.append(ParsedOption(letter, stripped, start, start + len(stripped)))
    for o in out:
        if not o.text.strip():
            raise OptionParseError(f"option {o.letter} is empty")
    return out


def replace_spans(text: str, spans: list[tuple[int, int]], new: list[str]) -> str:
    """Replace each [start, end) span by the matching new text (spans must not overlap)."""
    pieces, last = [], 0
    for (start, end), repl in sorted(zip(spans, new), key=lambda p: p[0][0]):
        pieces.append(text[last:start])
        pieces.append(repl)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def image_indices(text: str) -> list[int]:
    """Character offsets of every `<image>` placeholder."""
    return [m.start() for m in re.finditer(re.escape(IMAGE_TOKEN), text)]


def render_options(options: list[str], style: str = "A. ") -> str:
    """Options as lines in one of the label styles found in such data: the one renderer of option lists."""
    fmt = {"A. ": "{}. {}", "A) ": "{}) {}", "(A) ": "({}) {}", "A: ": "{}: {}"}[style]
    return "\n".join(fmt.format(LETTERS[i], t) for i, t in enumerate(options))
