"""What the sample-cover teacher says to a chat request: a caption, a chain of thought, a letter, or its belief
over the option letters.

It understands the requests the project's agents and student prompts build (agents/describer.py,
agents/reasoner.py, distill/data/student.py) by their structure and by the markers agents/prompts.py promises,
never by other wording: lettered options make a question (none: describe the covers), the answer format (or the
student's chain-of-thought instruction) asks for reasoning, the hint marker brings a hinted letter, the
descriptions header the covers' descriptions. It looks at the covers (`reading`) or, for a text-only reasoner,
at their descriptions, finds the motif each cover story names, and decides by colour first, then shape, then
layout, as the sample data are built to be decided. It is valid only on the sample covers of
`distill.kit.sample_data`; on any other cover it reads nonsense.

A real teacher errs. With probability `error_rate` this one misreads a colour (image2text: the cover's colour as
a wrong story's; text2image: the colours of the matching cover and a wrong one, swapped) and reasons
consistently to the wrong option. Given a STaR hint it reasons to the hinted option, and with probability
`leak_rate` it gives the hint away. Every draw is a hash of (seed, the conversation up to the reply in question):
the same request gets the same reply, a request that differs (critic feedback appended) draws anew, and a
follow-up turn or a scoring call on the same prompt agrees with the first reply.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from PIL import Image

from agents import prompts
from distill.data.items import IMAGE_TOKEN
from distill.data.letters import parse_answer
from distill.data.options import OptionParseError, parse_options
from distill.data.student import COT_INSTRUCTION
from distill.kit.sample_data import COLOURS, LAYOUTS, SHAPES
from distill.kit.sample_teacher.reading import Reading, read_cover

ATTRIBUTES = ("colour", "shape", "layout")
WEIGHTS = {"colour": 4.0, "shape": 2.0, "layout": 1.0}  # belief logits per matching attribute
HINT_RE = re.compile(re.escape(prompts.HINT_MARKER) + r"([A-H])")
COT_MARKERS = (prompts.ANSWER_FORMAT, COT_INSTRUCTION)
DESCRIPTION_RE = re.compile(r"^Image (\d+)(?: \(option ([A-H])\))?: ?(.*)$")
TEXT_IMAGE_RE = re.compile(r"^\[Image (\d+)\]$")  # a text-only question's stand-in for an image


@dataclass(frozen=True)
class Motif:
    """A motif as seen on a cover or named in a text; None where nothing was seen or named."""

    colour: str | None = None
    shape: str | None = None
    layout: str | None = None

    def words(self) -> str:
        if not (self.colour or self.shape or self.layout):
            return "no motif I can name"
        head = " ".join(w for w in (self.colour, f"{self.shape}s" if self.shape else "figures") if w)
        return f"{head} {LAYOUTS[self.layout][0]}" if self.layout else head


def motif_in_text(text: str) -> Motif:
    """The motif a story or description names in the sample vocabulary's words. A colour named right before a
    shape ("crimson hexagons") is the motif's; otherwise the first colour and the first shape named count."""
    low = text.lower()
    pair = re.search(rf"\b({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})s?\b", low)

    def first(found: dict[str, int]) -> str | None:
        hits = {k: i for k, i in found.items() if i >= 0}
        return min(hits, key=hits.get) if hits else None

    colour = pair.group(1) if pair else first({c: _at(low, c) for c in COLOURS})
    shape = pair.group(2) if pair else first({s: _at(low, s + "s?") for s in SHAPES})
    # the layout's own phrase ("tiled in a regular lattice"): its bare name may stand for a shape's science
    layout = first({name: low.find(words) for name, (words, _) in LAYOUTS.items()})
    return Motif(colour, shape, layout)


def _at(text: str, pattern: str) -> int:
    m = re.search(rf"\b(?:{pattern})\b", text)
    return m.start() if m else -1


def caption(r: Reading) -> str:
    """A describer's caption of one sample cover, short as a small student learns best from. It names no colour
    but the motif's, so that a reader of the caption finds the motif."""
    tone = "light" if sum(r.background) / 3 > 128 else "dark"
    title = f", beneath the {r.title.upper()} masthead" if r.title else ""
    return f"The cover shows {r.words} on a {tone} background of the same hue{title}."


@dataclass
class Reply:
    text: str
    letter: str | None = None
    belief: dict[str, float] | None = None  # over the option letters, when the request is a question


@dataclass
class Problem:
    """A question as the teacher sees it. Option i pairs story(i) with cover(i): image2text has one cover and
    a story per option; text2image one story and a cover per option."""

    task: str
    letters: list[str]
    stories: list[Motif]
    covers: list[Motif]
    from_pixels: bool
    background: str = ""  # how the (single) cover's background looks, for image2text captions of it
    hint: str | None = None
    cot: bool = False

    def story(self, i: int) -> Motif:
        return self.stories[i] if self.task == "image2text" else self.stories[0]

    def cover(self, i: int) -> Motif:
        return self.covers[0] if self.task == "image2text" else self.covers[i]

    def match(self, i: int, attr: str) -> bool:
        a, b = getattr(self.story(i), attr), getattr(self.cover(i), attr)
        return a is not None and a == b

    def misread(self, w: int, j: int) -> Problem:
        """The colour misreading that makes option j win over w."""
        covers = list(self.covers)
        if self.task == "image2text":
            covers[0] = replace(covers[0], colour=self.stories[j].colour)
        else:
            covers[j], covers[w] = (
                replace(covers[j], colour=self.stories[0].colour),
                replace(covers[w], colour=self.covers[j].colour),
            )
        return replace(self, covers=covers)


def decide(p: Problem, guess: float) -> tuple[int, str | None]:
    """(winning option, the attribute that decided or None for a guess): colour, then shape, then layout."""
    pool = list(range(len(p.letters)))
    for attr in ATTRIBUTES:
        hits = [i for i in pool if p.match(i, attr)]
        if len(hits) == 1:
            return hits[0], attr
        pool = hits or pool
    return pool[min(int(guess * len(pool)), len(pool) - 1)], None


def belief(p: Problem, winner: int) -> dict[str, float]:
    logits = [sum(WEIGHTS[a] for a in ATTRIBUTES if p.match(i, a)) for i in range(len(p.letters))]
    logits[winner] = max(logits) + 1.0  # the option it commits to carries the most mass
    top = max(logits)
    mass = [math.exp(v - top) for v in logits]
    return {L: m / sum(mass) for L, m in zip(p.letters, mass)}


def rationale(p: Problem, w: int, decided: str | None) -> str:
    """A short chain of thought from what was seen to option w, without the answer line: what the cover (or the
    story) shows, which option carries the deciding attribute and what the others carry instead."""
    L = p.letters
    others = [i for i in range(len(L)) if i != w]
    if p.task == "image2text":
        seen = p.covers[0]
        said = [
            f"The cover shows {seen.words()}."
            if p.from_pixels
            else f"The description of the cover names {seen.words()}."
        ]
        own, rest, verbs = f"story {L[w]}", _series([L[i] for i in others], "story", "stories"), ("names", "name")
        motif = p.stories
    else:
        said = [f"The story names {p.stories[0].words()}."]
        own, rest = f"image {w + 1} (option {L[w]})", _series([str(i + 1) for i in others], "image", "images")
        verbs = ("shows", "show") if p.from_pixels else ("is described with", "are described with")
        motif = p.covers
    if decided:
        theirs = _series([getattr(motif[i], decided) or "nothing I can name" for i in others])
        said.append(f"Only {own} {verbs[0]} {getattr(motif[w], decided)}; {rest} {verbs[len(others) > 1]} {theirs}.")
    else:
        said.append("Nothing I can see tells these options apart, so I take my best guess.")
    said.append(f"{f'The {decided} decides' if decided else 'On balance'}: option {L[w]}.")
    return " ".join(said)


def _series(words: list[str], one: str = "", many: str = "") -> str:
    head = (many if len(words) > 1 else one) + " " if (one or many) else ""
    if len(words) <= 1:
        return head + "".join(words)
    return head + ", ".join(words[:-1]) + " and " + words[-1]


class Teacher:
    def __init__(self, error_rate: float = 0.2, leak_rate: float = 0.1, seed: int = 0, cache_size: int = 2048):
        self.error_rate, self.leak_rate, self.seed = error_rate, leak_rate, seed
        self._readings: OrderedDict[str, Reading] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def respond(
        self, messages: list[dict], choices: list[str] | None = None, json_answer: bool = False, sample: str = ""
    ) -> Reply:
        """`messages`: chat turns whose content is a string or parts {"type": "text", "text"} and
        {"type": "image", "image": PIL.Image, "key": str} (the key names the image's bytes). `sample` names a
        sampled reply (a request's seed at temperature > 0): its draws differ from another sample's."""
        first = _before_assistant(messages)
        problem = self._problem(first)
        if problem is None:
            return Reply(self._describe(first))
        p, w, decided = self._conclude(problem, first, sample)
        letter, dist = p.letters[w], belief(p, w)
        follow_up = len(first) < len(messages)
        if follow_up:  # "answer with the letter" after its own rationale: the letter that rationale came to
            letter = parse_answer(_text(messages[len(first)]["content"]), p.letters) or letter
        if choices or follow_up or not (problem.cot or json_answer):
            return Reply(_pick(letter, choices, dist), letter, dist)
        text = rationale(p, w, decided)
        if problem.hint and self._draw("leak", first, sample) < self.leak_rate:
            text = f"As the note says, the matching option is {problem.hint}. " + text
        if json_answer:
            return Reply(json.dumps({"reasoning": text, "answer": letter}), letter, dist)
        return Reply(text + "\n" + prompts.ANSWER_LINE.format(letter=letter), letter, dist)

    def _conclude(self, p: Problem, conversation: list[dict], sample: str) -> tuple[Problem, int, str | None]:
        w, decided = decide(p, self._draw("guess", conversation, sample))
        target = None
        if p.hint in p.letters:
            target = p.letters.index(p.hint)
        elif self._draw("error", conversation, sample) < self.error_rate and len(p.letters) > 1:
            wrong = [i for i in range(len(p.letters)) if i != w]
            target = wrong[min(int(self._draw("which", conversation, sample) * len(wrong)), len(wrong) - 1)]
        if target is None or target == w:
            return p, w, decided
        misread = p.misread(w, target)
        w2, decided2 = decide(misread, self._draw("guess", conversation, sample))
        if w2 != target:  # the misreading cannot carry it there (a motif it could not name): it just asserts it
            return misread, target, None
        return misread, w2, decided2

    def _draw(self, what: str, conversation: list[dict], sample: str = "") -> float:
        h = hashlib.sha256(f"{self.seed}|{what}|{sample}|".encode())
        h.update(json.dumps([_identity(m) for m in conversation], ensure_ascii=False).encode())
        return int.from_bytes(h.digest()[:8], "big") / 2**64

    def read(self, key: str, image: Image.Image) -> Reading:
        with self._lock:
            if key in self._readings:
                self._readings.move_to_end(key)
                return self._readings[key]
        r = read_cover(image)
        with self._lock:
            self._readings[key] = r
            while len(self._readings) > self._cache_size:
                self._readings.popitem(last=False)
        return r

    def _describe(self, conversation: list[dict]) -> str:
        images = [
            p
            for m in conversation
            if m["role"] == "user" and isinstance(m["content"], list)
            for p in m["content"]
            if p["type"] == "image"
        ]
        if not images:
            return "I see no cover image here to describe, and no options to choose between."
        captions = [caption(self.read(p["key"], p["image"])) for p in images]
        if len(captions) == 1:
            return captions[0]
        return "\n".join(f"Image {k + 1}: {c}" for k, c in enumerate(captions))

    def _problem(self, conversation: list[dict]) -> Problem | None:
        """The question in the last user turn, or None when it offers no lettered options."""
        users = [m for m in conversation if m["role"] == "user"]
        if not users:
            return None
        parts = users[-1]["content"]
        parts = [{"type": "text", "text": parts}] if isinstance(parts, str) else parts
        text = "".join(p["text"] if p["type"] == "text" else IMAGE_TOKEN for p in parts)
        images = [p for p in parts if p["type"] == "image"]
        captions, image_of, start = _descriptions(text)
        try:
            options = parse_options(text[start:])
        except OptionParseError:
            return None
        hint = HINT_RE.search(text)
        p = Problem(
            "image2text",
            [o.letter for o in options],
            [],
            [],
            bool(images),
            hint=hint and hint.group(1),
            cot=any(marker in text for marker in COT_MARKERS),
        )
        if all(o.text.strip() == IMAGE_TOKEN or TEXT_IMAGE_RE.match(o.text.strip()) for o in options):
            # text2image: the story is the question's text before the options; a cover per option
            p.task, p.stories = "text2image", [motif_in_text(text[start : start + options[0].start])]
            for k, o in enumerate(options):
                if images:
                    index = text[: start + o.end].count(IMAGE_TOKEN) - 1
                    p.covers.append(self._seen(images[index]) if 0 <= index < len(images) else Motif())
                else:
                    m = TEXT_IMAGE_RE.match(o.text.strip())
                    number = image_of.get(o.letter) or (int(m.group(1)) if m else k + 1)
                    p.covers.append(motif_in_text(captions.get(number, "")))
            return p
        p.stories = [motif_in_text(o.text) for o in options]
        if images:
            r = self.read(images[0]["key"], images[0]["image"])
            p.covers = [Motif(r.colour, r.shape, r.layout)]
            p.background = f" on a {'light' if sum(r.background) / 3 > 128 else 'dark'} background of the same hue"
        else:
            p.covers = [motif_in_text(captions.get(1, ""))]
        return p

    def _seen(self, part: dict) -> Motif:
        r = self.read(part["key"], part["image"])
        return Motif(r.colour, r.shape, r.layout)


def _before_assistant(messages: list[dict]) -> list[dict]:
    for k, m in enumerate(messages):
        if m["role"] == "assistant":
            return messages[:k]
    return messages


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p["type"] == "text")


def _identity(m: dict):
    if isinstance(m["content"], str):
        return [m["role"], m["content"]]
    return [m["role"], [p["text"] if p["type"] == "text" else {"image": p["key"]} for p in m["content"]]]


def _pick(letter: str, choices: list[str] | None, dist: dict[str, float]) -> str:
    """The reply under a structured choice: the letter if allowed, else the allowed option it believes most."""
    if not choices or letter in choices:
        return letter
    allowed = [c for c in choices if c in dist]
    return max(allowed, key=dist.get) if allowed else choices[0]


def _descriptions(text: str) -> tuple[dict[int, str], dict[str, int], int]:
    """A text-only reasoner's cover descriptions ("Image 1 (option A): ..."): captions by image number, image
    numbers by option letter, and where the question starts after them."""
    at = text.find(prompts.DESCRIPTIONS_HEADER)
    if at < 0:
        return {}, {}, 0
    end = text.find("\n\n", at)
    end = len(text) if end < 0 else end
    captions: dict[int, str] = {}
    image_of: dict[str, int] = {}
    current = None
    for line in text[at + len(prompts.DESCRIPTIONS_HEADER) : end].splitlines():
        m = DESCRIPTION_RE.match(line)
        if m:
            current = int(m.group(1))
            captions[current] = m.group(3)
            if m.group(2):
                image_of[m.group(2)] = current
        elif current is not None:  # a caption that runs over several lines
            captions[current] += "\n" + line
    return captions, image_of, end
