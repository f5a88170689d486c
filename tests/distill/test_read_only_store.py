"""A store that cannot be written (chmod 444 for a user who is not root, a read-only folder or file system) ends
`load`, `augment` and `graph` with one line naming the store file, before any work and with nothing half-done.

The tests run as root here, where chmod stops nothing, so the store is opened as SQLite opens a file its user may
not write: reads work, and every write fails with SQLite's own "attempt to write a readonly database"."""

import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.cli_main import run_main
from tests.helpers import ingested


@pytest.fixture
def stocked(tmp_path, sample_dir):
    db = tmp_path / "runs" / "x" / "traces.db"
    ingested(sample_dir, db).close()
    return db


@pytest.fixture
def read_only(monkeypatch, stocked):
    """The `stocked` store, opened read-only from now on."""
    real = sqlite3.connect

    def connect(database, *args, **kwargs):
        if Path(database).resolve() == stocked.resolve():
            return real(f"file:{database}?mode=ro", *args, uri=True, **kwargs)
        return real(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    return stocked


def _rows(db: Path) -> dict[str, int]:
    """Rows per table, read with a plain connection (the store's own could not tell a write that slipped through)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")]
        return {t: conn.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()


def test_the_store_says_it_is_read_only_and_keeps_nothing(read_only, sample_dir):
    from distill.data.records import load_json
    from store import open_store
    from store.db import ReadOnlyStore

    before = _rows(read_only)
    s = open_store(read_only)  # reading needs no write
    assert len(s.items(split="train")) > 0
    with pytest.raises(ReadOnlyStore, match=r"traces\.db: the store is read-only"):
        s.require_writable()
    with pytest.raises(ReadOnlyStore, match=r"traces\.db: the store is read-only .*attempt to write a readonly"):
        s.add_items(load_json(sample_dir / "image2text_test.json").items)
    s.close()
    assert _rows(read_only) == before


def test_the_write_probe_leaves_a_writable_store_as_it_was(stocked):
    from store import open_store

    before = _rows(stocked)
    s = open_store(stocked)
    s.require_writable()
    s.close()
    assert _rows(stocked) == before


def test_load_augment_and_graph_end_in_one_line_naming_the_store(read_only, monkeypatch, capsys, tmp_path, sample_dir):
    before = _rows(read_only)
    needles = (str(read_only), "the store is read-only")
    ran = run_main(monkeypatch, capsys, "load", sample_dir / "image2text_test.json", "--db", read_only)
    ran.one_error_line(*needles)
    ran = run_main(monkeypatch, capsys, "augment", "--db", read_only, "--out", tmp_path / "aug", "--no-recombine")
    ran.one_error_line(*needles)
    assert not (tmp_path / "aug").exists()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"db": str(read_only)}))
    ran = run_main(monkeypatch, capsys, "graph", "--config", recipe)
    ran.one_error_line(*needles)
    assert _rows(read_only) == before
