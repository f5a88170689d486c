"""Recipes: one YAML file whose keys are the fields of each stage's settings (the open-r1 / TRL `--config x.yaml`
habit), validated as a whole, so a typo is an error rather than a silent default. Flags override keys;
`{workdir}` in any string stands for the recipe's workdir."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.settings import TeacherConfig
from distill.augment import AugmentConfig
from distill.errors import UserError, problems
from distill.ingest import DataConfig


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workdir: str = Field("runs", description="The folder every `{workdir}` path of the recipe hangs off.")
    db: str = "{workdir}/traces.db"
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    # The embedded default's own settings: the demo reads them with their model (distill.kit.demo.KitRecipe); the
    # pipeline's stages take a demo recipe too and leave them alone.
    kit: dict | None = None


class ConfigError(UserError, ValueError):
    """A recipe or a setting that cannot be used."""


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping, or one clear error naming the file and the line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:  # a binary file (an image, a model) given as the recipe
        raise ConfigError(f"{p}: not a YAML recipe (byte {exc.start} is not UTF-8 text)") from None
    except RecursionError:
        raise ConfigError(f"{p}: not a YAML recipe (nested too deeply to read)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of recipe keys, got {type(raw).__name__}")
    return raw


def expand(node, workdir: str):
    """`{workdir}` in every string of `node` replaced by `workdir`."""
    if isinstance(node, dict):
        return {k: expand(v, workdir) for k, v in node.items()}
    if isinstance(node, list):
        return [expand(v, workdir) for v in node]
    if isinstance(node, str):
        return node.replace("{workdir}", workdir)
    return node


def load_recipe(path: str | Path | None, overrides: dict | None = None, model: type[Recipe] = Recipe) -> Recipe:
    """The recipe at `path` (defaults without one), with `overrides` ({"teacher.limit": 4, ...}; None values are
    ignored) applied before validation, as a `model` (Recipe, or a recipe model that types more of it)."""
    raw = read_yaml(path) if path else {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    workdir = str(raw.get("workdir", Recipe.model_fields["workdir"].default))
    raw = expand(raw, workdir)
    raw.setdefault("db", Recipe.model_fields["db"].default.replace("{workdir}", workdir))
    try:
        return model(**raw)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid recipe{where}: {problems(exc)}") from None


def training_settings(
    kind: str,
    recipe: str | Path | None = None,
    values: dict | None = None,
    flags: list[str] = (),
    pipeline: Recipe | None = None,
):
    """A training run's typed settings (`distill.train.settings.TrainingSettings`): the training `recipe` (YAML)
    over the pipeline recipe it names with `pipeline:` (its `db`, and its workdir for `{workdir}`) — or over
    `pipeline`, a loaded recipe, which wins (the demo's, with its own workdir) — then `values` (the caller's), then
    `flags` (`--field value` pairs, as on the command line)."""
    from distill.train.settings import build_settings

    source = str(recipe) if recipe else "flags"
    raw = (read_yaml(recipe) if recipe else {}) | (values or {})
    named = raw.pop("pipeline", None)
    expected = (("pipeline", str, "a recipe file's path"), ("env", dict, "a mapping of names to values"))
    for key, kind_of, what in expected:
        value = named if key == "pipeline" else raw.get(key)
        if value is not None and not isinstance(value, kind_of):
            raise ConfigError(f"{source}: {key}: expected {what}, got {value!r}")
    if named and pipeline is None:
        path = Path(named) if Path(named).is_absolute() or not recipe else Path(recipe).parent / named
        if not path.is_file():
            raise ConfigError(f"{source}: pipeline: no recipe file at {path}")
        pipeline = load_recipe(path)
    flags = list(flags)
    if pipeline is not None:
        raw = {"db": pipeline.db} | expand(raw, pipeline.workdir)
        flags = [expand(f, pipeline.workdir) for f in flags]
    left = [k for k, v in raw.items() if "{workdir}" in str(v)] + [f for f in flags if "{workdir}" in f]
    if left:
        raise ConfigError(
            f"{source}: {left[0]} holds {{workdir}}, but no pipeline recipe gives it one (name it with `pipeline:`)"
        )
    return build_settings(kind, raw, flags, source)


def training_from_argv(kind: str, argv: list[str]):
    """`distill sft|dpo [--config RECIPE] [--field value ...]`: the recipe, then the flags over it."""
    argv = list(argv)
    recipe = None
    for at, arg in enumerate(argv):
        if arg.startswith("--config="):
            recipe = arg.split("=", 1)[1]
            del argv[at]
            break
        if arg == "--config":
            if at + 1 >= len(argv):
                raise ConfigError(f"distill {kind}: --config needs a recipe file")
            recipe = argv[at + 1]
            del argv[at : at + 2]
            break
    if recipe is None and not argv:
        raise ConfigError(f"distill {kind}: give a recipe (--config configs/{kind}-7b.yaml) or --field value flags")
    return training_settings(kind, recipe, flags=argv)
