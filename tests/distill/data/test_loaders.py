import csv
import json
import shutil

import pytest

from distill.data.loaders import load_any
from distill.data.mac_csv import load_csv
from distill.data.records import DataError, load_json
from distill.data.registry import load_registry
from tests.helpers import write_mac_csv


def test_json_registry_and_csv_give_the_same_items(sample_dir, tmp_path):
    direct = load_json(sample_dir / "image2text_dev.json").items
    via_registry = [
        it
        for it in load_registry(sample_dir / "dataset_info.json").items
        if it.source.startswith(str(sample_dir / "image2text_dev.json"))
    ]
    assert [i.model_dump() for i in direct] == [i.model_dump() for i in via_registry]

    # MAC's CSV layout, written from the same records
    csv_path = write_mac_csv(sample_dir / "mac_image2text_dev.csv", direct)
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


def test_a_cover_no_model_can_read_is_refused_at_load_naming_the_record(bad_corpus, tmp_path):
    from PIL import Image

    Image.new("RGB", (1, 100_000), (200, 10, 10)).save(tmp_path / "strip.png")
    good = json.loads(bad_corpus.read_text())[0]
    path = tmp_path / "image2text_test.json"
    path.write_text(json.dumps([good | {"id": "strip", "images": ["strip.png"]}]))
    with pytest.raises(DataError) as err:
        load_json(path)
    [e] = err.value.errors
    assert (e.id, e.field) == ("strip", "images")
    assert "strip.png" in e.message and "1x100000" in e.message and "100000 times the other" in e.message
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["image2text_train.json", "dataset_info.json"])
def test_json_nested_too_deeply_is_one_line_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="nested too deeply") as err:
        load_any(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_repeated_options_are_named_at_load(sample_dir, tmp_path, caplog):
    i2t = json.loads((sample_dir / "image2text_dev.json").read_text())[0]
    t2i = json.loads((sample_dir / "text2image_dev.json").read_text())[0]
    story = load_json(sample_dir / "image2text_dev.json").items[0].options[0].text
    i2t_input = i2t["input"].replace(load_json(sample_dir / "image2text_dev.json").items[0].options[2].text, story)
    i2t["images"] = [str(sample_dir / p) for p in i2t["images"]]
    (tmp_path / "image2text_dev.json").write_text(json.dumps([i2t | {"id": "same-story", "input": i2t_input}]))
    images = [str(sample_dir / p) for p in t2i["images"]]
    shutil.copy(images[0], tmp_path / "copy.png")  # the same cover under another name
    images[3] = str(tmp_path / "copy.png")
    (tmp_path / "text2image_dev.json").write_text(json.dumps([t2i | {"id": "same-cover", "images": images}]))
    with caplog.at_level("WARNING"):
        assert load_json(tmp_path / "image2text_dev.json").items  # accepted, with a warning
        assert load_json(tmp_path / "text2image_dev.json").items
    assert "id=same-story: options A and C show the same story" in caplog.text
    assert "id=same-cover: options A and D show the same cover" in caplog.text
    assert str(tmp_path / "image2text_dev.json") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # unread covers compare by path: distinct files are distinct covers
        load_json(sample_dir / "text2image_dev.json", check_images=False)
    assert "show the same" not in caplog.text


def test_mac_csvs_in_macs_own_layout_load_each_story_once(sample_dir, tmp_path):
    from distill.data.stories import story_of
    from tests.mac_layout import write_mac_csvs

    paths = write_mac_csvs(sample_dir, tmp_path)
    want = {t: load_json(sample_dir / f"{t}_train.json").items for t in paths}
    i2t = load_csv(paths["image2text"]).items
    assert [(it.id, it.gold, len(it.options), it.gold_option.text) for it in i2t] == [
        (it.id, it.gold, 4, it.gold_option.text) for it in want["image2text"]
    ]  # option_A_path, option_A_embedding_name, ... are not options
    t2i = load_csv(paths["text2image"]).items
    assert [(it.gold, [o.image for o in it.options]) for it in t2i] == [
        (it.gold, [o.image for o in it.options]) for it in want["text2image"]
    ]
    for it, original in zip(t2i, want["text2image"]):
        story = story_of(it)
        assert " ".join(story.split()) == " ".join(story_of(original).split()), it.id
        first = story.splitlines()[0]
        assert it.input.count(first) == 1, it.input  # never the story twice


def test_a_gap_in_the_option_columns_is_named(tmp_path):
    from tests.mac_layout import header

    with open(tmp_path / "mac_image2text_test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header())
        w.writerow(
            ["Nature", "2021_1", "Which?", "c.png", "", "s1", "", "", "", "", "", "", "", "s3", "", "", "", "s4"]
        )
    with pytest.raises(DataError, match=r"id=2021_1 \[option_\*\]: options A, C, D are not a run from A"):
        load_csv(tmp_path / "mac_image2text_test.csv", check_images=False)


def test_a_long_file_shows_a_progress_bar_while_its_records_are_checked(sample_dir, tmp_path, monkeypatch):
    import rich.progress

    shown = []
    real = rich.progress.track
    monkeypatch.setattr(
        rich.progress,
        "track",
        lambda seq, description, **kw: shown.append((description, kw["disable"])) or real(seq, description, **kw),
    )
    records = json.loads((sample_dir / "image2text_dev.json").read_text())
    many = [
        r | {"id": f"r{k}-{j}", "images": [str(sample_dir / p) for p in r["images"]]}
        for k in range(50)
        for j, r in enumerate(records)
    ]
    (tmp_path / "image2text_dev.json").write_text(json.dumps(many))
    assert len(load_json(tmp_path / "image2text_dev.json").items) == len(many) >= 200
    load_json(sample_dir / "image2text_dev.json")
    assert shown == [("checking image2text_dev.json", False), ("checking image2text_dev.json", True)]
