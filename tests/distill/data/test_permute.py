import pytest

from distill.data.options import parse_options
from distill.data.permute import permute, rotation
from distill.data.records import load_json


@pytest.mark.parametrize("task", ["image2text", "text2image"])
def test_permutation_moves_content_with_the_gold(sample_dir, task):
    for item in load_json(sample_dir / f"{task}_dev.json").items:
        for k in range(4):
            p = permute(item, rotation(4, k))
            assert p.gold_option.text == item.gold_option.text
            assert p.gold_option.image == item.gold_option.image
            if task == "image2text":
                reparsed = parse_options(p.input)
                assert [o.text for o in reparsed] == [o.text for o in p.options]
            else:
                assert [o.image for o in p.options] == p.images


def test_rotation_is_a_permutation():
    for k in range(4):
        assert sorted(rotation(4, k)) == [0, 1, 2, 3]
    assert rotation(4, 1) == [3, 0, 1, 2]
