"""Every patch of distill/patches.py against the installed libraries: if an upgrade moves what a patch relies on,
these fail loudly (and `check` refuses versions outside the tested range)."""

import inspect

import pytest
import torch

from distill import patches


def test_installed_libraries_are_the_tested_ones():
    for package in patches.TESTED:
        patches.check(package)


def test_an_untested_version_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(patches, "version", lambda package: "9.0.0")
    monkeypatch.delenv("DISTILL_UNTESTED_LIBRARIES", raising=False)
    with pytest.raises(patches.UntestedLibrary, match=r"trl >= 1\.16, < 1\.17; found 9\.0\.0"):
        patches.check("trl")
    monkeypatch.setenv("DISTILL_UNTESTED_LIBRARIES", "1")
    patches.check("trl")


def test_trl_decides_lm_head_compaction_through_use_triton():
    import trl.trainer.utils as trl_utils

    assert "_use_triton(" in inspect.getsource(trl_utils.add_fused_lm_head)
    patches.compact_logprobs_on_cpu()
    assert trl_utils._use_triton(torch.device("cpu")) is True


def test_transformers_hooks_input_grads_through_enable_input_require_grads(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, PreTrainedModel

    assert "enable_input_require_grads" in inspect.getsource(PreTrainedModel.gradient_checkpointing_enable)
    assert "_require_grads_hook" in inspect.getsource(PreTrainedModel.disable_input_require_grads)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    patches.text_only_input_grads(model)
    model.gradient_checkpointing_enable()
    model.disable_input_require_grads()  # transformers finds and removes our hook
    assert not model.get_input_embeddings()._forward_hooks


def test_qwen_vl_encodes_images_through_get_image_features(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert "self.get_image_features(" in inspect.getsource(type(model.model).forward)
    calls = []
    with patches.image_features_from(model, lambda original, pv, grid, **kw: calls.append(pv) or original(pv, grid)):
        model.model.get_image_features(torch.zeros(4, 1176), torch.tensor([[1, 2, 2]]))
    assert len(calls) == 1 and "lambda" not in repr(model.model.get_image_features)


def test_a_registered_attention_sets_on_a_sub_config(tiny_model_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dir).vision_config
    patches.set_attention(config, "test_flash_attention", lambda *a, **k: None)
    assert config._attn_implementation == "test_flash_attention"
    with pytest.raises(ValueError, match="flash"):
        patches.set_attention(config, "plain", lambda *a, **k: None)


def test_the_trainer_internals_the_mixins_use():
    from transformers import Trainer
    from trl import SFTTrainer

    assert "metric_key_prefix" in inspect.signature(Trainer.evaluation_loop).parameters
    source = inspect.getsource(SFTTrainer)
    for name in ("self._metrics", "self._total_train_tokens", "fused_lm_head=True"):
        assert name in source, name
    assert "loss_is_scaled_for_ga" in inspect.getsource(Trainer.training_step)


def test_the_trainer_reloads_full_weights_without_renaming_them():
    """ResumeFullWeights overrides `_load_from_checkpoint(resume_from_checkpoint, model=None)`, which still loads a
    full checkpoint with a plain, non-strict load_state_dict (the names save_pretrained wrote are not mapped back)."""
    from transformers import Trainer

    assert list(inspect.signature(Trainer._load_from_checkpoint).parameters) == [
        "self", "resume_from_checkpoint", "model"
    ]  # fmt: skip
    assert "model.load_state_dict(state_dict, False)" in inspect.getsource(Trainer._load_from_checkpoint)


def test_the_trainer_refuses_evaluation_without_a_dataset_in_validate_args():
    """ScoredValidationOnly overrides `_validate_args()`, where the Trainer checks `eval_strategy` against a missing
    `eval_dataset` (and reads the strategy from `self.args`)."""
    from transformers import Trainer

    assert list(inspect.signature(Trainer._validate_args).parameters) == ["self"]
    source = inspect.getsource(Trainer._validate_args)
    assert "args.eval_strategy" in source and "self.eval_dataset is None" in source


def test_the_declared_dependency_ranges_are_the_ones_the_patches_were_tested_with():
    """pyproject.toml admits exactly the versions distill/patches.py accepts: a user's install never lands on a
    version that the patches then refuse."""
    import re
    import tomllib
    from pathlib import Path

    from distill.patches import TESTED

    deps = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    for package, (low, high) in TESTED.items():
        [spec] = [d for d in deps if re.match(rf"{package}\b", d)]
        assert spec.replace(" ", "") == f"{package}>={low},<{high}", spec
