"""`distill graph` as a user meets it when things go wrong: a teacher that cannot be reached, a store that cannot be
made."""

import sqlite3

import pytest
import yaml

from tests.cli_main import run_main

UNREACHABLE = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "max_retries": 0}


@pytest.fixture
def recipe(tmp_path, sample_dir):
    cfg = {
        "db": str(tmp_path / "new" / "traces.db"),
        "data": {"train": [str(sample_dir / "image2text_train.json")]},
        "teacher": {"reasoner": UNREACHABLE, "limit": 3, "max_attempts": 1, "concurrency": 3},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("loaded_before", [False, True], ids=["new-store", "loaded-store"])
def test_every_item_failing_is_said_loudly_and_recorded_as_failed(
    monkeypatch, capsys, tmp_path, sample_dir, recipe, loaded_before
):
    """An unreachable teacher: one `error:` line that says every item failed and how to go on; the run is recorded as
    failed, with each call's error and no trace (so nothing trains on it as if it were a teacher's work)."""
    db = tmp_path / "new" / "traces.db"
    if loaded_before:
        assert run_main(monkeypatch, capsys, "load", "--db", db, sample_dir / "image2text_train.json").code == 0
    ran = run_main(monkeypatch, capsys, "graph", "-c", recipe, "--run-id", "r1")
    ran.one_error_line("3 item(s) failed, every item of run r1", "no trace", "--resume r1")
    assert "items failed" in ran.out and "traces accepted" in ran.out and "Connection" in ran.err
    with sqlite3.connect(db) as con:
        assert con.execute("select status from runs where id = 'r1'").fetchone() == ("failed",)
        assert con.execute("select count(*) from traces").fetchone() == (0,)
        assert con.execute("select count(*) from calls where error like '%Connection%'").fetchone() == (3,)
    audit = run_main(monkeypatch, capsys, "audit", "--db", db)  # clean of leakage, and says what it lacks
    assert audit.code == 0 and "no teacher traces" in audit.out


def test_a_store_under_a_file_is_one_line_naming_the_path(monkeypatch, capsys, tmp_path, recipe):
    (tmp_path / "a-file").write_text("not a folder")
    ran = run_main(monkeypatch, capsys, "graph", "-c", recipe, "--db", tmp_path / "a-file" / "x.db")
    ran.one_error_line(f"{tmp_path / 'a-file' / 'x.db'}", f"{tmp_path / 'a-file'} is a file, not a folder")
    assert "File exists" not in ran.err
