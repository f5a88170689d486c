"""The CLI is a thin face: these check its wiring and its error messages."""

import json

import pytest
from typer.testing import CliRunner

from distill.cli import app
from tests.cli_main import run_main
from tests.helpers import ingested

runner = CliRunner()


def _seed_store(db, sample_dir):
    from distill.data.records import load_json
    from store import open_store
    from store.db import call_row

    s = open_store(db)
    items = load_json(sample_dir / "image2text_dev.json").items[:2]
    s.add_items(items)
    run = s.start_run("graph", {}, run_id="r1")
    call = call_row(run, items[0].key, "reasoner", "teacher-model", {}, "amber stripes\nAnswer: A", 40, 9, 12.0)
    s.record_call(call | {"item_attempt": 1})
    s.finish_item(
        run,
        items[0].key,
        1,
        "accepted",
        [
            {
                "id": "t-acc",
                "sample": 0,
                "attempt": 1,
                "hinted": 0,
                "rationale": "violet hexagons in a ring",
                "answer": items[0].gold,
                "verdict": "accepted",
                "reason": "ok",
            },
            {
                "id": "t-rej",
                "sample": 0,
                "attempt": 0,
                "hinted": 0,
                "rationale": "amber stripes",
                "answer": "A",
                "verdict": "rejected",
                "reason": "wrong_answer",
                "feedback": "look again",
                "call_id": call["id"],
            },
        ],
    )
    s.close()


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("graph", "demo", "traces", "load", "sample-data", "tiny-model"):
        assert cmd in res.output


def test_tiny_model_init_range(tmp_path):
    import torch
    from safetensors.torch import load_file

    res = runner.invoke(app, ["tiny-model", str(tmp_path / "m"), "--init-range", "0.2"])
    assert res.exit_code == 0, res.output
    weights = load_file(tmp_path / "m" / "model.safetensors")
    q = weights["model.layers.0.self_attn.q_proj.weight"]  # the language model (saved key names)
    assert 0.15 < float(q.float().std()) < 0.25
    assert torch.isfinite(q).all()


def test_load_reports_splits(tmp_path, sample_dir):
    db = tmp_path / "s.db"
    res = runner.invoke(
        app,
        ["load", str(sample_dir / "image2text_train.json"), str(sample_dir / "image2text_test.json"), "--db", str(db)],
    )
    assert res.exit_code == 0, res.output
    assert "train: image2text" in res.output and "test: image2text 8" in res.output and "val: image2text" in res.output


def test_traces_commands(tmp_path, sample_dir):
    db = tmp_path / "s.db"
    _seed_store(db, sample_dir)
    out = runner.invoke(app, ["traces", "list", "--db", str(db), "--json"])
    assert {r["id"] for r in json.loads(out.output)} == {"t-acc", "t-rej"}
    out = runner.invoke(app, ["traces", "list", "--db", str(db), "--accepted", "--json"])
    assert [r["id"] for r in json.loads(out.output)] == ["t-acc"]
    out = runner.invoke(app, ["traces", "list", "--db", str(db), "-q", "stripes", "--json"])
    assert [r["id"] for r in json.loads(out.output)] == ["t-rej"]
    out = runner.invoke(app, ["traces", "stats", "--db", str(db), "--json"])
    assert {(r["verdict"], r["n"]) for r in json.loads(out.output)} == {("accepted", 1), ("rejected", 1)}
    out = runner.invoke(app, ["traces", "show", "t-rej", "--db", str(db)])
    assert "amber stripes" in out.output and "look again" in out.output and "wrong_answer" in out.output
    assert "calls of this attempt at the item (1)" in out.output and "teacher-model  40+9 tokens" in out.output
    runner.invoke(app, ["traces", "export", "--db", str(db), "--out", str(tmp_path / "t.jsonl")])
    lines = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all("item" in r and r["item"]["input"] for r in lines)
    again = runner.invoke(app, ["traces", "export", "--db", str(db), "--out", str(tmp_path / "t.jsonl")])
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)  # never replaced silently
    no_db = runner.invoke(app, ["traces", "list"])
    assert no_db.exit_code == 2 and "--db" in no_db.output  # no silent default store
    out = runner.invoke(app, ["traces", "path", "--db", str(db)])
    assert out.output.strip() == str(db.resolve())


def test_errors_are_one_clear_line(monkeypatch, capsys, tmp_path):
    ran = run_main(monkeypatch, capsys, "load", tmp_path / "missing_train.json", "--db", tmp_path / "x.db")
    ran.one_error_line("missing_train.json", "file not found")
    ran = run_main(monkeypatch, capsys, "traces", "show", "nope", "--db", tmp_path / "x.db")
    ran.one_error_line(str(tmp_path / "x.db"))  # no store there: named, not made
    assert not (tmp_path / "x.db").exists()


def test_recipe_typos_and_bad_model_paths_are_clear(monkeypatch, capsys, tmp_path, sample_dir):
    import yaml

    cfg = {
        "db": str(tmp_path / "t.db"),
        "data": {"train": [str(sample_dir / "image2text_train.json")]},
        "teacher": {"reasoner": {"backend": "transformers", "model": str(tmp_path / "nowhere"), "temprature": 1}},
    }
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(cfg))
    run_main(monkeypatch, capsys, "graph", "-c", tmp_path / "typo.yaml").one_error_line("temprature")
    del cfg["teacher"]["reasoner"]["temprature"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    ran = run_main(monkeypatch, capsys, "graph", "-c", tmp_path / "bad.yaml")
    ran.one_error_line("model folder not found", "nowhere")


def test_usage_errors_have_no_traceback(monkeypatch, capsys):
    ran = run_main(monkeypatch, capsys, "traces", "stats", "extra", "args")
    assert ran.code == 2 and "Traceback" not in ran.err and "unexpected extra argument" in ran.err


def test_augment_export_and_llamafactory_conversion(tmp_path, sample_dir):
    db = tmp_path / "s.db"
    ingested(sample_dir, db, ("train", "test")).close()
    res = runner.invoke(
        app, ["augment", "--db", str(db), "--out", str(tmp_path / "aug"), "--permutations", "1", "--no-recombine"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["counts"] == {"permute": report["new_items"]} and report["new_items"] > 0
    again = runner.invoke(app, ["augment", "--db", str(db), "--out", str(tmp_path / "aug")])
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)
    registry = json.loads((tmp_path / "aug" / "dataset_info.json").read_text())
    assert set(registry) == {"image2text_train_aug", "text2image_train_aug"}

    res = runner.invoke(app, ["export", "eval", "--db", str(db), "--split", "test", "--out", str(tmp_path / "lf")])
    assert res.exit_code == 0, res.output
    test_items = json.loads((tmp_path / "lf" / "image2text_test.json").read_text())
    assert all(r["output"] == "" and r["images"][0].startswith("images/") for r in test_items)

    ids = [r["id"] for r in test_items]
    predictions = tmp_path / "generated_predictions.jsonl"
    predictions.write_text(  # vllm_infer.py's prompt: the decoded prompt ids (special tokens, images, skipped)
        "".join(
            json.dumps({"prompt": r["input"].replace("<image>", "") + "\nassistant\n", "predict": p, "label": ""})
            + "\n"
            for r, p in zip(test_items, ["Answer: B"] * (len(ids) - 1) + ["A cover with red circles."])
        )
    )
    res = runner.invoke(
        app,
        [
            "predict",
            "--from-llamafactory",
            str(predictions),
            "--data",
            str(sample_dir / "image2text_test.json"),
            "--out",
            str(tmp_path / "answers"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "1 unparseable line(s) filled" in res.output
    answers = json.loads((tmp_path / "answers" / "image2text_answer.json").read_text())
    assert [a["id"] for a in answers] == ids and answers[-1]["output"] == "A"  # B chosen most: the fill is A
    details = [json.loads(x) for x in (tmp_path / "answers" / "image2text_details.jsonl").read_text().splitlines()]
    assert details[-1]["filled_by"] == "least-chosen" and details[-1]["raw"] == "A cover with red circles."
    # the same lines against the text2image test file (as many records): refused, one line naming the line
    res = runner.invoke(
        app,
        ["predict", "--from-llamafactory", str(predictions), "--data", str(sample_dir / "text2image_test.json"),
         "--out", str(tmp_path / "answers-t2i")],
    )  # fmt: skip
    assert res.exit_code != 0 and not (tmp_path / "answers-t2i" / "text2image_answer.json").exists()
    assert f"{predictions} line 1: not a prediction for test record" in str(res.exception)


def test_every_option_has_help_and_no_bool_metavar():
    import click
    import typer.main

    group = typer.main.get_command(app)

    def commands(cmd, prefix=""):
        for name, sub in getattr(cmd, "commands", {}).items():
            yield f"{prefix}{name}", sub
            yield from commands(sub, f"{prefix}{name} ")

    for name, cmd in commands(group):
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help, f"distill {name} {param.opts[0]} has no help"
        res = runner.invoke(app, [*name.split(), "--help"])
        if name in ("sft", "dpo"):  # the training recipes' own parser: every field of the recipe, with its help
            assert "--db" in res.output and "--learning_rate" in res.output and "--layout" in res.output
            continue
        assert "<bool>" not in res.output.lower() and "boolean" not in res.output.lower(), name


# --- predict: which split, which image cap ------------------------------------------------------------------
def _fake_model(tmp_path, record: dict | None):
    """A model folder (config.json, and maybe the record of its training) for a prediction that loads nothing."""
    model = tmp_path / "student"
    model.mkdir()
    (model / "config.json").write_text("{}")
    if record is not None:
        (model / "distill_prompt.json").write_text(json.dumps(record))
    return model


def _no_model(monkeypatch) -> list:
    """`predict_tasks` without a model: every item answered A; records the backend configuration it got."""
    seen = []

    def fake(be_cfg, tasks, cfg, show_progress=True, clock=None):
        seen.append(be_cfg)
        return {t: [{"id": it.id, "letter": "A"} for it in items] for t, items in tasks.items()}

    monkeypatch.setattr("distill.pipeline.predict_tasks", fake)
    return seen


@pytest.mark.parametrize(
    "record,flag,cap,source",
    [
        ({"layout": "llamafactory", "max_pixels": 3136}, [], 3136, "recorded with the model in"),
        ({"layout": "llamafactory", "max_pixels": 3136}, ["--max-pixels", "50176"], 50176, "--max-pixels"),
        ({"layout": "system"}, [], 262144, "the default"),  # an older record: the layout only
        (None, [], 262144, "the default"),
    ],
)
def test_predict_uses_the_image_cap_the_model_was_trained_with(
    tmp_path, sample_dir, monkeypatch, record, flag, cap, source
):
    seen = _no_model(monkeypatch)
    model = _fake_model(tmp_path, record)
    res = runner.invoke(
        app,
        ["predict", "--model", str(model), "--data", str(sample_dir / "image2text_test.json"),
         "--out", str(tmp_path / "answers"), *flag],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert seen[0].max_pixels == cap
    assert f"image cap: {cap} pixels ({source}" in res.output


def test_predict_on_a_registry_takes_its_test_split(tmp_path, sample_dir, monkeypatch):
    _no_model(monkeypatch)
    model = _fake_model(tmp_path, None)
    registry = sample_dir / "dataset_info.json"

    def predict(out, *extra):
        return runner.invoke(
            app, ["predict", "--model", str(model), "--data", str(registry), "--out", str(tmp_path / out), *extra]
        )

    res = predict("test")
    assert res.exit_code == 0, res.output
    for task in ("image2text", "text2image"):
        answers = json.loads((tmp_path / "test" / f"{task}_answer.json").read_text())
        assert len(answers) == len(json.loads((sample_dir / f"{task}_test.json").read_text()))  # not train + dev too
        assert f"{task} (test split): " in res.output
    res = predict("dev", "--split", "dev")
    assert res.exit_code == 0, res.output
    answers = json.loads((tmp_path / "dev" / "image2text_answer.json").read_text())
    assert len(answers) == len(json.loads((sample_dir / "image2text_dev.json").read_text()))
    assert "image2text (dev split): " in res.output
    res = predict("train", "--split", "train")
    assert res.exit_code != 0 and "held-out split" in str(res.exception)
    # a task file whose name says another split than --split
    res = runner.invoke(
        app,
        ["predict", "--model", str(model), "--data", str(sample_dir / "image2text_test.json"), "--split", "dev",
         "--out", str(tmp_path / "x")],
    )  # fmt: skip
    assert res.exit_code != 0 and "its name says test, but --split says dev" in str(res.exception)


# --- export: self-contained by default, no gold letter unless asked -------------------------------------------
def test_eval_exports_stand_alone_and_carry_no_gold_unless_asked(tmp_path, sample_dir):
    import shutil

    from distill.data.registry import load_registry

    db = tmp_path / "s.db"
    ingested(sample_dir, db, ("train", "dev")).close()
    golds = [r["output"] for r in json.loads((sample_dir / "image2text_dev.json").read_text())]
    res = runner.invoke(app, ["export", "eval", "--db", str(db), "--split", "dev", "--out", str(tmp_path / "lf")])
    assert res.exit_code == 0, res.output
    records = json.loads((tmp_path / "lf" / "image2text_dev.json").read_text())
    assert [r["output"] for r in records] == [""] * len(golds)  # dev items have golds: none is exported
    assert all(r["images"][0].startswith("images/") for r in records)
    moved = tmp_path / "elsewhere" / "deeper" / "lf"  # the folder moves to another depth and still reads
    shutil.copytree(tmp_path / "lf", moved)
    shutil.rmtree(tmp_path / "lf")
    assert len(load_registry(moved / "dataset_info.json").items) == len(records) * 2
    res = runner.invoke(
        app, ["export", "eval", "--db", str(db), "--split", "dev", "--out", str(tmp_path / "gold"), "--with-gold"]
    )
    assert res.exit_code == 0, res.output
    assert [r["output"] for r in json.loads((tmp_path / "gold" / "image2text_dev.json").read_text())] == golds
    res = runner.invoke(
        app,
        ["export", "eval", "--db", str(db), "--split", "dev", "--out", str(tmp_path / "ref"), "--images-by-reference"],
    )
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "ref" / "images").exists()
    records = json.loads((tmp_path / "ref" / "image2text_dev.json").read_text())
    assert all(r["images"][0].startswith("../") for r in records)
    res = runner.invoke(app, ["export", "sft", "--db", str(db), "--out", str(tmp_path / "x"), "--with-gold"])
    assert res.exit_code != 0 and "--with-gold is for eval exports" in res.output


PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


@pytest.mark.parametrize("command", [["graph"], ["audit"], ["augment", "--out", "aug"]])
@pytest.mark.parametrize(
    "content, reason",
    [(PNG_HEADER, "byte 0 is not UTF-8 text"), (b"[" * 100_000, "nested too deeply to read")],
    ids=["binary", "deep"],
)
def test_a_recipe_that_is_not_yaml_text_is_one_line(monkeypatch, capsys, tmp_path, command, content, reason):
    recipe = tmp_path / "cover.png"
    recipe.write_bytes(content)
    monkeypatch.chdir(tmp_path)
    ran = run_main(monkeypatch, capsys, *command, "--config", recipe)
    ran.one_error_line(f"{recipe}: not a YAML recipe", reason)


def test_demo_gpu_without_a_gpu_is_one_line_and_writes_nothing(monkeypatch, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ran = run_main(monkeypatch, capsys, "demo", "--gpu", "--workdir", tmp_path / "demo")
    ran.one_error_line("--gpu: no CUDA device is visible", "--cpu --config configs/demo-gpu.yaml")
    assert not (tmp_path / "demo").exists()
