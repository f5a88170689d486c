"""What a trained model folder records of its training (the prompt layout, the image cap, captions), and the
captions a describe-then-answer prompt carries."""

import json

import pytest

from distill.data.items import Item, Option
from distill.data.student import (
    CAPTIONS_HEADER,
    LAYOUT_FILE,
    prompt_messages,
    recorded_captions,
    recorded_layout,
    recorded_max_pixels,
    write_layout,
)
from distill.errors import UserError


def test_the_layout_and_the_image_cap_are_recorded_together(tmp_path):
    write_layout(tmp_path, "system", max_pixels=200704)
    assert json.loads((tmp_path / LAYOUT_FILE).read_text()) == {"layout": "system", "max_pixels": 200704}
    assert (recorded_layout(tmp_path), recorded_max_pixels(tmp_path)) == ("system", 200704)


def test_older_records_hold_only_the_layout(tmp_path):
    write_layout(tmp_path, "llamafactory")  # the call as it was: still works, records no cap
    assert json.loads((tmp_path / LAYOUT_FILE).read_text()) == {"layout": "llamafactory"}
    assert (recorded_layout(tmp_path), recorded_max_pixels(tmp_path)) == ("llamafactory", None)
    assert (recorded_layout(tmp_path / "nothing"), recorded_max_pixels(tmp_path / "nothing")) == (None, None)


def test_a_captioned_model_records_it(tmp_path):
    write_layout(tmp_path, "llamafactory", max_pixels=3136, captions=True)
    assert recorded_captions(tmp_path) is True
    write_layout(tmp_path, "llamafactory", max_pixels=3136)
    assert recorded_captions(tmp_path) is False and "captions" not in (tmp_path / LAYOUT_FILE).read_text()


def test_captions_follow_the_question_one_line_a_cover():
    story = Item(
        id="q1",
        task="text2image",
        input="Which cover matches this story?\nA. <image>\nB. <image>",
        options=[
            Option(letter="A", text="<image>", image="/c/x.jpg"),
            Option(letter="B", text="<image>", image="/c/y.jpg"),
        ],
        images=["/c/x.jpg", "/c/y.jpg"],
    )
    captions = {"/c/x.jpg": "red\ncircles <image> in a ring", "/c/y.jpg": "blue squares"}
    content = prompt_messages(story, captions=captions)[-1]["content"]
    assert [p["image"] for p in content if p["type"] == "image"] == story.images  # the placeholders stay the covers'
    text = "".join(p.get("text", "") for p in content)
    assert text.endswith(f"B. \n{CAPTIONS_HEADER}\nA. red circles image in a ring\nB. blue squares")
    again = story.model_copy(
        update={
            "input": story.input + "\nC. <image>",
            "options": [*story.options, Option(letter="C", text="<image>", image="/c/x.jpg")],
            "images": [*story.images, "/c/x.jpg"],
        }
    )  # one cover under two letters: a line for each letter, in letter order
    text = "".join(p.get("text", "") for p in prompt_messages(again, captions=captions)[-1]["content"])
    assert text.endswith("\nA. red circles image in a ring\nB. blue squares\nC. red circles image in a ring")
    cover = Item(
        id="q2", task="image2text", input="<image>\nWhich story?\nA. one\nB. two", options=[], images=["/c/x.jpg"]
    )
    text = "".join(p.get("text", "") for p in prompt_messages(cover, "cot", captions=captions)[-1]["content"])
    assert f"B. two\n{CAPTIONS_HEADER}\nCover: red circles image in a ring\nThink step by step" in text


@pytest.mark.parametrize(
    "record",
    [
        '{"layout": "llamafactory", "max_pixels": "big"}',
        '{"max_pixels": 3136}',
        "{",
        '{"layout": "system", "captions": "yes"}',
    ],
)
def test_a_broken_record_is_one_line_naming_the_file(tmp_path, record):
    (tmp_path / LAYOUT_FILE).write_text(record)
    with pytest.raises(UserError) as exc:
        recorded_max_pixels(tmp_path)
    assert str(tmp_path / LAYOUT_FILE) in str(exc.value) and "\n" not in str(exc.value)
