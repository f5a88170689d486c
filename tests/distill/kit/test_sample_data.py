import json
from pathlib import Path

from distill.data.records import load_json


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


def _truth(sample_dir):
    """Image path -> (colour, shape, layout), from covers.json (the generator's record; no stage reads it)."""
    truth = json.loads((sample_dir / "covers.json").read_text())
    return lambda path: tuple(truth[str(Path(path).relative_to(sample_dir))][k] for k in ("colour", "shape", "layout"))


def test_colour_decides_and_shape_alone_misleads(sample_dir):
    """Learnable by design: the cover's colour names exactly one option; its shape alone often does not."""
    from distill.kit.sample_data import COLOURS

    _motifs = _truth(sample_dir)
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
    from distill.kit.sample_data import generate

    a = generate(tmp_path / "a", n_train=4, n_dev=2, n_test=2, seed=7)
    b = generate(tmp_path / "b", n_train=4, n_dev=2, n_test=2, seed=7)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert any(p.suffix == ".jpg" for p in files) and files == sorted(
        p.relative_to(b) for p in b.rglob("*") if p.is_file()
    )
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in files)  # records and covers, byte for byte


def test_held_out_motifs_never_reach_training(sample_dir, tmp_path):
    """Validation and test items take their gold motifs from pools of their own; no training item shows them."""
    from distill.kit.sample_data import generate

    out = generate(tmp_path / "v", n_train=40, n_dev=2, n_test=20, n_val=20, seed=0)
    motif = _truth(out)
    gold = {}
    for split in ("train", "val", "test"):
        gold[split] = set()
        for task in ("image2text", "text2image"):
            for it in load_json(out / f"{task}_{split}.json").items:
                letter = json.loads((out / f"{task}_test_gold.json").read_text()) if split == "test" else None
                g = it.gold or next(r["output"] for r in letter if r["id"] == it.id)
                cover = it.images[0] if task == "image2text" else it.images[it.letters.index(g)]
                gold[split].add(motif(cover))
    train_covers = {
        motif(p)
        for task in ("image2text", "text2image")
        for it in load_json(out / f"{task}_train.json").items
        for p in it.images
    }
    assert not (gold["val"] | gold["test"]) & train_covers
    assert not gold["val"] & gold["test"]
