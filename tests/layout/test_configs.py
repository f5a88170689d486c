"""Every recipe shipped in configs/ parses with the command it is written for: a renamed or removed setting
fails here, not on a user's 8-GPU box."""

from pathlib import Path

import pytest

from distill.recipe import load_recipe
from distill.train import dpo, sft

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ON_CPU = ["--bf16", "false", "--use_cpu", "true"]  # the GPU recipes ask for bf16, which this machine may lack


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name.startswith(("sft-", "dpo-"))))
def test_training_recipes_parse(name):
    script = sft if name.startswith("sft-") else dpo
    args, training, model = script.make_parser().parse_args_and_config(["--config", str(CONFIGS / name), *ON_CPU])
    assert args.db and training.output_dir and model.model_name_or_path


@pytest.mark.parametrize("name", ["demo.yaml", "teacher-vllm.yaml"])
def test_pipeline_recipes_load(name):
    recipe = load_recipe(CONFIGS / name)
    assert recipe.teacher.reasoner.model


def test_every_recipe_is_covered():
    covered = {p.name for p in CONFIGS.glob("*.yaml") if p.name.startswith(("sft-", "dpo-"))}
    assert covered | {"demo.yaml", "teacher-vllm.yaml"} == {p.name for p in CONFIGS.glob("*.yaml")}
