"""`distill audit`, and the same check before augment, export and training."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from distill.audit import LeakageError, audit_store
from distill.cli import app
from distill.ingest import DataConfig, ingest
from store import open_store

runner = CliRunner()


@pytest.fixture
def data_dir(sample_dir, tmp_path):
    d = tmp_path / "data"
    shutil.copytree(sample_dir, d)
    return d


def _store(data_dir, db):
    s = open_store(db)
    ingest(
        s,
        DataConfig(
            train=[str(data_dir / f"{t}_train.json") for t in ("image2text", "text2image")],
            test=[str(data_dir / f"{t}_test.json") for t in ("image2text", "text2image")],
            validation_fraction=0.25,
        ),
    )
    return s


def test_the_sample_data_is_clean(data_dir, tmp_path):
    s = _store(data_dir, tmp_path / "s.db")
    report = audit_store(s)
    assert report.leaks == 0
    assert [c.checked > 0 for c in report.checks] == [True, False, True, True]  # no augmented items: no parents
    res = runner.invoke(app, ["audit", "--db", str(tmp_path / "s.db")])
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
    assert res.exit_code == 1 and "covers and distractor covers (sha256) | " in res.output
    assert "image2text/" in res.output  # the leak names the items involved
    from distill.pipeline import run_augment, run_export
    from distill.train.examples import ExampleOptions

    with pytest.raises(LeakageError, match="--allow-leakage"):
        run_export("sft", tmp_path / "s.db", tmp_path / "export", "trl", ExampleOptions(direct_share=1.0))
    from distill.augment import AugmentConfig

    with pytest.raises(LeakageError):
        run_augment(tmp_path / "s.db", tmp_path / "aug", AugmentConfig(recombine=False))
    from distill.train.sft import main as sft_main

    args = [
        "--model_name_or_path",
        str(tiny_model_dir),
        "--db",
        str(tmp_path / "s.db"),
        "--output_dir",
        str(tmp_path / "sft"),
        "--max_steps",
        "1",
        "--direct_share",
        "1.0",
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
