"""Liger's kernels: on by default for CUDA runs where liger-kernel is installed, off on the CPU or when a recipe or a
flag says so; on a GPU the losses agree with and without them."""

from __future__ import annotations

import importlib.util
import json
import logging
import sqlite3
import subprocess
import sys
from types import SimpleNamespace

import pytest

from distill.train.settings import LIGER_KERNELS, liger_on_gpu


def trainer_args(**values):
    return SimpleNamespace(**({"use_cpu": False, "use_liger_kernel": False, "liger_kernel_config": None} | values))


@pytest.fixture
def installed(monkeypatch):
    """Whether liger-kernel looks installed, whatever this machine has."""
    real = importlib.util.find_spec

    def pretend(present: bool):
        fake = SimpleNamespace(name="liger_kernel")
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: (fake if present else None) if name == "liger_kernel" else real(name, *a),
        )

    return pretend


def test_on_by_default_on_a_gpu_where_installed(installed, caplog):
    installed(True)
    args = trainer_args()
    with caplog.at_level(logging.INFO, logger="distill.train.settings"):
        liger_on_gpu(args, explicit=set())
    assert args.use_liger_kernel is True and args.liger_kernel_config == LIGER_KERNELS
    assert not LIGER_KERNELS["fused_linear_cross_entropy"] and not LIGER_KERNELS["cross_entropy"]  # logits are read
    assert "Liger's kernels on" in caplog.text


def test_not_installed_leaves_them_off_and_says_how_to_get_them(installed, caplog):
    installed(False)
    args = trainer_args()
    with caplog.at_level(logging.INFO, logger="distill.train.settings"):
        liger_on_gpu(args, explicit=set())
    assert args.use_liger_kernel is False and args.liger_kernel_config is None
    assert "pip install 'cover-distill[gpu]'" in caplog.text


def test_the_recipe_or_a_flag_wins(installed):
    installed(True)
    off = trainer_args()
    liger_on_gpu(off, explicit={"use_liger_kernel"})
    assert off.use_liger_kernel is False and off.liger_kernel_config is None
    own = trainer_args(use_liger_kernel=True, liger_kernel_config={"rms_norm": True, "swiglu": False})
    liger_on_gpu(own, explicit={"use_liger_kernel", "liger_kernel_config"})
    assert own.liger_kernel_config == {"rms_norm": True, "swiglu": False}
    asked = trainer_args(use_liger_kernel=True)  # turned on without a config: ours, without the loss kernels
    liger_on_gpu(asked, explicit={"use_liger_kernel"})
    assert asked.liger_kernel_config == LIGER_KERNELS


def test_never_on_the_cpu(installed):
    installed(True)
    args = trainer_args(use_cpu=True)
    liger_on_gpu(args, explicit=set())
    assert args.use_liger_kernel is False


def test_a_cpu_training_recipe_keeps_them_off(installed, tmp_path, monkeypatch):
    import torch

    from distill.recipe import training_settings

    installed(True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "sft.yaml").write_text("db: x.db\noutput_dir: out\nmodel_name_or_path: m\n")
    assert training_settings("sft", tmp_path / "sft.yaml").trainer.use_liger_kernel is False


# A training run in its own process (Liger patches transformers' classes process-wide), then which RMSNorm class
# transformers' Qwen2.5-VL module holds afterwards.
RUN = """
import sys
from distill.cli import main
sys.argv = ["distill", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as m
print("RMSNORM", m.Qwen2_5_VLRMSNorm.__module__)
"""


def train(kind: str, model, db, out, *flags) -> tuple[list[dict], str]:
    common = ["--model_name_or_path", str(model), "--db", str(db), "--output_dir", str(out), "--max_pixels", "3136"]
    common += ["--per_device_train_batch_size", "4", "--seed", "0", "--report_to", "none", "--logging_steps", "1"]
    common += ["--eval_strategy", "no", "--save_strategy", "no", "--max_steps", "6", "--disable_tqdm", "True"]
    run = subprocess.run(
        [sys.executable, "-c", RUN, kind, *common, *flags], capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r], run.stdout.split("RMSNORM")[-1].strip()


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="Liger's kernels are Triton: CUDA only")
@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="liger-kernel is not installed")
def test_sft_and_dpo_losses_agree_with_and_without_them_on_cuda(tiny_model_dir, train_store, tmp_path):
    sft = {}
    for name, flags in (("naive", ["--use_liger_kernel", "false"]), ("liger", [])):
        out = tmp_path / f"sft-{name}"
        sft[name] = train("sft", tiny_model_dir, train_store, out, "--use_peft", "false", *flags)
    (plain, plain_cls), (fast, fast_cls) = sft["naive"], sft["liger"]
    assert plain_cls.startswith("transformers.") and fast_cls.startswith("liger_kernel."), (plain_cls, fast_cls)
    assert len(plain) == len(fast) == 6
    for a, b in zip(plain, fast):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-2), (a, b)
    dpo = {}
    for name, flags in (("naive", ["--use_liger_kernel", "false"]), ("liger", [])):
        out = tmp_path / f"dpo-{name}"
        dpo[name] = train("dpo", tmp_path / "sft-naive" / "final", train_store, out, "--use_peft", "true", *flags)
    for a, b in zip(dpo["naive"][0], dpo["liger"][0]):
        assert b["loss"] == pytest.approx(a["loss"], abs=2e-2), (a, b)
    assert dpo["liger"][1].startswith("liger_kernel.")
    with sqlite3.connect(train_store) as db:
        runs = db.execute("select kind, output_dir, config from train_runs").fetchall()
    recorded = {out.rsplit("/", 1)[-1]: json.loads(config)["training"]["use_liger_kernel"] for _, out, config in runs}
    assert {k: v for k, v in recorded.items() if k.startswith(("sft-", "dpo-"))} == {
        "sft-naive": False,
        "sft-liger": True,
        "dpo-naive": False,
        "dpo-liger": True,
    }
