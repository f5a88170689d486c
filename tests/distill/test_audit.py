"""`distill audit`, and the same check before augment, export and training."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from distill.audit import LeakageError, audit_store
from distill.cli import app
from store import open_store
from tests.helpers import ingested

runner = CliRunner()


@pytest.fixture
def data_dir(sample_dir, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(sample_dir, d)
    return d


def _store(data_dir, db):
    return ingested(data_dir, db, ("train", "test"), validation_fraction=0.25)


def test_the_sample_data_is_clean(data_dir, tmp_path):
    s = _store(data_dir, tmp_path / "s.db")
    report = audit_store(s)
    assert report.leaks == 0 and report.distractor_only == 0
    assert {k: n > 0 for k, n in report.checked.items()} == {
        "items": True,
        "parents": False,  # no augmented items: no parents
        "covers": True,
        "stories": True,
    }
    res = runner.invoke(app, ["audit", "--db", str(tmp_path / "s.db"), "--strict"])
    assert res.exit_code == 0 and "no leakage found" in res.output


def _leak_a_test_cover(data_dir):
    """A training record whose cover is a test item's cover, under another file name (same bytes)."""
    test = json.loads((data_dir / "image2text_test.json").read_text())
    train = json.loads((data_dir / "image2text_train.json").read_text())
    shutil.copy(data_dir / test[0]["images"][0], data_dir / "images" / "renamed_copy.png")
    train[0]["images"] = ["images/renamed_copy.png"]
    (data_dir / "image2text_train.json").write_text(json.dumps(train))


def test_a_test_cover_in_training_data_is_found_and_blocks(data_dir, tmp_path, tiny_model_dir):
    _leak_a_test_cover(data_dir)
    _store(data_dir, tmp_path / "s.db").close()
    res = runner.invoke(app, ["audit", "--db", str(tmp_path / "s.db")])
    assert res.exit_code == 1 and "(b) its cover or story in a training item's gold pair | 1 | yes |" in res.output
    assert "image2text/" in res.output  # the leak names the items involved
    from distill.pipeline import run_augment, run_export
    from distill.train.examples import ExampleOptions

    with pytest.raises(LeakageError, match="--allow-leakage"):
        run_export("sft", tmp_path / "s.db", tmp_path / "export", "trl", ExampleOptions())
    from distill.augment import AugmentConfig

    with pytest.raises(LeakageError):
        run_augment(tmp_path / "s.db", tmp_path / "aug", AugmentConfig(recombine=False))
    from tests.helpers import sft_main

    args = [
        "--model_name_or_path",
        str(tiny_model_dir),
        "--db",
        str(tmp_path / "s.db"),
        "--output_dir",
        str(tmp_path / "sft"),
        "--max_steps",
        "1",
        "--reason_weight",
        "0",
        "--report_to",
        "none",
        "--max_pixels",
        "3136",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--use_peft",
        "false",
    ]
    with pytest.raises(LeakageError, match="sft refused"):
        sft_main(args)
    res = sft_main(args + ["--allow_leakage", "true"])
    [run] = open_store(tmp_path / "s.db").train_runs()
    assert run["id"] == res["run_id"] and run["allow_leakage"] == 1 and json.loads(run["audit"])["leaks"] >= 1


# --- kinds of leakage: MAC draws distractors from the whole pool, so held-out covers and stories recur as options


def _mac_like(data_dir):
    """Train + dev (held out, with golds) records, and the dev image2text item whose cover and story get reused."""
    read = lambda name: json.loads((data_dir / name).read_text())
    return read("image2text_train.json"), read("text2image_train.json"), read("image2text_dev.json")[0]


def _story(record: dict, letter: str) -> str:
    [line] = [ln for ln in record["input"].splitlines() if ln.startswith(f"{letter}. ")]
    return line[3:]


def _held_out_store(data_dir, db, i2t_train, t2i_train):
    (data_dir / "image2text_train.json").write_text(json.dumps(i2t_train))
    (data_dir / "text2image_train.json").write_text(json.dumps(t2i_train))
    return ingested(data_dir, db, ("train", "dev"), validation_fraction=0.0)


def test_held_out_content_seen_only_as_distractors_is_reported_not_refused(data_dir, tmp_path):
    i2t, t2i, held = _mac_like(data_dir)
    cover, story = held["images"][0], _story(held, held["output"])
    shutil.copy(data_dir / cover, data_dir / "images" / "held_out_cover_again.jpg")  # same bytes, another name
    for rec in t2i[:2]:  # two training items show the held-out cover as a wrong option
        wrong = next(k for k, L in enumerate("ABCD") if rec["output"] != L)
        rec["images"][wrong] = "images/held_out_cover_again.jpg"
    wrong = next(L for L in "ABCD" if i2t[0]["output"] != L)  # and one shows its story as a wrong option
    i2t[0]["input"] = i2t[0]["input"].replace(_story(i2t[0], wrong), story)
    s = _held_out_store(data_dir, tmp_path / "s.db", i2t, t2i)
    report = audit_store(s)
    s.close()
    # three findings, one held-out item: counted once, as (c)
    assert (report.leaks, report.distractor_only) == (0, 1)
    [(key, where)] = report.found["distractor"].items()
    assert key == f"image2text/{held['id']}" and len(where) == 3
    res = runner.invoke(app, ["audit", "--db", str(tmp_path / "s.db")])
    assert res.exit_code == 0, res.output
    assert "(c) its cover or story only as a distractor | 1 | with --strict |" in res.output
    assert "no held-out answer in training items" in res.output
    strict = runner.invoke(app, ["audit", "--db", str(tmp_path / "s.db"), "--strict"])
    assert strict.exit_code == 1 and "1 held-out item(s) reachable" in strict.output
    # what trains goes on by default (here augment), and is refused when strict
    from distill.audit import require_clean
    from distill.augment import AugmentConfig
    from distill.pipeline import run_augment

    run_augment(tmp_path / "s.db", tmp_path / "aug", AugmentConfig(recombine=False), show_progress=False)
    with pytest.raises(LeakageError, match=r"^export refused: 1 held-out item\(s\)[^\n]*\(c\)[^\n]*$"):
        require_clean(report, False, "export", strict=True)


def test_a_held_out_gold_pair_in_training_is_refused(data_dir, tmp_path):
    i2t, t2i, held = _mac_like(data_dir)
    shutil.copy(data_dir / held["images"][0], data_dir / "images" / "held_out_cover_again.jpg")
    rec = i2t[0]  # a training item asks about the held-out cover and answers with its story
    rec["images"] = ["images/held_out_cover_again.jpg"]
    rec["input"] = rec["input"].replace(_story(rec, rec["output"]), _story(held, held["output"]))
    s = _held_out_store(data_dir, tmp_path / "s.db", i2t, t2i)
    report = audit_store(s)
    s.close()
    assert report.leaks == 1 and list(report.found["pair"]) == [f"image2text/{held['id']}"]
    res = runner.invoke(app, ["audit", "--db", str(tmp_path / "s.db")])
    assert res.exit_code == 1 and "1 held-out item(s) reachable" in res.output
    from distill.pipeline import run_export
    from distill.train.examples import ExampleOptions

    with pytest.raises(LeakageError, match=r"^export refused: 1 held-out item\(s\)[^\n]*\(b\)[^\n]*$"):
        run_export("sft", tmp_path / "s.db", tmp_path / "export", "trl", ExampleOptions())


def test_a_held_out_item_itself_in_training_counts_once_as_a(sample_dir):
    from distill.audit import audit_items
    from distill.data.records import load_json

    held = load_json(sample_dir / "image2text_dev.json").items[:2]
    report = audit_items(held, [held[0], held[0].model_copy(update={"id": "copy", "parents": [held[0].key]})])
    assert (report.count("item"), report.count("pair"), report.count("distractor")) == (1, 0, 0)
    assert report.leaks == 1 and len(report.found["item"][held[0].key]) == 2


def _repeat_options(data_dir):
    """One image2text training record shows its story A again as C; one text2image record shows cover A again as D,
    copied under another name (the same bytes)."""
    i2t = json.loads((data_dir / "image2text_train.json").read_text())
    from distill.data.records import load_json

    first = load_json(data_dir / "image2text_train.json").items[0]
    i2t[0]["input"] = i2t[0]["input"].replace(first.options[2].text, first.options[0].text)
    i2t[0]["output"] = "B" if i2t[0]["output"] in ("A", "C") else i2t[0]["output"]
    (data_dir / "image2text_train.json").write_text(json.dumps(i2t))
    t2i = json.loads((data_dir / "text2image_train.json").read_text())
    shutil.copy(data_dir / t2i[0]["images"][0], data_dir / "images" / "same_cover_again.jpg")
    t2i[0]["images"][3] = "images/same_cover_again.jpg"
    t2i[0]["output"] = "B" if t2i[0]["output"] in ("A", "D") else t2i[0]["output"]
    (data_dir / "text2image_train.json").write_text(json.dumps(t2i))


def test_items_whose_options_repeat_are_counted(data_dir, tmp_path):
    _repeat_options(data_dir)
    s = _store(data_dir, tmp_path / "s.db")
    report = audit_store(s)
    assert sorted(report.repeated.values()) == ["A=C", "A=D"]
    assert report.as_dict()["repeated_options"] == 2 and report.leaks == 0
    res = runner.invoke(app, ["audit", "--db", str(tmp_path / "s.db")])
    assert res.exit_code == 0 and "2 item(s) show the same story or cover under two letters" in res.output
    from distill.augment import AugmentConfig, augment

    new, augmented = augment(s.items(), AugmentConfig(permutations=1, recombine=False))
    assert sorted(augmented.repeated) == sorted(report.repeated)
    assert not {p for it in new for p in it.parents} & set(report.repeated)  # never copied
