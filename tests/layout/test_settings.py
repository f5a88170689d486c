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
# Each settings model and the modules that consume it (globs under the repository root). A field counts as read only
# where its name is read in these: a name that another model shares (seed, samples, temperature, concurrency,
# max_pixels, layout, captions, db, ...) and that only that model's code reads is a field nothing reads.
CONSUMERS = {
    TeacherConfig: ("agents/*.py", "graphs/*.py", "distill/pipeline.py"),  # the pipeline applies `limit`
    BackendConfig: ("distill/backends/*.py",),
    DataConfig: ("distill/ingest.py", "distill/pipeline.py"),
    AugmentConfig: ("distill/augment.py",),
    PredictConfig: ("distill/predict.py", "distill/pipeline.py"),
    Recipe: ("distill/recipe.py", "distill/pipeline.py", "distill/cli.py", "distill/kit/demo.py"),
    DistillArguments: ("distill/train/*.py",),  # with ExampleOptions' fields
}


@functools.cache
def _reads(path: Path) -> frozenset[str]:
    """Names a module reads: `x.name`, `getattr(x, "name")`, `x["name"]`, `x.get("name")`."""
    reads: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            reads.add(node.attr)
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            reads.add(node.slice.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) > 1:
            reads.add(getattr(node.args[1], "value", None))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get" and node.args:
            reads.add(getattr(node.args[0], "value", None))
    return frozenset(reads)


def _unread(model, consumers, root: Path = ROOT) -> list[str]:
    """`model`'s fields whose names no module matching `consumers` reads."""
    import dataclasses

    files = []
    for pattern in consumers:
        matched = sorted(root.glob(pattern))
        assert matched, f"{model.__name__}: no module matches {pattern!r}"  # a moved module is named, not skipped
        files += matched
    read = frozenset().union(*map(_reads, files))
    names = list(model.model_fields) if issubclass(model, BaseModel) else [f.name for f in dataclasses.fields(model)]
    return [n for n in names if n not in read]


@pytest.mark.parametrize("model", list(CONSUMERS), ids=lambda m: m.__name__)
def test_every_setting_is_read_by_the_code_it_configures(model):
    dead = _unread(model, CONSUMERS[model])
    assert dead == [], f"{model.__name__} fields that none of {', '.join(CONSUMERS[model])} reads: {dead}"


def test_a_setting_only_another_models_code_reads_is_unread(tmp_path):
    """The check is per model: a field whose name is read, but only by modules that consume another model, is
    reported; each way of reading a name counts in the model's own consumers."""
    (tmp_path / "augment.py").write_text("def run(cfg):\n    return cfg.permutations, cfg.seed\n")
    (tmp_path / "predict.py").write_text(
        "def run(cfg, raw):\n    return getattr(cfg, 'temperature'), raw['samples'], raw.get('seed')\n"
    )

    class Probe(BaseModel):
        permutations: int = 2
        seed: int = 0
        temperature: float = 0.7
        samples: int = 1

    assert _unread(Probe, ("augment.py",), root=tmp_path) == ["temperature", "samples"]
    assert _unread(Probe, ("predict.py",), root=tmp_path) == ["permutations"]
    assert _unread(Probe, ("*.py",), root=tmp_path) == []
    with pytest.raises(AssertionError, match="no module matches 'moved.py'"):
        _unread(Probe, ("augment.py", "moved.py"), root=tmp_path)


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
    from distill.recipe import training_from_argv as from_argv
    from distill.recipe import training_settings

    base = "db: x\noutput_dir: o\nmodel_name_or_path: m\nuse_cpu: true\nbf16: false\n"
    (tmp_path / "r.yaml").write_text(base + recipe)
    for kind in ("sft", "dpo"):
        assert training_settings(kind, tmp_path / "r.yaml").model.dtype == expected  # TRL's own default: float32
        assert from_argv(kind, ["--config", str(tmp_path / "r.yaml")]).model.dtype == expected


def test_auto_loads_a_lora_runs_frozen_base_in_bf16_and_keeps_trained_weights_in_float32():
    from distill.train.model import load_dtype

    assert load_dtype("auto", bf16=True, use_peft=True) == "bfloat16"
    assert load_dtype("auto", bf16=True, use_peft=False) == "float32"
    assert load_dtype("auto", bf16=True, use_peft=True, train_projector=True) == "float32"  # a trained merger
    assert load_dtype("auto", bf16=False, use_peft=True) == "float32"
    assert load_dtype("float16", bf16=True, use_peft=False) == "float16"


def test_curriculum_is_validated_by_the_training_parser():
    from distill.recipe import training_from_argv as from_argv
    from distill.train.settings import TrainingSettingsError

    with pytest.raises(TrainingSettingsError, match="curriculum.*hard_first"):
        from_argv("sft", ["--db", "x", "--output_dir", "o", "--model_name_or_path", "m", "--curriculum", "hard_first"])
