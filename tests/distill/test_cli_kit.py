"""The kit's commands are wired to one kit function each, with the settings their flags give."""

from typer.testing import CliRunner

from distill.cli import app

runner = CliRunner()


def test_sample_teacher_serves_with_the_flags_settings(monkeypatch):
    seen = []
    monkeypatch.setattr("distill.kit.sample_teacher.__main__.main", seen.append)
    res = runner.invoke(app, ["sample-teacher", "--port", "0", "--leak-rate", "0.5", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert seen == [["--port", "0", "--error-rate", "0.2", "--leak-rate", "0.5", "--seed", "3"]]


def test_sample_data_draws_what_generate_draws_with_the_same_settings(tmp_path):
    from distill.kit.sample_data import generate

    settings = {"n_train": 2, "n_dev": 1, "n_test": 1, "seed": 5}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    res = runner.invoke(app, ["sample-data", str(tmp_path / "cli"), *flags])
    assert res.exit_code == 0, res.output
    assert f"sample data written to {tmp_path / 'cli'}" in res.output
    generate(tmp_path / "direct", **settings)
    files = sorted(p.relative_to(tmp_path / "direct") for p in (tmp_path / "direct").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    for f in files:  # the records (the covers' pixels vary with the noise drawn, as test_sample_data says)
        if f.suffix == ".json":
            assert (tmp_path / "cli" / f).read_text() == (tmp_path / "direct" / f).read_text(), f
