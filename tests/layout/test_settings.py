"""Every setting a recipe can hold is read by the code it configures, and enumerations are validated."""

import ast
import functools
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from agents.settings import TeacherConfig
from distill.augment import AugmentConfig
from distill.backends.config import BackendConfig
from distill.ingest import DataConfig
from distill.predict import PredictConfig
from distill.recipe import ConfigError, Recipe, load_recipe
from distill.train.arguments import DistillArguments

ROOT = Path(__file__).resolve().parents[2]
MODELS = [TeacherConfig, AugmentConfig, BackendConfig, DataConfig, PredictConfig, Recipe]


@functools.cache
def _reads() -> set[str]:
    """Names the package's code reads: `x.name`, `getattr(x, "name")`, `x["name"]`, `x.get("name")`."""
    reads: set[str] = set()
    for package in ("distill", "agents", "graphs", "store"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                    reads.add(node.attr)
                elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                    reads.add(node.slice.value)
                elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) > 1:
                    reads.add(getattr(node.args[1], "value", None))
                elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get" and node.args:
                    reads.add(getattr(node.args[0], "value", None))
    return reads


@pytest.mark.parametrize("model", MODELS + [DistillArguments], ids=lambda m: m.__name__)
def test_every_setting_is_read_by_the_code(model):
    import dataclasses

    names = list(model.model_fields) if issubclass(model, BaseModel) else [f.name for f in dataclasses.fields(model)]
    dead = [n for n in names if n not in _reads()]
    assert dead == [], f"{model.__name__} fields nothing reads: {dead}"


@pytest.mark.parametrize(
    "model,field,bad",
    [
        (PredictConfig, "method", "debais"),
        (BackendConfig, "backend", "vlm"),
        (BackendConfig, "structured", "choise"),
        (PredictConfig, "layout", "llama"),
        (TeacherConfig, "samples", 0),
        (AugmentConfig, "option_counts", [1]),
    ],
)
def test_enumerations_and_ranges_are_validated(model, field, bad):
    with pytest.raises(ValidationError):
        model(**{field: bad})


def test_recipe_typos_overrides_and_workdir(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "workdir: /data/run7\ndata:\n  train: ['{workdir}/a_train.json']\nteacher:\n  limit: 4\n"
    )
    r = load_recipe(tmp_path / "r.yaml", {"teacher.concurrency": 3, "teacher.limit": None})
    assert r.db == "/data/run7/traces.db" and r.data.train == ["/data/run7/a_train.json"]
    assert (r.teacher.limit, r.teacher.concurrency) == (4, 3)  # None overrides are ignored
    (tmp_path / "typo.yaml").write_text("augment:\n  permutaions: 2\n")
    with pytest.raises(ConfigError, match="augment.permutaions"):
        load_recipe(tmp_path / "typo.yaml")
    with pytest.raises(ConfigError, match="curriculum|teacher"):
        load_recipe(None, {"teacher.reasoner.backend": "tranformers"})


@pytest.mark.parametrize("recipe,expected", [("", "auto"), ("dtype: float32\n", "float32")])
def test_weights_load_in_the_training_precision_unless_the_recipe_says(tmp_path, recipe, expected):
    from distill.train.dpo import make_parser as dpo_parser
    from distill.train.sft import make_parser as sft_parser

    base = "db: x\noutput_dir: o\nmodel_name_or_path: m\nuse_cpu: true\nbf16: false\n"
    (tmp_path / "r.yaml").write_text(base + recipe)
    for make_parser in (sft_parser, dpo_parser):
        *_, margs = make_parser().parse_args_and_config(["--config", str(tmp_path / "r.yaml")])
        assert margs.dtype == expected  # TRL's own default is float32: twice the memory of a bf16 run


def test_auto_loads_a_lora_runs_frozen_base_in_bf16_and_keeps_trained_weights_in_float32():
    from distill.train.model import load_dtype

    assert load_dtype("auto", bf16=True, use_peft=True) == "bfloat16"
    assert load_dtype("auto", bf16=True, use_peft=False) == "float32"
    assert load_dtype("auto", bf16=True, use_peft=True, train_projector=True) == "float32"  # a trained merger
    assert load_dtype("auto", bf16=False, use_peft=True) == "float32"
    assert load_dtype("float16", bf16=True, use_peft=False) == "float16"


def test_curriculum_is_validated_by_the_training_parser():
    from distill.train.sft import make_parser

    with pytest.raises(SystemExit):
        make_parser().parse_args_and_config(
            ["--db", "x", "--output_dir", "o", "--model_name_or_path", "m", "--curriculum", "hard_first"]
        )
