"""Every recipe shipped in configs/ builds the settings of the command it is written for, with the values it says:
a renamed or removed setting fails here, not on a user's 8-GPU box."""

from pathlib import Path

import pytest
import yaml

from distill.recipe import load_recipe, training_settings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TRAINING = sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name.startswith(("sft-", "dpo-")))
PIPELINE = sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name not in TRAINING)


@pytest.mark.parametrize("name", TRAINING)
def test_training_recipes_build_their_settings(name):
    raw = yaml.safe_load((CONFIGS / name).read_text())
    shared = load_recipe(CONFIGS / raw["pipeline"])  # every training recipe takes its store from a pipeline recipe
    settings = training_settings(name.split("-")[0], CONFIGS / name)
    assert settings.distill.db == shared.db
    assert settings.model.model_name_or_path == raw["model_name_or_path"].replace("{workdir}", shared.workdir)
    assert settings.trainer.output_dir == raw["output_dir"].replace("{workdir}", shared.workdir)
    assert settings.trainer.learning_rate == raw["learning_rate"]
    assert settings.distill.max_pixels == raw.get("max_pixels")  # DPO recipes take the SFT model's recorded cap


@pytest.mark.parametrize("name", PIPELINE)
def test_pipeline_recipes_load_with_their_values(name):
    raw = yaml.safe_load((CONFIGS / name).read_text())
    recipe = load_recipe(CONFIGS / name)
    assert recipe.teacher.reasoner.model == raw["teacher"]["reasoner"]["model"]
    assert recipe.data.train == [p.replace("{workdir}", recipe.workdir) for p in raw["data"]["train"]]


def test_the_demo_recipes_type_their_kit_section():
    from distill.kit.demo import KitRecipe

    for name in ("demo.yaml", "demo-gpu.yaml"):
        recipe = load_recipe(CONFIGS / name, model=KitRecipe)
        raw = yaml.safe_load((CONFIGS / name).read_text())["kit"]
        assert recipe.kit.sample_data.n_train == raw["sample_data"]["n_train"]
        assert (CONFIGS / recipe.kit.sft).is_file() and (CONFIGS / recipe.kit.dpo).is_file()
