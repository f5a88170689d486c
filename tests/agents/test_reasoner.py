import pytest

from agents.reasoner import parse_answer, rationale_of, reason_request
from distill.data.records import load_json


@pytest.mark.parametrize(
    "text,expected",
    [
        ("blah blah\nAnswer: C", "C"),
        ("reasoning...\nanswer: (b)", "B"),
        ("**Answer:** D", "D"),
        ("So the correct answer is A.", "A"),
        ("Option B is the best match here.", "B"),
        ("thinking\n\nC", "C"),
        ('{"reasoning": "x", "answer": "D"}', "D"),
        ("Answer: A ... wait, on reflection Answer: B", "B"),
        ("no letter committed here", None),
        ("Answer: F", None),  # not an option
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text, list("ABCD")) == expected


def test_rationale_drops_the_answer_line():
    assert rationale_of("step one\nstep two\nAnswer: B\n") == "step one\nstep two"


def test_request_carries_images_descriptions_feedback_and_hint(sample_dir):
    item = load_json(sample_dir / "text2image_dev.json").items[0]
    descs = {p: f"desc {k}" for k, p in enumerate(item.images)}
    req = reason_request(item, descs, feedback="too short", hint=item.gold)
    content = req.messages[1]["content"]
    assert [p["image"] for p in content if p["type"] == "image"] == item.images
    text = "".join(p.get("text", "") for p in content)
    assert "desc 3" in text and "too short" in text and f"matching option is {item.gold}" in text
    text_only = reason_request(item, descs, text_only=True)
    assert not [p for p in text_only.messages[1]["content"] if p["type"] == "image"]
