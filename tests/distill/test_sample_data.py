import json

from distill.loaders import load_json


def test_sample_data_is_valid_and_small(sample_dir):
    size = sum(p.stat().st_size for p in sample_dir.rglob("*") if p.is_file())
    assert size < 5 * 1024 * 1024
    for task in ("image2text", "text2image"):
        for split in ("train", "dev", "test"):
            items = load_json(sample_dir / f"{task}_{split}.json").items
            assert items and all(len(i.options) == 4 for i in items)
            if split == "test":
                assert all(i.gold is None for i in items)
    registry = json.loads((sample_dir / "dataset_info.json").read_text())
    assert "image2text_train" in registry and "text2image_test" in registry


def test_sample_data_is_learnable_by_reading_motifs(sample_dir):
    """A reader that knows which motif words the cover shows beats chance (25%) by far."""
    hits = total = 0
    for it in load_json(sample_dir / "image2text_train.json").items:
        name = it.images[0].rsplit("/", 1)[1][:-4]  # journal_colour_shape_layout: the motifs drawn
        _, colour, shape, _layout = name.split("_")
        scores = [(colour in o.text.split(":")[1][:40]) + (shape in o.text) for o in it.options]
        pick = it.options[scores.index(max(scores))].letter
        hits += pick == it.gold
        total += 1
    assert hits / total > 0.5


def test_generator_is_deterministic(tmp_path):
    from distill.sample_data import generate

    a = generate(tmp_path / "a", 4, 2, 2, seed=7)
    b = generate(tmp_path / "b", 4, 2, 2, seed=7)
    assert (a / "image2text_train.json").read_text() == (b / "image2text_train.json").read_text()
    assert (a / "images").exists() and sorted(p.name for p in (a / "images").iterdir()) == \
           sorted(p.name for p in (b / "images").iterdir())
