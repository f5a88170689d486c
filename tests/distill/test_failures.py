"""Clean failures and nothing overwritten: each case runs the real command in a subprocess, as a user would,
and expects one line on stderr, no traceback, and the exit code the command documents."""

import os
import stat
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow


def distill(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distill.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )


def _one_error_line(res, *needles):
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("db: x.db\nteacher:\n  reasoner: {backend: openai\n  limit: 3\n")
    _one_error_line(distill("graph", "-c", tmp_path / "bad.yaml"), "bad.yaml:", "not valid YAML")


def test_a_corrupt_store_is_one_line(tmp_path):
    (tmp_path / "x.db").write_text("garbage " * 512)
    _one_error_line(
        distill("traces", "stats", "--db", tmp_path / "x.db"),
        "x.db is not a cover-distill store (file is not a database)",
    )


def test_missing_model_folders_are_named_without_a_hub_lookup(tmp_path, sample_dir):
    res = distill(
        "predict",
        "--model",
        tmp_path / "no-model",
        "--data",
        sample_dir / "image2text_test.json",
        "--out",
        tmp_path / "answers",
    )
    _one_error_line(res, "model folder not found", "no-model")
    res = distill(
        "sft",
        "--model_name_or_path",
        tmp_path / "no-model",
        "--db",
        tmp_path / "s.db",
        "--output_dir",
        tmp_path / "sft",
    )
    _one_error_line(res, "model folder not found", "no-model")  # checked before the store is looked for


def test_an_unknown_run_id_fails_before_any_model_loads(tmp_path, sample_dir):
    cfg = {
        "db": str(tmp_path / "t.db"),
        "data": {"train": [str(sample_dir / "image2text_train.json")]},
        "teacher": {"reasoner": {"backend": "transformers", "model": str(tmp_path / "not-loaded")}},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
    _one_error_line(distill("graph", "-c", tmp_path / "r.yaml", "--resume", "no-such-run"), "no run 'no-such-run'")


def test_graph_exits_non_zero_when_items_fail_and_says_how_to_resume(tmp_path, sample_dir):
    cfg = {
        "db": str(tmp_path / "t.db"),
        "data": {"train": [str(sample_dir / "image2text_train.json")]},
        "teacher": {
            "reasoner": {
                "backend": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "model": "m",
                "max_retries": 0,
                "timeout_s": 5,
            },
            "limit": 2,
        },
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
    res = distill("graph", "-c", tmp_path / "r.yaml", "--run-id", "dead-server")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "2 item(s) failed" in res.stderr and "--resume dead-server" in res.stderr


def test_outputs_are_never_replaced_without_overwrite(tmp_path, sample_dir, tiny_model_dir):
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
    assert distill(*args).returncode == 0
    answer = tmp_path / "answers" / "image2text_answer.json"
    details = tmp_path / "answers" / "image2text_details.jsonl"
    assert stat.S_IMODE(answer.stat().st_mode) == 0o644 and stat.S_IMODE(details.stat().st_mode) == 0o644
    assert details.stat().st_mtime_ns <= answer.stat().st_mtime_ns  # details first, the answers last
    before = answer.read_bytes()
    _one_error_line(distill(*args), "already exist", "--overwrite")
    assert answer.read_bytes() == before
    assert distill(*args, "--overwrite").returncode == 0


def test_an_export_from_an_empty_store_is_an_error(tmp_path):
    from store import open_store

    open_store(tmp_path / "empty.db").close()
    _one_error_line(
        distill("export", "sft", "--db", tmp_path / "empty.db", "--out", tmp_path / "x"), "holds no train items"
    )
