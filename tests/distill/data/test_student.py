"""What a trained model folder records of its training: the prompt layout and the image cap."""

import json

import pytest

from distill.data.student import LAYOUT_FILE, recorded_layout, recorded_max_pixels, write_layout
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


@pytest.mark.parametrize("record", ['{"layout": "llamafactory", "max_pixels": "big"}', '{"max_pixels": 3136}', "{"])
def test_a_broken_record_is_one_line_naming_the_file(tmp_path, record):
    (tmp_path / LAYOUT_FILE).write_text(record)
    with pytest.raises(UserError) as exc:
        recorded_max_pixels(tmp_path)
    assert str(tmp_path / LAYOUT_FILE) in str(exc.value) and "\n" not in str(exc.value)
