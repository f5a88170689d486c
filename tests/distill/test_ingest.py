"""`distill load` as a user meets it: what it reports (each thing once), what --skip-invalid skips, and that a
failed load changes nothing on disk."""

import json

import pytest

from tests.cli_main import run_main


def _records(sample_dir, name):
    recs = json.loads((sample_dir / name).read_text())
    for r in recs:
        r["images"] = [str(sample_dir / p) for p in r["images"]]
    return recs


def _write(path, recs):
    path.write_text(json.dumps(recs))
    return path


@pytest.fixture
def files(tmp_path, sample_dir):
    train = _records(sample_dir, "image2text_train.json")
    dev = _records(sample_dir, "image2text_dev.json")
    bad = [dict(r) for r in train[:3]]
    bad[1]["images"] = [str(tmp_path / "no-such-cover.png")]
    return {
        "train": _write(tmp_path / "image2text_train.json", train[:10]),
        "more": _write(tmp_path / "more_image2text_train.json", train[10:14] + train[:2]),  # 2 ids given twice
        "dev": _write(tmp_path / "image2text_dev.json", dev),
        "bad": _write(tmp_path / "bad_image2text_train.json", [r | {"id": f"bad-{k}"} for k, r in enumerate(bad)]),
        "val": _write(tmp_path / "image2text_val.json", train[20:23]),
    }


def _stored(db):
    from store import open_store

    s = open_store(db)
    try:
        return {(it.id, it.split) for it in s.items()}
    finally:
        s.close()


def test_a_failed_load_reports_no_skip_and_leaves_no_file(monkeypatch, capsys, tmp_path, files):
    db = tmp_path / "new" / "deeper" / "s.db"
    ran = run_main(monkeypatch, capsys, "load", files["train"], files["bad"], "--db", db)
    ran.one_error_line("bad_image2text_train.json", "id=bad-1", "image not found", "--skip-invalid")
    assert "skipped" not in ran.err and "WARNING" not in ran.err  # nothing was skipped
    assert not (tmp_path / "new").exists()  # no store file, no folder made for it


def test_a_store_that_cannot_be_filled_is_removed_again(monkeypatch, capsys, tmp_path, files):
    import store.db
    from distill.errors import UserError

    def fail(self, items, images=None):
        raise UserError("the store refused the items")

    monkeypatch.setattr(store.db.Store, "add_items", fail)
    db = tmp_path / "new" / "s.db"
    run_main(monkeypatch, capsys, "load", files["train"], "--db", db).one_error_line("refused")
    assert not (tmp_path / "new").exists()


def test_a_bug_keeps_its_traceback(monkeypatch, capsys, tmp_path, files):
    import store.db

    def bug(self, items, images=None):
        raise KeyError("a key the code should have had")

    monkeypatch.setattr(store.db.Store, "add_items", bug)
    with pytest.raises(KeyError):
        run_main(monkeypatch, capsys, "load", files["train"], "--db", tmp_path / "s.db")


def test_verbose_shows_a_user_errors_traceback_too(monkeypatch, capsys, tmp_path, files):
    db = tmp_path / "s.db"
    quiet = run_main(monkeypatch, capsys, "load", files["train"], "--db", db, "--split", "test")
    quiet.one_error_line(str(files["train"]), "--split")
    loud = run_main(monkeypatch, capsys, "-v", "load", files["train"], "--db", db, "--split", "test")
    assert loud.code == 1 and "Traceback" in loud.err and "error:" in loud.err


def test_skip_invalid_reports_each_skip_once_and_loads_the_rest(monkeypatch, capsys, tmp_path, files):
    (tmp_path / "garbage_train.json").write_text("{not json")
    db = tmp_path / "s.db"
    ran = run_main(
        monkeypatch,
        capsys,
        "load",
        files["train"],
        files["more"],
        files["bad"],
        tmp_path / "garbage_train.json",
        files["dev"],
        "--db",
        db,
        "--skip-invalid",
    )
    assert ran.code == 0, ran.err
    skipped = [line for line in ran.err.splitlines() if "skipped" in line]
    assert len(skipped) == 4, ran.err  # the bad record, the unparseable file, the two repeated ids
    assert sum("garbage_train.json" in line and "not valid JSON" in line for line in skipped) == 1
    assert sum("id=bad-1" in line for line in skipped) == 1
    assert sum("more_image2text_train.json" in line and "id also in" in line for line in skipped) == 2
    assert "WARNING" not in ran.err
    counts = [line for line in (ran.out + ran.err).splitlines() if line.strip().startswith(("train:", "dev:"))]
    assert len(counts) == 2, ran.out + ran.err  # each split's count once, on stdout
    stored = _stored(db)
    assert len(stored) == 10 + 4 + 2 + 6  # train, the new ids of `more`, the two good `bad` records, dev


def test_an_id_in_training_and_held_out_files_stays_held_out(monkeypatch, capsys, tmp_path, sample_dir, files):
    dev = _records(sample_dir, "image2text_dev.json")
    train = json.loads(files["train"].read_text()) + [dev[0] | {"output": "A"}]
    _write(files["train"], train)
    db = tmp_path / "s.db"
    ran = run_main(monkeypatch, capsys, "load", files["train"], files["dev"], "--db", db, "--skip-invalid")
    assert ran.code == 0, ran.err
    assert "image2text_train.json" in ran.err and "this one is train" in ran.err
    splits = {i: s for i, s in _stored(db)}
    assert splits[dev[0]["id"]] == "dev"


def test_split_conflicts_are_errors_and_val_files_are_kept(monkeypatch, capsys, tmp_path, files):
    db = tmp_path / "s.db"
    ran = run_main(monkeypatch, capsys, "load", files["train"], "--split", "test", "--db", db)
    ran.one_error_line("image2text_train.json", "its name says train", "--split says test")
    assert not db.exists()
    run_main(monkeypatch, capsys, "load", files["train"], "--split", "nonsense", "--db", db)
    assert not db.exists()
    ran = run_main(monkeypatch, capsys, "load", files["train"], files["val"], "--db", db)
    assert ran.code == 0, ran.err
    assert "val: image2text 3" in ran.out  # explicit validation files replace the carved split
    assert sum(1 for _, s in _stored(db) if s == "val") == 3
    plain = _write(tmp_path / "covers.json", json.loads(files["dev"].read_text()))
    ran = run_main(monkeypatch, capsys, "load", plain, files["dev"], "--split", "dev", "--db", tmp_path / "d.db")
    assert ran.code == 1 and "id also in" in ran.err  # --split agrees with dev's name: no conflict, only the clash
    ran = run_main(monkeypatch, capsys, "load", plain, "--split", "dev", "--db", tmp_path / "d.db")
    assert ran.code == 0 and "dev: image2text 6" in ran.out, ran.err
