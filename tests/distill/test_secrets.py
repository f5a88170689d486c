"""The API key never reaches the store or the logs, even when a server echoes it in an error body."""

import logging
import os
import sqlite3
import subprocess
import sys

import pytest
import yaml

from tests.fake_openai import FakeTeacher

KEY = "sk-test-4f9c2e7d1b8a6035"


def test_redact_cuts_registered_values_and_header_credentials():
    from distill.secrets import REDACTED, redact, register

    register("k3y-0f-a-t3st-s3cret")
    register("abc")  # too short to be worth cutting out of every message
    text = (
        'HTTP 401: {"message": "bad key k3y-0f-a-t3st-s3cret", "headers": {"Authorization": "Bearer other-token-123"}}'
        "; x-api-key: zzzz-1234; proxy said Bearer eyJhbGciOi.J9.sig abc"
    )
    out = redact(text)
    for secret in ("k3y-0f-a-t3st-s3cret", "other-token-123", "zzzz-1234", "eyJhbGciOi"):
        assert secret not in out, out
    assert out.count(REDACTED) >= 4 and out.endswith(" abc")
    assert redact(None) is None and redact("") == ""


def test_log_records_are_redacted(capsys):
    from distill import logs
    from distill.secrets import register

    register("log-s3cret-value-42")
    logs.setup()
    try:
        raise RuntimeError("server said: log-s3cret-value-42")
    except RuntimeError as exc:
        logging.getLogger("distill.test").warning("call failed: %s", "log-s3cret-value-42", exc_info=exc)
    err = capsys.readouterr().err
    assert "call failed" in err and "RuntimeError" in err and "log-s3cret-value-42" not in err


def test_http_request_lines_are_not_logged():
    from distill import logs

    logs.setup()
    for name in ("httpx", "httpx2", "httpcore", "httpcore2", "openai"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name


@pytest.mark.slow
def test_a_key_echoed_by_the_server_reaches_neither_store_nor_stderr(tmp_path, sample_dir):
    with FakeTeacher("echo_401") as teacher:
        reasoner = {
            "backend": "openai",
            "base_url": teacher.url,
            "model": "echo",
            "api_key_env": "DISTILL_TEST_TEACHER_KEY",
            "max_retries": 0,
            "timeout_s": 10,
        }
        cfg = {
            "db": str(tmp_path / "t.db"),
            "data": {"train": [str(sample_dir / "image2text_train.json")]},
            "teacher": {"reasoner": reasoner, "describer": reasoner, "limit": 2, "max_attempts": 1},
        }
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
        env = dict(os.environ, DISTILL_TEST_TEACHER_KEY=KEY, PYTHONPATH=os.getcwd())
        res = subprocess.run(
            [sys.executable, "-m", "distill.cli", "-v", "graph", "-c", tmp_path / "r.yaml", "--run-id", "r1"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert teacher.requests >= 2  # the server was asked, with the key, and echoed it
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "2 item(s) failed" in res.stderr and "401" in res.stderr
    assert KEY not in res.stderr and KEY not in res.stdout
    assert "HTTP Request:" not in res.stderr  # one INFO line per request is gone (even with -v: it is httpx's)
    with sqlite3.connect(tmp_path / "t.db") as con:
        errors = [e for (e,) in con.execute("select error from calls where error is not null")]
        errors += [e for (e,) in con.execute("select error from item_runs where error is not null")]
    assert errors and all("401" in e and "<redacted>" in e for e in errors)
    for f in tmp_path.iterdir():  # the store, its WAL and shared memory, anything else written there
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f


@pytest.mark.parametrize(
    "key, what",
    [("sk-t\u00e9st-4f9c2e7d1b8a6035", "character 5 of 24 is not ASCII"), (KEY + "\n", "a control character")],
    ids=["accent", "newline"],
)
def test_a_key_no_header_can_carry_is_one_line_that_never_shows_it(
    monkeypatch, capsys, tmp_path, sample_dir, key, what
):
    from tests.cli_main import run_main

    monkeypatch.setenv("DISTILL_TEST_ODD_KEY", key)
    reasoner = {
        "backend": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "m",
        "api_key_env": "DISTILL_TEST_ODD_KEY",
    }
    cfg = {
        "db": str(tmp_path / "t.db"),
        "data": {"train": [str(sample_dir / "image2text_train.json")]},
        "teacher": {"reasoner": reasoner, "limit": 1},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
    ran = run_main(monkeypatch, capsys, "graph", "-c", tmp_path / "r.yaml")
    ran.one_error_line("$DISTILL_TEST_ODD_KEY", what)
    assert key.strip() not in ran.err + ran.out
