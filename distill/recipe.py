"""Recipes: one YAML file whose keys are the fields of each stage's settings (the open-r1 / TRL `--config x.yaml`
habit), validated as a whole, so a typo is an error rather than a silent default. Flags override keys;
`{workdir}` in any string stands for the recipe's workdir."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.settings import TeacherConfig
from distill.augment import AugmentConfig
from distill.errors import UserError
from distill.ingest import DataConfig


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workdir: str = "runs/demo"
    db: str = "{workdir}/traces.db"
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    kit: dict | None = None  # the embedded default's own settings (distill.kit reads them; the product does not)


class ConfigError(UserError, ValueError):
    """A recipe or a setting that cannot be used."""


def problems(exc: ValidationError) -> str:
    """A settings model's validation errors on one line: `field.path: what is wrong; ...`."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping, or one clear error naming the file and the line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of recipe keys, got {type(raw).__name__}")
    return raw


def _expand(node, workdir: str):
    if isinstance(node, dict):
        return {k: _expand(v, workdir) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, workdir) for v in node]
    if isinstance(node, str):
        return node.replace("{workdir}", workdir)
    return node


def load_recipe(path: str | Path | None, overrides: dict | None = None) -> Recipe:
    """The recipe at `path` (defaults without one), with `overrides` ({"teacher.limit": 4, ...}; None values are
    ignored) applied before validation."""
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
    raw = _expand(raw, workdir)
    raw.setdefault("db", Recipe.model_fields["db"].default.replace("{workdir}", workdir))
    try:
        return Recipe(**raw)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid recipe{where}: {problems(exc)}") from None
