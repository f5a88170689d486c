from distill.data.records import load_json
from distill.data.splits import carve_validation


def test_validation_split_is_seeded_stratified_and_disjoint(sample_dir):
    items = (
        load_json(sample_dir / "image2text_train.json").items + load_json(sample_dir / "text2image_train.json").items
    )
    train, val = carve_validation(items, 0.25, seed=3)
    again_train, again_val = carve_validation(items, 0.25, seed=3)
    assert [i.id for i in val] == [i.id for i in again_val]
    assert not {i.id for i in train} & {i.id for i in val}
    assert len(train) + len(val) == len(items)
    for task in ("image2text", "text2image"):
        n_task = sum(i.task == task for i in items)
        n_val = sum(i.task == task for i in val)
        assert abs(n_val - 0.25 * n_task) <= 4  # rounding per (task, letter) stratum
    other = carve_validation(items, 0.25, seed=4)[1]
    assert {i.id for i in other} != {i.id for i in val}


def test_a_fraction_of_zero_carves_no_validation_item(monkeypatch, capsys, tmp_path, sample_dir):
    from store import open_store
    from tests.cli_main import run_main

    items = load_json(sample_dir / "image2text_train.json").items
    train, val = carve_validation(items, 0.0, seed=0)
    assert val == [] and len(train) == len(items)
    db = tmp_path / "s.db"
    ran = run_main(
        monkeypatch, capsys, "load", sample_dir / "image2text_train.json", "--db", db, "--validation-fraction", "0"
    )
    assert ran.code == 0, ran.err
    s = open_store(db)
    assert s.items(split="val") == [] and len(s.items(split="train")) == len(items)
    s.close()
