"""`checkpoint_mlps`: each decoder layer's MLP recomputed in the backward pass, on by default on a GPU where the
recipe leaves gradient_checkpointing unset; under `distill sft` the MLPs, not attention, run again, the losses are
those of no checkpointing, and the wrap outlasts the Trainer binding new forwards as `train()` starts (Liger)."""

import json
import logging
import types
from functools import partial
from types import SimpleNamespace

import pytest
import torch

from distill.errors import UserError
from distill.train import settings as settings_module
from distill.train.arguments import DistillArguments
from distill.train.metrics import read_metrics
from distill.train.mlp_checkpointing import checkpoint_mlps
from distill.train.model import load_model
from distill.train.settings import TrainingSettingsError, checkpointing_on_gpu
from tests.helpers import sft_main, tiny_sft_args


def resolved(mlps, layers, use_cpu=False, explicit=()):
    trainer = SimpleNamespace(use_cpu=use_cpu, gradient_checkpointing=layers)
    args = DistillArguments(db="x.db", checkpoint_mlps=mlps)
    checkpointing_on_gpu(trainer, args, set(explicit), "recipe.yaml")
    return args.checkpoint_mlps, trainer.gradient_checkpointing


def test_on_a_gpu_the_mlps_replace_trls_default_of_whole_layers(caplog):
    with caplog.at_level(logging.INFO, logger="distill.train.settings"):
        assert resolved(None, True) == (True, False)
    assert "checkpointing each decoder layer's MLP alone" in caplog.text
    assert resolved(True, True) == (True, False)  # the recipe asked for the MLPs, left layers unset


def test_a_recipe_that_sets_whole_layers_or_the_cpu_keeps_them():
    assert resolved(None, True, explicit={"gradient_checkpointing"}) == (False, True)
    assert resolved(None, False, explicit={"gradient_checkpointing"}) == (False, False)
    assert resolved(None, True, use_cpu=True) == (False, True)
    assert resolved(False, True) == (False, True)
    assert resolved(True, False, use_cpu=True, explicit={"gradient_checkpointing"}) == (True, False)


def test_both_asked_for_is_one_line_naming_the_recipe():
    with pytest.raises(TrainingSettingsError, match="recipe.yaml: checkpoint_mlps and gradient_checkpointing are both"):
        resolved(True, True, explicit={"gradient_checkpointing"})


def test_a_model_without_decoder_layers_is_refused_and_a_wrap_is_made_once():
    with pytest.raises(UserError, match="Linear has no language_model.layers.N with an mlp"):
        checkpoint_mlps(torch.nn.Linear(2, 2))
    model = torch.nn.Module()
    model.language_model = torch.nn.Module()
    model.language_model.layers = torch.nn.ModuleList([torch.nn.Module()])
    model.language_model.layers[0].mlp = torch.nn.Linear(2, 2)
    assert checkpoint_mlps(model) == 1
    first = model.language_model.layers[0].mlp.forward
    assert checkpoint_mlps(model) == 1 and model.language_model.layers[0].mlp.forward is first


def count(calls: dict, part: str, *_):
    calls[part] += 1


def counted_load(calls: dict):
    """`load_model` with the first decoder layer's MLP and attention counted as they run."""

    def load(*a, **kw):
        model, processor = load_model(*a, **kw)
        layer = model.model.language_model.layers[0]
        layer.mlp.gate_proj.register_forward_hook(partial(count, calls, "mlp"))
        layer.self_attn.q_proj.register_forward_hook(partial(count, calls, "attention"))
        return model, processor

    return load


def sft(tiny_model_dir, train_store, out, *extra) -> dict:
    """Three LoRA steps of the tiny model, each step logged, nothing validated or saved unless `extra` says so."""
    lora = ("--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "1e-3", "--max_steps", "3")
    quiet = ("--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no")
    return sft_main(tiny_sft_args(tiny_model_dir, train_store, out, *lora, *quiet, *extra))


def losses(out) -> list[float]:
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]


@pytest.mark.slow
def test_distill_sft_recomputes_the_mlps_alone_and_trains_as_without_it(
    tiny_model_dir, train_store, tmp_path, monkeypatch
):
    from distill.train import model as model_module
    from store import open_store

    calls = {}
    for name, flags in {
        "none": ("--gradient_checkpointing", "false"),
        "mlps": ("--checkpoint_mlps", "true"),
    }.items():
        calls[name] = {"mlp": 0, "attention": 0}
        monkeypatch.setattr(model_module, "load_model", counted_load(calls[name]))
        res = sft(tiny_model_dir, train_store, tmp_path / name, *flags)
        [run] = [r for r in open_store(train_store).train_runs() if r["id"] == res["run_id"]]
        config = json.loads(run["config"])
        assert config["distill"]["checkpoint_mlps"] is (name == "mlps")
        assert config["training"]["gradient_checkpointing"] is False
    assert calls["none"] == {"mlp": 3, "attention": 3}  # one pass a step
    assert calls["mlps"] == {"mlp": 6, "attention": 3}  # the MLP again in each backward pass
    assert losses(tmp_path / "mlps") == pytest.approx(losses(tmp_path / "none"), rel=1e-5)


@pytest.mark.slow
def test_the_wrap_outlasts_the_trainer_binding_new_forwards(tiny_model_dir, train_store, tmp_path, monkeypatch):
    """The Trainer applies Liger's kernels as `train()` starts, binding a new forward to every MLP (Liger's
    `_bind_method_to_module`); the MLPs must still be recomputed, and validation runs through the wrapped MLPs.
    Liger needs CUDA, so its binding is done here."""
    import transformers.trainer

    from distill.train import model as model_module

    def bind_new_forwards(model, config):
        for layer in model.base_model.model.model.language_model.layers:
            layer.mlp.forward = types.MethodType(type(layer.mlp).forward, layer.mlp)

    monkeypatch.setattr(transformers.trainer, "apply_liger_kernel", bind_new_forwards)
    calls = {}
    for name, mlps in (("none", "false"), ("mlps", "true")):
        calls[name] = {"mlp": 0, "attention": 0}
        monkeypatch.setattr(model_module, "load_model", counted_load(calls[name]))
        flags = [
            "--checkpoint_mlps",
            mlps,
            "--use_liger_kernel",
            "true",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "3",
        ]
        if mlps == "false":  # no checkpointing at all (TRL's default is whole layers)
            flags += ["--gradient_checkpointing", "false"]
        sft(tiny_model_dir, train_store, tmp_path / name, *flags)
        assert any("eval_accuracy" in r for r in read_metrics(tmp_path / name / "metrics.jsonl"))
    # validation's passes run once through both; the training steps' MLPs run again in the backward pass
    assert calls["mlps"] == {"mlp": calls["none"]["mlp"] + 3, "attention": calls["none"]["attention"]}
    assert calls["none"]["attention"] > 3


# `distill sft` in its own process (Liger patches transformers' classes process-wide), its first decoder layer's MLP
# and attention counted as they run; then the counts and what that MLP's forward is at the end.
RUN = """
import json, sys
from functools import partial
from distill.cli import main
from distill.train import model as model_module

calls = {"mlp": 0, "attention": 0}
real, held = model_module.load_model, []

def load(*a, **kw):
    model, processor = real(*a, **kw)
    layer = model.model.language_model.layers[0]
    layer.mlp.gate_proj.register_forward_hook(lambda *_: calls.__setitem__("mlp", calls["mlp"] + 1))
    layer.self_attn.q_proj.register_forward_hook(lambda *_: calls.__setitem__("attention", calls["attention"] + 1))
    held.append(layer.mlp)
    return model, processor

model_module.load_model = load
sys.argv = ["distill", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
forward = held[0].forward
inner = getattr(forward, "args", (forward,))[0]
print("COUNTS", json.dumps(calls | {"wrapped": isinstance(forward, partial), "inner": inner.__func__.__module__}))
"""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the default applies to CUDA runs")
def test_on_cuda_by_default_after_ligers_kernels_and_as_without(tiny_model_dir, train_store, tmp_path):
    import importlib.util
    import sqlite3
    import subprocess
    import sys

    results = {}
    for name, flags in (("none", ["--gradient_checkpointing", "false"]), ("default", [])):
        out = tmp_path / name
        common = tiny_sft_args(
            tiny_model_dir, train_store, out, "--per_device_train_batch_size", "4", "--max_steps", "3"
        )
        common += ["--use_peft", "true", "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no"]
        run = subprocess.run([sys.executable, "-c", RUN, "sft", *common, *flags], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        results[name] = json.loads(run.stdout.split("COUNTS")[-1])
        results[name]["losses"] = losses(out)
    assert (results["none"]["mlp"], results["none"]["attention"], results["none"]["wrapped"]) == (3, 3, False)
    assert (results["default"]["mlp"], results["default"]["attention"], results["default"]["wrapped"]) == (6, 3, True)
    if importlib.util.find_spec("liger_kernel"):  # the wrap is around Liger's forward, made after it
        assert results["default"]["inner"].startswith("liger_kernel."), results["default"]
    assert results["default"]["losses"] == pytest.approx(results["none"]["losses"], rel=1e-4)
    with sqlite3.connect(train_store) as db:
        configs = [json.loads(c) for (c,) in db.execute("select config from train_runs order by started_at")]
    last = configs[-1]
    assert last["distill"]["checkpoint_mlps"] is True and last["training"]["gradient_checkpointing"] is False


@pytest.mark.parametrize(
    ("flags", "recipe", "expected"),
    [
        ([], "", (True, False)),
        (["--gradient-checkpointing", "true"], "", (False, True)),
        (["--no_gradient_checkpointing"], "", (False, False)),
        (["--gradient-checkpointing", "false"], "", (False, False)),
        (["--checkpoint-mlps", "false"], "", (False, True)),
        ([], "gradient_checkpointing_kwargs: {every_n_layers: 2}\n", (False, True)),
        ([], "gradient_checkpointing: null\n", (True, None)),
    ],
)
def test_on_a_gpu_every_spelling_of_the_recipe_and_flags_is_heard(tmp_path, monkeypatch, flags, recipe, expected):
    from distill.recipe import training_settings

    monkeypatch.setattr(settings_module, "no_gpu", lambda use_cpu: False)  # the settings of a machine with a GPU
    (tmp_path / "sft.yaml").write_text(f"db: x.db\noutput_dir: out\nmodel_name_or_path: m\nbf16: false\n{recipe}")
    settings = training_settings("sft", tmp_path / "sft.yaml", flags=flags)
    assert (settings.distill.checkpoint_mlps, settings.trainer.gradient_checkpointing) == expected


def test_on_a_gpu_both_spelled_with_dashes_are_refused(tmp_path, monkeypatch):
    from distill.recipe import training_settings

    monkeypatch.setattr(settings_module, "no_gpu", lambda use_cpu: False)
    (tmp_path / "sft.yaml").write_text("db: x.db\noutput_dir: out\nmodel_name_or_path: m\nbf16: false\n")
    with pytest.raises(TrainingSettingsError, match="checkpoint_mlps and gradient_checkpointing are both on"):
        training_settings("sft", tmp_path / "sft.yaml", flags=["--checkpoint-mlps", "true", "--gradient-checkpointing"])


def test_deepspeed_or_fsdps_own_checkpointing_leave_the_default_off(monkeypatch, caplog):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with caplog.at_level(logging.INFO, logger="distill.train.settings"):
        assert resolved(None, True) == (False, True)
    assert "checkpoint_mlps off by default under DeepSpeed" in caplog.text
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    monkeypatch.setenv("FSDP_ACTIVATION_CHECKPOINTING", "true")
    assert resolved(None, False) == (False, False)
