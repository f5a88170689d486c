"""`distill augment` never drops a user's registered datasets silently, and its files and its store write are all or
nothing."""

import errno
import json
import os

import pytest

from tests.cli_main import run_main
from tests.helpers import ingested

USERS = {"my_covers": {"file_name": "my_covers.json", "formatting": "alpaca"}}


@pytest.fixture
def db(tmp_path, sample_dir):
    path = tmp_path / "s.db"
    ingested(sample_dir, path).close()
    return path


def _items(db) -> int:
    from store import open_store

    s = open_store(db)
    try:
        return len(s.items())
    finally:
        s.close()


def _augment(monkeypatch, capsys, db, out, *flags):
    return run_main(monkeypatch, capsys, "augment", "--db", db, "--out", out, "--permutations", "1", "--no-recombine",
                    *flags)  # fmt: skip


def test_an_existing_registry_is_kept_unless_told(monkeypatch, capsys, tmp_path, db):
    out = tmp_path / "aug"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps(USERS))
    before = _items(db)
    ran = _augment(monkeypatch, capsys, db, out)
    ran.one_error_line(str(out / "dataset_info.json"), "--merge-registry", "--overwrite")
    assert json.loads((out / "dataset_info.json").read_text()) == USERS
    assert sorted(p.name for p in out.iterdir()) == ["dataset_info.json"] and _items(db) == before

    ran = _augment(monkeypatch, capsys, db, out, "--merge-registry")
    assert ran.code == 0, ran.err
    registry = json.loads((out / "dataset_info.json").read_text())
    assert registry["my_covers"] == USERS["my_covers"]
    assert {"image2text_train_aug", "text2image_train_aug"} <= set(registry)
    added = _items(db) - before
    assert added > 0

    ran = _augment(monkeypatch, capsys, db, out, "--merge-registry")  # our own files are there now
    ran.one_error_line("already exist", "--overwrite")
    (out / "dataset_info.json").write_text(json.dumps(USERS))
    ran = _augment(monkeypatch, capsys, db, out, "--overwrite")
    assert ran.code == 0, ran.err
    assert "my_covers" not in json.loads((out / "dataset_info.json").read_text())  # replaced, as asked


def test_a_failed_store_write_leaves_no_file(monkeypatch, capsys, tmp_path, db):
    import store.db
    from distill.errors import UserError

    def refuse(self, items):
        raise UserError("the store refused the items")

    monkeypatch.setattr(store.db.Store, "add_items", refuse)
    ran = _augment(monkeypatch, capsys, db, tmp_path / "aug" / "deeper")
    ran.one_error_line("refused")
    assert not (tmp_path / "aug").exists()


def test_a_failed_file_write_adds_nothing_to_the_store(monkeypatch, capsys, tmp_path, db):
    import distill.data.fileio as fileio

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "aug"))

    before = _items(db)
    monkeypatch.setattr(fileio.os, "fsync", disk_full)
    ran = _augment(monkeypatch, capsys, db, tmp_path / "aug")
    ran.one_error_line(str(tmp_path / "aug"), "No space left on device")
    assert _items(db) == before
    assert not (tmp_path / "aug").exists()  # no temporary file, no folder made for the outputs


def _replace_refused_for(monkeypatch, name):
    """`os.replace` onto `name` fails as it does onto an immutable file (chattr +i)."""
    import distill.data.fileio as fileio

    real = fileio.os.replace

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == name:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(fileio.os, "replace", replace)


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_file_that_cannot_be_put_in_place_adds_nothing_and_mixes_nothing(monkeypatch, capsys, tmp_path, db):
    out = tmp_path / "aug"
    before = _items(db)
    _replace_refused_for(monkeypatch, "augment_report.json")  # the last file put in place
    ran = _augment(monkeypatch, capsys, db, out)
    ran.one_error_line(str(out / "augment_report.json"), "Operation not permitted")
    assert _items(db) == before
    assert not out.exists()
    monkeypatch.undo()

    assert _augment(monkeypatch, capsys, db, out).code == 0  # a first run, whole
    first_items, first_files = _items(db), _files(out)
    assert first_items > before
    _replace_refused_for(monkeypatch, "augment_report.json")
    ran = _augment(monkeypatch, capsys, db, out, "--overwrite", "--seed", "1")
    ran.one_error_line("augment_report.json", "Operation not permitted")
    assert _items(db) == first_items
    assert _files(out) == first_files  # the first run's files, byte for byte, and nothing of the second run


def test_a_failed_store_write_puts_the_previous_files_back(monkeypatch, capsys, tmp_path, db):
    import store.db
    from distill.errors import UserError

    out = tmp_path / "aug"
    assert _augment(monkeypatch, capsys, db, out).code == 0
    first = _files(out)

    def refuse(self, items, images=None):
        raise UserError("the store refused the items")

    monkeypatch.setattr(store.db.Store, "add_items", refuse)
    ran = _augment(monkeypatch, capsys, db, out, "--overwrite", "--seed", "1")
    ran.one_error_line("refused")
    assert _files(out) == first
