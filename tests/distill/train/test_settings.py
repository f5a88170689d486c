"""A training run's settings are built one way, typed and checked: a recipe (and the pipeline recipe it names),
the caller's values, flags; every problem is one line naming the recipe, and every value a rule changes is logged."""

from __future__ import annotations

import logging

import pytest

from distill.recipe import ConfigError, training_from_argv, training_settings
from distill.train.settings import TrainingSettingsError

BASE = "db: x.db\noutput_dir: out\nmodel_name_or_path: m\n"


def recipe(tmp_path, text: str, name: str = "sft.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,needle",
    [
        ("db: [x.db\n", "not valid YAML"),  # an unclosed bracket: one line with the file and line, not 81
        ("- db\n- out\n", "expected a mapping"),
        (BASE + "task_loss: banana\n", "task_loss: Input should be 'task' or 'token'"),
        (BASE + "reason_weight: lots\n", "--reason_weight/--reason-weight: invalid float value: 'lots'"),
        (BASE + "answer_repeats: 0\n", "answer_repeats: 0 is not a whole number of at least 1"),
        (BASE + "learning_rat: 1.0e-3\n", "unknown setting(s) learning_rat"),
        (BASE + "lr_scheduler_type: sometimes\n", "sometimes is not a valid SchedulerType"),  # transformers
        ("output_dir: out\nmodel_name_or_path: m\n", "required: --db"),  # no store, and no pipeline recipe giving one
        ("", "required"),  # an empty recipe
    ],
)
def test_a_bad_recipe_is_one_line_naming_it(tmp_path, text, needle):
    from distill.errors import UserError

    path = recipe(tmp_path, text)
    with pytest.raises(UserError) as exc:
        training_settings("sft", path)
    message = str(exc.value)
    assert needle in message and "\n" not in message


def test_training_settings_errors_are_user_errors():
    from distill.errors import UserError

    assert issubclass(TrainingSettingsError, UserError) and issubclass(ConfigError, UserError)


def test_a_bad_flag_is_one_line_not_argparse_usage(tmp_path):
    path = recipe(tmp_path, BASE)
    with pytest.raises(TrainingSettingsError, match="learning_rate.*invalid float value: 'abc'"):
        training_from_argv("sft", ["--config", str(path), "--learning_rate", "abc"])
    with pytest.raises(TrainingSettingsError, match="not used .*--lerning_rate"):
        training_from_argv("sft", ["--config", str(path), "--lerning_rate", "1"])


def test_layers_recipe_values_flags(tmp_path):
    path = recipe(tmp_path, BASE + "learning_rate: 1.0e-3\nmax_steps: 7\nreason_weight: 0\n")
    s = training_settings("sft", path, {"max_steps": 9}, ["--learning_rate", "2e-4"])
    assert (s.trainer.learning_rate, s.trainer.max_steps, s.distill.reason_weight) == (2e-4, 9, 0.0)
    assert s.kind == "sft" and s.model.model_name_or_path == "m" and s.model.dtype == "auto"
    assert s.distill.max_pixels is None  # the starting model's recorded cap, resolved when the run starts


def test_the_pipeline_recipe_gives_the_store_and_the_workdir(tmp_path):
    (tmp_path / "pipe.yaml").write_text("workdir: /data/run3\n")
    path = recipe(tmp_path, 'pipeline: pipe.yaml\noutput_dir: "{workdir}/sft"\nmodel_name_or_path: m\n')
    s = training_settings("dpo", path)
    assert s.distill.db == "/data/run3/traces.db" and s.trainer.output_dir == "/data/run3/sft"
    own = recipe(tmp_path, "pipeline: pipe.yaml\ndb: mine.db\noutput_dir: o\nmodel_name_or_path: m\n", "own.yaml")
    assert training_settings("dpo", own).distill.db == "mine.db"  # the training recipe's own value wins

    from distill.recipe import load_recipe

    demo = load_recipe(tmp_path / "pipe.yaml", {"workdir": "/elsewhere"})
    assert training_settings("dpo", path, pipeline=demo).trainer.output_dir == "/elsewhere/sft"  # a loaded one wins


def test_one_cpu_rule_and_no_silent_override(tmp_path, caplog, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = recipe(tmp_path, BASE + "bf16: true\nmax_length: 2048\n")
    with caplog.at_level(logging.INFO, logger="distill.train.settings"):
        s = training_settings("sft", path)
    assert (s.trainer.bf16, s.trainer.use_cpu, s.trainer.max_length) == (False, True, None)
    said = caplog.text
    assert "no GPU: bf16 off" in said and "max_length: 2048 -> None" in said
    assert s.trainer.remove_unused_columns is False and s.trainer.load_best_model_at_end is False
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="distill.train.settings"):
        training_settings("sft", recipe(tmp_path, BASE, "plain.yaml"))
    assert "max_length" not in caplog.text  # a default the recipe did not set changes quietly


def test_the_cli_prints_a_bad_training_recipe_as_one_line(tmp_path, monkeypatch, capsys):
    from tests.cli_main import run_main

    path = recipe(tmp_path, BASE + "task_loss: banana\n")
    run_main(monkeypatch, capsys, "sft", "--config", path).one_error_line("task_loss", str(path))
    run_main(monkeypatch, capsys, "dpo", "--config", path, "--beta", "x").one_error_line("--beta", "invalid float")


def test_a_reason_task_with_no_accepted_rationale_is_refused_before_weights_load(tiny_model_dir, sample_dir, tmp_path):
    """A store whose teacher failed every item must not train as a letters-only run under a rationale recipe."""
    from distill.errors import UserError
    from distill.pipeline import run_sft
    from tests.helpers import ingested

    db = tmp_path / "traces.db"
    ingested(sample_dir, db).close()
    settings = training_settings(
        "sft",
        values={"db": str(db), "output_dir": str(tmp_path / "sft"), "model_name_or_path": str(tiny_model_dir)},
    )
    with pytest.raises(UserError, match="0 accepted rationales in .* for the reason task"):
        run_sft(settings)
    assert not (tmp_path / "sft" / "final").exists()
