"""The markers agents/prompts.py promises: every request the agents build carries each one where promised and
nowhere else, so a prompt edit that drops one fails here (the sample-cover teacher recognises requests by them)."""

from __future__ import annotations

import pytest

from agents import prompts
from agents.describer import describe_request
from agents.reasoner import reason_request
from distill.data.items import IMAGE_TOKEN
from distill.data.options import OptionParseError, parse_options
from distill.data.records import load_json

MARKERS = (prompts.ANSWER_FORMAT, prompts.DESCRIPTIONS_HEADER, prompts.HINT_MARKER)
FEEDBACK = prompts.CRITIC_FEEDBACK["wrong_answer"]
CASES = {
    "plain": {},
    "structured": {"structured": True},
    "feedback": {"feedback": FEEDBACK},
    "described": {"described": True},
    "text only": {"described": True, "text_only": True},
    "hinted": {"hinted": True},
    "hinted, described": {"described": True, "hinted": True},
    "hinted, text only, feedback": {"described": True, "text_only": True, "hinted": True, "feedback": FEEDBACK},
}


def _text(message: dict) -> str:
    """The message's text, an image placeholder where an image stands."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", IMAGE_TOKEN) for p in content)


@pytest.fixture(scope="module")
def items(sample_dir):
    return [load_json(sample_dir / f"{task}_dev.json").items[0] for task in ("image2text", "text2image")]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_reasoner_request_carries_its_markers(items, case):
    case = dict(case)
    described, hinted = case.pop("described", False), case.pop("hinted", False)
    for item in items:
        descriptions = {p: f"A cover numbered {k}, drawn in a colour." for k, p in enumerate(item.images)}
        request = reason_request(item, descriptions if described else {}, hint=item.gold if hinted else None, **case)
        text = _text(request.messages[-1])
        assert f"'{prompts.ANSWER_LINE.format(letter='X')}'" in text  # the form of the line it is to end with
        if hinted:
            assert prompts.HINT_MARKER + item.gold in text
        else:
            assert prompts.HINT_MARKER not in text
        question = text
        if described:
            # the header, one line per image (option images labelled with their letter), a blank line
            assert text.count(prompts.DESCRIPTIONS_HEADER) == 1
            block = text[text.index(prompts.DESCRIPTIONS_HEADER) + len(prompts.DESCRIPTIONS_HEADER) :]
            block, question = block.split("\n\n", 1)
            lines = [line for line in block.splitlines() if line]
            assert len(lines) == len(item.images)
            for k, path in enumerate(item.images):
                label = "".join(f" (option {o.letter})" for o in item.options if o.image == path)
                assert f"Image {k + 1}{label}: {descriptions[path]}" in lines
        else:
            assert prompts.DESCRIPTIONS_HEADER not in text
        assert [o.letter for o in parse_options(question)] == item.letters


def test_a_describe_request_carries_no_marker_and_no_options(items):
    for path in items[1].cover_images():
        request = describe_request(path)
        text = "\n".join(_text(m) for m in request.messages)
        assert not [m for m in MARKERS if m in text]
        with pytest.raises(OptionParseError):
            parse_options(_text(request.messages[-1]))
