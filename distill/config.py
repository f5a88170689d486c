"""Recipes: one YAML file whose keys are these fields (the open-r1 / TRL `--config x.yaml` habit).
Command-line flags override them."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distill.backends.base import BackendConfig
from distill.images import DEFAULT_MAX_PIXELS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    train: list[str] = Field(default_factory=list)  # task JSON files, a dataset_info.json, or MAC CSVs
    dev: list[str] = Field(default_factory=list)
    test: list[str] = Field(default_factory=list)
    validation_fraction: float = 0.1
    seed: int = 0
    skip_invalid: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS


class TeacherConfig(Strict):
    describer: BackendConfig | None = None  # None: no descriptions (the reasoner sees the covers only)
    reasoner: BackendConfig = Field(default_factory=BackendConfig)
    max_attempts: int = 3
    rationalize: bool = True
    consistency: bool = False
    samples: int = 1
    temperature: float = 0.7
    max_new_tokens: int = 512
    describe_tokens: int = 256
    min_words: int = 15
    max_words: int = 800
    concurrency: int = 8
    limit: int | None = None  # first N training items only


class PipelineConfig(Strict):
    workdir: str = "runs/demo"
    db: str = "runs/demo/traces.db"
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    augment: dict = Field(default_factory=dict)  # distill.augment.AugmentConfig fields
    sft: dict = Field(default_factory=dict)
    dpo: dict = Field(default_factory=dict)
    predict: dict = Field(default_factory=dict)


class ConfigError(ValueError):
    pass


def _expand(node, workdir: str):
    """`{workdir}` inside any string of the recipe stands for the recipe's workdir."""
    if isinstance(node, dict):
        return {k: _expand(v, workdir) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, workdir) for v in node]
    if isinstance(node, str):
        return node.replace("{workdir}", workdir)
    return node


def load_config(path: str | Path | None, overrides: dict | None = None) -> PipelineConfig:
    raw: dict = {}
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        raw = yaml.safe_load(p.read_text()) or {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    workdir = str(raw.get("workdir", PipelineConfig.model_fields["workdir"].default))
    raw = _expand(raw, workdir)
    try:
        return PipelineConfig(**raw)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid config{where}:\n{exc}") from None

