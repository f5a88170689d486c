"""Each setting is declared once: a command's flag for a setting is generated from the settings model it fills
(distill/cli_options.py), never typed again with its own default and help."""

import ast
from pathlib import Path

import typer.main

from agents.settings import TeacherConfig
from distill.augment import AugmentConfig
from distill.backends.config import BackendConfig
from distill.cli import app
from distill.cli_options import setting_fields
from distill.ingest import DataConfig
from distill.kit.sample_data import SampleDataConfig
from distill.kit.sample_teacher.serving import SampleTeacherConfig
from distill.predict import PredictConfig
from distill.train.examples import ExampleOptions

MODELS = [
    PredictConfig, ExampleOptions, SampleTeacherConfig, SampleDataConfig, BackendConfig, AugmentConfig, DataConfig,
    TeacherConfig,
]  # fmt: skip
FIELDS = {name for model in MODELS for name, *_ in setting_fields(model)}
# Hand-written options whose names are also settings' fields, and why they are something else there.
OWN = {
    ("tiny-model", "seed"): "the tiny model's initialisation seed (build_tiny_model's argument)",
    ("predict", "model"): "the student to predict with; BackendConfig.model is a teacher agent's model",
    ("augment", "skip_invalid"): "augmentation leaves out items whose story it cannot read; DataConfig's is loading's",
}


def _commands():
    group = typer.main.get_group(app)
    for name, cmd in group.commands.items():
        if isinstance(cmd, typer.core.TyperGroup):
            yield from ((f"{name} {sub}", c) for sub, c in cmd.commands.items())
        else:
            yield name, cmd


def test_no_command_types_a_setting_again():
    callbacks = {
        info.name or info.callback.__name__.replace("_", "-"): info.callback for info in app.registered_commands
    }
    typed_again = []
    for name, cmd in _commands():
        generated = {f for _, fields in getattr(callbacks.get(name), "__settings__", []) for f in fields}
        for p in cmd.params:
            if p.name in FIELDS and p.name not in generated and (name, p.name) not in OWN:
                typed_again.append(f"{name} --{p.name}")
    assert not typed_again, typed_again


def test_generated_flags_carry_the_models_defaults_and_help():
    callbacks = {info.name: info.callback for info in app.registered_commands}
    checked = 0
    for name, cmd in _commands():
        for model, fields in getattr(callbacks.get(name), "__settings__", []):
            declared = {n: (default, help_text) for n, _, default, help_text in setting_fields(model)}
            for p in cmd.params:
                if p.name in fields:
                    default, help_text = declared[p.name]
                    assert help_text and p.help.startswith(help_text), (name, p.name)
                    assert p.default in (default, None), (name, p.name)  # None: a flag that overrides a recipe
                    checked += 1
    assert checked > 30


def test_the_cli_builds_no_settings_object_itself():
    """Settings objects come filled from the flags (or from a recipe), never assembled by hand in the CLI."""
    tree = ast.parse(Path("distill/cli.py").read_text())
    names = {m.__name__ for m in MODELS} | {"DistillArguments", "Recipe"}
    built = [
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names
    ]
    assert not built, built
