"""What a trained model folder records of its training (the prompt layout, the image cap, captions), and the
captions a describe-then-answer prompt carries."""

import json

import pytest

from distill.data.items import Item, Option
from distill.data.student import CAPTIONS_HEADER, prompt_messages
from distill.data.student_card import CARD_FILE, StudentCard, image_cap, read_card, write_card
from distill.errors import UserError


def test_the_card_records_layout_image_cap_and_captions_together(tmp_path):
    write_card(tmp_path, StudentCard(layout="system", max_pixels=200704, captions=True))
    assert json.loads((tmp_path / CARD_FILE).read_text()) == {
        "layout": "system",
        "max_pixels": 200704,
        "captions": True,
    }
    assert read_card(tmp_path) == StudentCard(layout="system", max_pixels=200704, captions=True)
    assert image_cap(tmp_path, None) == (200704, f"recorded with the model in {tmp_path / CARD_FILE}")
    assert image_cap(tmp_path, 3136, given="--max-pixels") == (3136, "--max-pixels")


def test_folders_trained_before_keep_their_earlier_card(tmp_path):
    (tmp_path / "distill_prompt.json").write_text('{"layout": "llamafactory"}')  # the earlier name, no cap
    assert read_card(tmp_path) == StudentCard(layout="llamafactory")
    assert image_cap(tmp_path, None)[0] == 262144
    assert read_card(tmp_path / "nothing") is None  # a folder cover-distill did not train


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
    (tmp_path / CARD_FILE).write_text(record)
    with pytest.raises(UserError) as exc:
        read_card(tmp_path)
    assert str(tmp_path / CARD_FILE) in str(exc.value) and "\n" not in str(exc.value)
