"""An output place that cannot be written ends a command with one line naming the path and the reason, not a
traceback, and before any work is spent or anything half-written is left.

As root, chmod stops nothing, so the unwritable place is one under a regular FILE (`blocker/sub/out`): no user,
root included, can make a folder there."""

import json
import os

import pytest

from tests.cli_main import run_main
from tests.helpers import ingested


@pytest.fixture(scope="module")
def stocked(sample_dir, tmp_path_factory):
    """A store with train and test items, one trace, and an answers folder that scores."""
    work = tmp_path_factory.mktemp("unwritable")
    db = work / "s.db"
    s = ingested(sample_dir, db, ("train", "test"), tasks=("image2text",))
    [item] = s.items(split="train")[:1]
    run = s.start_run("graph", {}, run_id="r1")
    s.finish_item(
        run,
        item.key,
        1,
        "accepted",
        [{"sample": 0, "attempt": 0, "hinted": 0, "rationale": "r", "answer": item.gold, "verdict": "accepted"}],
    )
    s.close()
    answers = work / "answers"
    answers.mkdir()
    gold = json.loads((sample_dir / "image2text_test_gold.json").read_text())
    (answers / "image2text_answer.json").write_text(json.dumps(gold))
    return work


COMMANDS = {
    "load": lambda s, d, out: ["load", d / "image2text_train.json", "--db", out / "s.db"],
    "predict": lambda s, d, out: [
        "predict",
        "--model",
        s / "no-model",
        "--data",
        d / "image2text_test.json",
        "--out",
        out,
    ],
    "predict --from-llamafactory": lambda s, d, out: [
        "predict",
        "--from-llamafactory",
        s / "answers" / "image2text_answer.json",
        "--data",
        d / "image2text_test.json",
        "--out",
        out,
    ],
    "augment": lambda s, d, out: ["augment", "--db", s / "s.db", "--out", out, "--no-recombine"],
    "eval": lambda s, d, out: [
        "eval",
        "--answers",
        s / "answers",
        "--gold",
        d / "image2text_test_gold.json",
        "--out",
        out,
    ],
    "traces export": lambda s, d, out: ["traces", "export", "--db", s / "s.db", "--out", out / "t.jsonl"],
    "export": lambda s, d, out: ["export", "eval", "--db", s / "s.db", "--split", "test", "--out", out],
    "sample-data": lambda s, d, out: ["sample-data", out, "--n-train", "2", "--n-dev", "1", "--n-test", "1"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unwritable_output_is_one_line(monkeypatch, capsys, tmp_path, sample_dir, stocked, command):
    from store import open_store

    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where a folder would have to be\n")
    out = blocker / "sub" / "out"
    before = len(open_store(stocked / "s.db").items())
    ran = run_main(monkeypatch, capsys, *COMMANDS[command](stocked, sample_dir, out))
    line = ran.one_error_line(str(blocker / "sub"))
    assert f"{blocker} is a file, not a folder" in line, line
    assert sorted(os.listdir(tmp_path)) == ["blocker"]  # nothing half-written beside it
    assert not list(stocked.rglob(".*"))  # no temporary file left anywhere
    assert len(open_store(stocked / "s.db").items()) == before  # augment added nothing to the store


def test_a_folder_that_is_not_writable_is_named(tmp_path, monkeypatch):
    from distill.data.fileio import require_writable_dir

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a read-only mount or chmod would answer
    with pytest.raises(PermissionError) as err:
        require_writable_dir(tmp_path / "new" / "out")
    assert err.value.filename == str(tmp_path / "new" / "out") and str(tmp_path) in err.value.strerror


@pytest.mark.parametrize("command", ["sft", "dpo", "merge"])
def test_training_finds_an_unwritable_output_before_loading_weights(
    monkeypatch, capsys, tmp_path, stocked, tiny_model_dir, command
):
    import transformers

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before the output folder was checked")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", no_weights)
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where a folder would have to be\n")
    out = blocker / "sub" / "out"
    if command == "merge":
        adapter = tmp_path / "adapter"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
        args = ["merge", adapter, out]
    else:
        model = ["--model_name_or_path", tiny_model_dir, "--output_dir", out, "--reason_weight", "0"]
        args = [command, "--db", stocked / "s.db", *model, "--report_to", "none"]
    line = run_main(monkeypatch, capsys, *args).one_error_line(str(blocker))
    assert "is a file, not a folder" in line, line
    assert sorted(os.listdir(tmp_path)) == ["adapter", "blocker"] if command == "merge" else ["blocker"]
