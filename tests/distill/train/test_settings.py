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
        (BASE + "max_steps: [4]\n", "max_steps: Input should be a valid integer (got [4])"),  # TRL's fields too
        (BASE + "eval_steps: true\n", "eval_steps: expected a number, got True"),
        (BASE + "per_device_train_batch_size: 2.5\n", "per_device_train_batch_size: Input should be a valid integer"),
        (BASE + "use_peft: true\nload_in_4bit: true\n", "load_in_4bit: quantized loading is not supported"),
        (BASE + "eval_strategy: steps\neval_steps: 2\nsave_steps: 3\n", "save_steps (3) is not a multiple of eval_"),
        (BASE + "eval_strategy: steps\nsave_strategy: epoch\n", "save_strategy epoch and eval_strategy steps differ"),
        (BASE + "pipeline: [demo.yaml]\n", "pipeline: expected a recipe file's path"),
        (BASE + "env: [A]\n", "env: expected a mapping of names to values"),
        (BASE + "pipeline: nope.yaml\n", "pipeline: no recipe file at"),
        ("db: x.db\noutput_dir: '{workdir}/sft'\nmodel_name_or_path: m\n", "output_dir holds {workdir}, but no"),
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
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="distill.train.settings"):
        s = training_settings("sft", recipe(tmp_path, BASE, "plain.yaml"), flags=["--bf16", "true"])
    assert (s.trainer.bf16, s.trainer.use_cpu) == (False, True) and "no GPU: bf16 off" in caplog.text  # flags too


def test_config_equals_path_and_flags_expand_the_workdir(tmp_path):
    (tmp_path / "pipe.yaml").write_text("workdir: /data/run1\n")
    path = recipe(tmp_path, "pipeline: pipe.yaml\noutput_dir: '{workdir}/sft'\nmodel_name_or_path: m\n")
    s = training_from_argv("sft", [f"--config={path}", "--run_name", "{workdir}/named"])
    assert (s.trainer.output_dir, s.trainer.run_name, s.distill.db) == (
        "/data/run1/sft",
        "/data/run1/named",
        "/data/run1/traces.db",
    )
    with pytest.raises(ConfigError, match="give a recipe"):
        training_from_argv("sft", [])


def test_the_loss_filter_that_hides_nan_is_off(tmp_path):
    assert training_settings("sft", recipe(tmp_path, BASE)).trainer.logging_nan_inf_filter is False


def test_training_on_from_a_model_takes_its_cards_layout(tiny_model_dir, sample_dir, tmp_path, caplog):
    """DPO (or SFT) from a trained model reads its prompts in the layout the card records, unless told otherwise,
    and refuses a recipe that says another."""
    import shutil

    from distill.data.student_card import StudentCard, write_card
    from distill.errors import UserError
    from distill.train.run import check_inputs
    from tests.helpers import ingested

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    write_card(model, StudentCard(layout="system", max_pixels=3136, captions=False))
    db = tmp_path / "traces.db"
    ingested(sample_dir, db).close()
    values = {"db": str(db), "output_dir": str(tmp_path / "dpo"), "model_name_or_path": str(model)}
    settings = training_settings("dpo", values=values)
    with caplog.at_level(logging.INFO, logger="distill.train.run"):
        inputs = check_inputs(settings)
    assert settings.distill.layout == "system" and inputs.max_pixels == 3136 and "layout: system" in caplog.text
    inputs.store.close()
    with pytest.raises(UserError, match="trained with layout system .* sets layout llamafactory"):
        check_inputs(training_settings("dpo", values=values | {"layout": "llamafactory", "overwrite": True}))


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
