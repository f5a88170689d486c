import csv
import json
import shutil

import pytest

from distill.data.loaders import load_any
from distill.data.mac_csv import load_csv
from distill.data.records import DataError, load_json
from distill.data.registry import load_registry


def test_json_registry_and_csv_give_the_same_items(sample_dir, tmp_path):
    direct = load_json(sample_dir / "image2text_dev.json").items
    via_registry = [
        it
        for it in load_registry(sample_dir / "dataset_info.json").items
        if it.source.startswith(str(sample_dir / "image2text_dev.json"))
    ]
    assert [i.model_dump() for i in direct] == [i.model_dump() for i in via_registry]

    # MAC's CSV layout, written from the same records
    csv_path = sample_dir / "mac_image2text_dev.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["journal", "id", "question", "cover_image", "answer", "option_A", "option_B", "option_C", "option_D"]
        )
        for it in direct:
            w.writerow([it.journal, it.id, "Which story?", it.images[0], it.gold] + [o.text for o in it.options])
    from_csv = load_csv(csv_path, "image2text").items
    assert [(i.id, i.gold, i.journal, i.images, [o.text for o in i.options]) for i in from_csv] == [
        (i.id, i.gold, i.journal, i.images, [o.text for o in i.options]) for i in direct
    ]


def test_text2image_csv(sample_dir):
    direct = load_json(sample_dir / "text2image_dev.json").items
    csv_path = sample_dir / "mac_text2image_dev.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["journal", "id", "question", "cover_image", "answer", "option_A", "option_B", "option_C", "option_D"]
        )
        for it in direct:
            w.writerow([it.journal, it.id, "Which cover?", "a story", it.gold] + [o.image for o in it.options])
    from_csv = load_csv(csv_path, "text2image").items
    assert [(i.gold, [o.image for o in i.options]) for i in from_csv] == [
        (i.gold, [o.image for o in i.options]) for i in direct
    ]


def test_ids_hashed_when_absent_and_stable(sample_dir):
    a = load_json(sample_dir / "image2text_train.json").items
    b = load_json(sample_dir / "image2text_train.json").items
    assert all(i.id.startswith("h") for i in a)
    assert [i.id for i in a] == [i.id for i in b]
    assert len({i.id for i in a}) == len(a)


@pytest.fixture
def bad_corpus(sample_dir, tmp_path):
    """One good record and one of each kind of bad one."""
    good = json.loads((sample_dir / "image2text_dev.json").read_text())[0]
    img = sample_dir / good["images"][0]
    shutil.copy(img, tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(img.read_bytes()[:200])
    base = good | {"images": ["ok.png"]}
    records = [
        base | {"id": "good"},
        base | {"id": "missing-image", "images": ["nowhere.png"]},
        base | {"id": "corrupt-png", "images": ["corrupt.png"]},
        base | {"id": "two-images", "images": ["ok.png", "ok.png"]},
        base | {"id": "bad-gold", "output": "F"},
        base | {"id": "good"},  # duplicate id
        base | {"id": "no-options", "input": "<image>\nWhich story? None given."},
    ]
    path = tmp_path / "image2text_dev.json"
    path.write_text(json.dumps(records))
    return path


def test_malformed_records_each_named(bad_corpus):
    with pytest.raises(DataError) as err:
        load_json(bad_corpus)
    errors = {e.id: e for e in err.value.errors}
    assert set(errors) == {"missing-image", "corrupt-png", "two-images", "bad-gold", "good", "no-options"}
    assert errors["missing-image"].field == "images" and "not found" in errors["missing-image"].message
    assert "does not decode" in errors["corrupt-png"].message
    assert "placeholder" in errors["two-images"].message
    assert errors["bad-gold"].field == "output"
    assert errors["good"].message == "duplicate image2text id"
    assert "cannot parse the options" in errors["no-options"].message
    assert str(bad_corpus) in str(err.value) and "id=bad-gold" in str(err.value)


def test_skip_invalid_keeps_the_valid_rest(bad_corpus):
    loaded = load_json(bad_corpus, skip_invalid=True)
    assert [i.id for i in loaded.items] == ["good"]
    assert len(loaded.errors) == 6


def test_truncated_json_names_the_file(tmp_path):
    path = tmp_path / "image2text_train.json"
    path.write_text('[{"system": "s", "input": "x"')
    with pytest.raises(DataError, match="not valid JSON") as err:
        load_any(path)
    assert str(path) in str(err.value)


def test_registry_with_renamed_columns(sample_dir, tmp_path):
    recs = json.loads((sample_dir / "image2text_dev.json").read_text())
    # LLaMA-Factory resolves relative image paths against the registry's folder: these live elsewhere
    renamed = [
        {
            "sys": r["system"],
            "q": r["input"],
            "a": r["output"],
            "id": r["id"],
            "pics": [str(sample_dir / p) for p in r["images"]],
        }
        for r in recs
    ]
    (sample_dir / "renamed.json").write_text(json.dumps(renamed))
    reg = tmp_path / "dataset_info.json"
    reg.write_text(
        json.dumps(
            {
                "image2text_custom_dev": {
                    "file_name": str(sample_dir / "renamed.json"),
                    "columns": {"prompt": "sys", "query": "q", "response": "a", "images": "pics"},
                }
            }
        )
    )
    items = load_registry(reg).items
    assert [i.gold for i in items] == [r["output"] for r in recs]
    assert all(i.task == "image2text" for i in items)
