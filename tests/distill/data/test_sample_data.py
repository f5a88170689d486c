import json

from distill.data.loaders import load_json


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


def _motifs(path: str) -> tuple[str, str, str]:
    _, colour, shape, layout = path.rsplit("/", 1)[1][:-4].split("_")  # journal_colour_shape_layout.png
    return colour, shape, layout


def test_colour_decides_and_shape_alone_misleads(sample_dir):
    """Learnable by design: the cover's colour names exactly one option; its shape alone often does not."""
    from distill.data.sample import COLOURS

    colour_hits = shape_hits = total = 0
    for it in load_json(sample_dir / "image2text_train.json").items:
        colour, shape, _ = _motifs(it.images[0])
        named = [{w for w in COLOURS if f" {w} " in o.text} for o in it.options]
        assert all(len(n) == 1 for n in named) and len(set.union(*named)) == 4  # one colour each, all distinct
        colour_hits += it.options[[colour in n for n in named].index(True)].letter == it.gold
        with_shape = [o.letter for o in it.options if f" {shape}s " in o.text]
        shape_hits += with_shape == [it.gold]
        total += 1
    for it in load_json(sample_dir / "text2image_train.json").items:
        assert len({_motifs(p)[0] for p in it.images}) == 4
    assert colour_hits == total
    assert shape_hits / total < 0.6


def test_generator_is_deterministic(tmp_path):
    from distill.data.sample import generate

    a = generate(tmp_path / "a", 4, 2, 2, seed=7)
    b = generate(tmp_path / "b", 4, 2, 2, seed=7)
    assert (a / "image2text_train.json").read_text() == (b / "image2text_train.json").read_text()
    assert (a / "images").exists() and sorted(p.name for p in (a / "images").iterdir()) == sorted(
        p.name for p in (b / "images").iterdir()
    )
