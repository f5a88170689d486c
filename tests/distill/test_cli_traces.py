"""`distill traces` against what a hostile user types: unknown run ids, FTS syntax in -q, huge ids."""

import json
import time

import pytest

from tests.cli_main import run_main

HOSTILE_QUERIES = [
    '"',
    '""',
    '"""',
    '"amber',
    'amber"',
    "AND",
    "OR",
    "NOT",
    "amber AND",
    "OR stripes",
    "NOT amber",
    "*",
    "amber*",
    "-lattice",
    "stripes -amber",
    "(",
    ")",
    "((amber)",
    "amber)",
    "NEAR(",
    "NEAR(amber stripes",
    "NEAR(amber, 2",
    "rationale:amber",
    "nosuchcolumn:amber",
    ":",
    "^",
    "^amber",
    "+",
    "amber + stripes",
    "'",
    "\\",
    "amber\x00stripes",
    "{amber}",
    "[amber]",
    "' OR 1=1 --",
    "x'; drop table traces; --",
    "%_?,;",
    'amber stripes"',
    "ﬁ 🙂 ß",
]


def _seed(db, sample_dir, item_id: str | None = None, trace_id: str = "t-rej"):
    from distill.data.records import load_json
    from store import open_store

    s = open_store(db)
    item = load_json(sample_dir / "image2text_dev.json").items[0]
    if item_id is not None:
        item = item.model_copy(update={"id": item_id})
    s.add_items([item])
    run = s.start_run("graph", {}, run_id="r1")
    s.finish_item(
        run,
        item.key,
        1,
        "rejected",
        [
            {
                "id": trace_id,
                "sample": 0,
                "attempt": 0,
                "hinted": 0,
                "rationale": "amber stripes around a violet lattice",
                "answer": "A",
                "verdict": "rejected",
                "reason": "wrong_answer",
            }
        ],
    )
    s.close()


@pytest.fixture
def db(tmp_path, sample_dir):
    path = tmp_path / "s.db"
    _seed(path, sample_dir)
    return path


@pytest.mark.parametrize("command", [["list"], ["list", "--json"], ["export"]])
def test_an_unknown_run_id_is_an_error(monkeypatch, capsys, db, command):
    ran = run_main(monkeypatch, capsys, "traces", *command, "--db", db, "--run", "no-such-run")
    ran.one_error_line("no run 'no-such-run'", str(db))
    assert ran.out == ""
    ok = run_main(monkeypatch, capsys, "traces", "list", "--db", db, "--run", "r1", "--json")
    assert ok.code == 0 and [r["id"] for r in json.loads(ok.out)] == ["t-rej"]


def test_an_unknown_teacher_run_is_an_error_in_the_store_too(db):
    from store import open_store
    from store.db import UnknownRun

    s = open_store(db)
    with pytest.raises(UnknownRun, match="no-such-run"):
        s.traces(run_id="no-such-run")
    with pytest.raises(UnknownRun, match="no-such-run"):
        s.training_traces(run_id="no-such-run")  # export/sft/dpo --teacher-run


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_a_query_is_plain_words_by_default(monkeypatch, capsys, db, query):
    ran = run_main(monkeypatch, capsys, "traces", "list", "--db", db, "-q", query, "--json")
    assert ran.code == 0, ran.err
    assert "Traceback" not in ran.err and "error" not in ran.err
    assert isinstance(json.loads(ran.out), list)


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_fts_syntax_errors_are_one_line(monkeypatch, capsys, db, query):
    ran = run_main(monkeypatch, capsys, "traces", "list", "--db", db, "-q", query, "--fts", "--json")
    if ran.code == 0:
        assert isinstance(json.loads(ran.out), list)
    else:
        ran.one_error_line("search query", "FTS5")


def test_words_are_found_as_typed_and_fts_syntax_works_with_the_flag(monkeypatch, capsys, db):
    def ids(*args):
        ran = run_main(monkeypatch, capsys, "traces", "list", "--db", db, "--json", *args)
        assert ran.code == 0, ran.err
        return [r["id"] for r in json.loads(ran.out)]

    assert ids("-q", "stripes") == ["t-rej"]
    assert ids("-q", "Stripes  LATTICES") == ["t-rej"]  # every word, any case, stemmed
    assert ids("-q", '"amber"') == ["t-rej"]
    assert ids("-q", "amber ocean") == []  # every word is required
    assert ids("-q", "amber OR ocean") == []  # OR is a word here
    assert ids("-q", "amber OR ocean", "--fts") == ["t-rej"]
    assert ids("-q", "lat*", "--fts") == ["t-rej"]
    assert ids("-q", "amber NOT violet", "--fts") == []
    blank = run_main(monkeypatch, capsys, "traces", "list", "--db", db, "-q", "   ")
    blank.one_error_line("holds no word")


@pytest.mark.parametrize("as_json", [False, True])
def test_a_100kb_id_lists_in_seconds(monkeypatch, capsys, tmp_path, sample_dir, as_json):
    # digits: the worst case of rich's highlighting regexes (quadratic: minutes for 100 kB)
    big = "1" * 100_000
    db = tmp_path / "big.db"
    _seed(db, sample_dir, item_id=big, trace_id="2" * 100_000)
    t0 = time.perf_counter()
    ran = run_main(monkeypatch, capsys, "traces", "list", "--db", db, *(["--json"] if as_json else []))
    assert time.perf_counter() - t0 < 10
    assert ran.code == 0, ran.err[-2000:]
    assert big in ran.out
    t0 = time.perf_counter()
    ran = run_main(monkeypatch, capsys, "traces", "show", "2" * 100_000, "--db", db)
    assert time.perf_counter() - t0 < 10 and ran.code == 0 and big in ran.out


def test_an_unknown_task_is_an_error_naming_the_tasks(monkeypatch, capsys, db):
    ran = run_main(monkeypatch, capsys, "traces", "list", "--db", db, "--task", "image3text")
    assert ran.code == 2 and "Traceback" not in ran.err
    assert "'image3text' is not a task: image2text or text2image" in ran.err
    assert run_main(monkeypatch, capsys, "traces", "list", "--db", db, "--task", "image2text").code == 0
