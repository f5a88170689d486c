"""TRL's real trainers on the tiny model, on CPU."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import dpo_main, sft_main

pytestmark = pytest.mark.slow


def _sft_args(model, db, out, *extra):
    return [
        "--model_name_or_path",
        str(model),
        "--db",
        str(db),
        "--output_dir",
        str(out),
        "--max_pixels",
        "3136",
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "16",
        "--report_to",
        "none",
        "--disable_tqdm",
        "True",
        "--seed",
        "0",
        "--save_total_limit",
        "10",
        *extra,
    ]


def _log(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_sft_full_loss_falls_and_best_checkpoint_is_kept(tiny_model_dir, train_store, tmp_path):
    out = tmp_path / "sft"
    res = sft_main(
        _sft_args(
            tiny_model_dir,
            train_store,
            out,
            "--use_peft",
            "false",
            "--describe_weight",
            "1",
            "--learning_rate",
            "3e-3",
            "--lr_scheduler_type",
            "constant",
            "--max_steps",
            "16",
            "--logging_steps",
            "2",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "4",
            "--save_strategy",
            "steps",
            "--save_steps",
            "4",
        )
    )
    losses = [r["loss"] for r in _log(out) if "loss" in r]
    assert losses[-1] < 0.75 * losses[0] and losses[-1] < min(losses[:3])
    evals = [(r["step"], r["eval_accuracy"]) for r in _log(out) if "eval_accuracy" in r]
    assert [s for s, _ in evals] == [4, 8, 12, 16]
    best_step = max(evals, key=lambda e: (e[1], -e[0]))[0]  # the first of the best, as the Trainer keeps it
    assert res["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    final = load_file(Path(res["final"]) / "model.safetensors")
    best = load_file(Path(res["best_checkpoint"]) / "model.safetensors")
    assert final.keys() == best.keys() and all((final[k] == best[k]).all() for k in final)
    assert (out / "metrics.png").exists()
    times = [r["time"] for r in _log(out)]  # when each row was logged: the steps' pace
    assert times == sorted(times) and times[-1] - times[0] < 3600
    assert (Path(res["final"]) / "preprocessor_config.json").exists() or (
        Path(res["final"]) / "processor_config.json"
    ).exists()
    from store import open_store

    [run] = [r for r in open_store(train_store).train_runs() if r["id"] == res["run_id"]]
    assert run["best_step"] == best_step and all(
        json.loads(run["dataset"])[k] > 0 for k in ("answer", "reason", "describe")
    )
    # every task's own loss is logged, and each fell
    per_task = {k: [r[f"loss_{k}"] for r in _log(out) if f"loss_{k}" in r] for k in ("answer", "reason", "describe")}
    assert all(v and v[-1] < v[0] for v in per_task.values()), per_task
    # the vision tower was frozen: its weights are the base model's, bit for bit
    base = load_file(Path(tiny_model_dir) / "model.safetensors")
    visual = [k for k in base if ".visual." in f".{k}"]
    assert visual and all((final[k] == base[k]).all() for k in visual)
    assert any(not (final[k] == base[k]).all() for k in base if k not in visual)  # the rest did train


def test_full_fine_tuning_resumes_from_its_checkpoints_weights(tiny_model_dir, train_store, tmp_path):
    """The checkpoint holds Qwen2.5-VL's saved key names (`visual.*`, `model.*`); a resumed run must continue from
    those weights, not silently from the base model's."""
    out = tmp_path / "sft"
    args = ["--use_peft", "false", "--learning_rate", "3e-3", "--save_strategy", "steps", "--save_steps", "2"]
    sft_main(_sft_args(tiny_model_dir, train_store, out, *args, "--max_steps", "2"))
    saved = load_file(out / "checkpoint-2" / "model.safetensors")
    assert any(k.startswith("visual.") for k in saved)  # the checkpoint format's names, not the runtime's
    res = sft_main(_sft_args(tiny_model_dir, train_store, out, *args, "--max_steps", "2", "--resume"))
    resumed = load_file(Path(res["final"]) / "model.safetensors")  # the weights the resumed run holds
    base = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert resumed.keys() == saved.keys()
    assert all(torch.equal(resumed[k], saved[k]) for k in saved)
    assert any(not torch.equal(saved[k], base[k]) for k in saved)


def test_sft_lora_runs_and_resumes(tiny_model_dir, train_store, tmp_path):
    out = tmp_path / "lora"
    args = [
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
        "--learning_rate",
        "1e-3",
        "--gradient_checkpointing",
        "true",  # with the frozen vision tower kept out of autograd
        "--logging_steps",
        "1",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
    ]
    sft_main(_sft_args(tiny_model_dir, train_store, out, *args, "--max_steps", "2"))
    assert (out / "checkpoint-2" / "adapter_model.safetensors").exists()
    res = sft_main(_sft_args(tiny_model_dir, train_store, out, *args, "--max_steps", "4", "--resume"))
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    steps = [r["step"] for r in state["log_history"] if "loss" in r]
    assert steps == [1, 2, 3, 4]  # steps 1-2 from the first run, 3-4 after resuming, none repeated
    assert (Path(res["final"]) / "adapter_config.json").exists()
    from distill.train.merge import merge_adapter

    merged = merge_adapter(res["final"], tmp_path / "merged", str(tiny_model_dir))
    from transformers import AutoModelForImageTextToText

    weights = AutoModelForImageTextToText.from_pretrained(merged).state_dict()
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).state_dict()
    assert weights.keys() == base.keys()  # a plain model: no adapter layers left
    assert any(not torch.equal(w, base[k]) for k, w in weights.items())  # the trained adapter is in the weights


def test_dpo_margin_rises(tiny_model_dir, train_store, tmp_path):
    out = tmp_path / "dpo"
    dpo_main(
        _sft_args(
            tiny_model_dir,
            train_store,
            out,
            "--use_peft",
            "true",
            "--lora_r",
            "8",
            "--lora_alpha",
            "16",
            "--learning_rate",
            "5e-3",
            "--lr_scheduler_type",
            "constant",
            "--beta",
            "0.1",
            "--max_steps",
            "8",
            "--logging_steps",
            "1",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--per_device_train_batch_size",
            "4",
            "--pairs_per_item",
            "1",
        )
    )
    margins = [r["rewards/margins"] for r in _log(out) if "rewards/margins" in r]
    assert len(margins) == 8
    assert sum(margins[-3:]) / 3 > sum(margins[:3]) / 3 and margins[-1] > 0


def test_training_into_a_used_folder_needs_resume_or_overwrite(tmp_path, train_store, tiny_model_dir, monkeypatch):
    args = [
        "--model_name_or_path",
        str(tiny_model_dir),
        "--db",
        str(train_store),
        "--output_dir",
        str(tmp_path / "sft"),
        "--max_pixels",
        "3136",
        "--reason_weight",
        "0",
        "--describe_weight",
        "0",
        "--report_to",
        "none",
        "--use_peft",
        "false",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--per_device_train_batch_size",
        "4",
    ]
    sft_main(args + ["--max_steps", "1"])
    with pytest.raises(FileExistsError, match="--resume .* --overwrite"):
        sft_main(args + ["--max_steps", "2"])
    res = sft_main(args + ["--max_steps", "2", "--resume"])
    state = json.loads((tmp_path / "sft" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and res["final"]
    import distill.train.model

    with monkeypatch.context() as m:  # an --overwrite run that fails before it trains leaves the earlier run whole
        m.setattr(distill.train.model, "load_model", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no memory")))
        with pytest.raises(RuntimeError, match="no memory"):
            sft_main(args + ["--max_steps", "1", "--overwrite"])
    assert (tmp_path / "sft" / "checkpoint-2" / "trainer_state.json").is_file()
    sft_main(args + ["--max_steps", "1", "--overwrite"])
    assert not (tmp_path / "sft" / "checkpoint-2").exists() and (tmp_path / "sft" / "checkpoint-1").is_dir()
    assert not (tmp_path / ".sft.replaced").exists()


def test_early_stopping_ends_a_run_that_stops_improving(tiny_model_dir, train_store, tmp_path):
    out = tmp_path / "early"
    res = sft_main(
        _sft_args(
            tiny_model_dir,
            train_store,
            out,
            "--use_peft",
            "false",
            "--reason_weight",
            "0",
            "--describe_weight",
            "0",
            "--learning_rate",
            "0",
            "--max_steps",
            "40",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "2",
            "--save_strategy",
            "steps",
            "--save_steps",
            "2",
            "--early_stopping_patience",
            "2",
            "--logging_steps",
            "1",
        )
    )
    evals = [r["step"] for r in _log(out) if "eval_accuracy" in r]
    assert evals == [2, 4, 6]  # a learning rate of 0 never improves: two evaluations after the first, it stops
    assert res["best_step"] == 2


def test_a_describe_then_answer_student_validates_and_predicts_with_its_own_captions(
    tiny_model_dir, train_store, sample_dir, tmp_path
):
    """`captions: true`: training prompts carry the describer's captions; validation (SFT with loss examples for
    the one captioned validation item, DPO with none) and `distill predict` have the student caption first."""
    from distill.data.student_card import read_card
    from distill.errors import UserError
    from distill.pipeline import run_predict

    every = ["--use_peft", "false", "--captions", "true", "--max_steps", "2", "--eval_strategy", "steps"]
    every += ["--eval_steps", "2", "--save_strategy", "no", "--val_max_items", "4"]
    with pytest.raises(UserError, match="describe_weight"):  # it could not caption what it must caption first
        sft_main(_sft_args(tiny_model_dir, train_store, tmp_path / "no", *every, "--describe_weight", "0"))
    sft = sft_main(
        _sft_args(
            tiny_model_dir, train_store, tmp_path / "sft", *every, "--describe_weight", "1", "--learning_rate", "3e-3"
        )
    )
    with pytest.raises(UserError, match="captions: true"):  # DPO on from it without captions: refused
        dpo_main(_sft_args(sft["final"], train_store, tmp_path / "plain", "--max_steps", "1"))
    dpo = dpo_main(
        _sft_args(
            sft["final"], train_store, tmp_path / "dpo", *every, "--learning_rate", "1e-3", "--pairs_per_item", "1"
        )
    )
    for run in (tmp_path / "sft", tmp_path / "dpo"):
        assert [r["step"] for r in _log(run) if "eval_accuracy" in r] == [2]
    assert any("eval_loss" in r for r in _log(tmp_path / "sft"))  # the captioned validation item's loss
    assert not any("eval_loss" in r for r in _log(tmp_path / "dpo"))  # no loss examples: the score alone
    assert read_card(sft["final"]).captions and read_card(dpo["final"]).captions
    tests = [sample_dir / "image2text_test.json", sample_dir / "text2image_test.json"]
    answers = run_predict(dpo["final"], tests, tmp_path / "answers", show_progress=False)
    for task, path in answers.items():
        rows = [json.loads(x) for x in (path.parent / f"{task}_details.jsonl").read_text().splitlines()]
        assert rows and all(len(r["captions"]) == (1 if task == "image2text" else 4) for r in rows)


def test_two_cpu_processes_train_through_the_ddp_wrapper(tiny_model_dir, train_store, tmp_path):
    """`torchrun --nproc_per_node 2 -m distill.cli sft` on the CPU: the task loss goes through DDP's forward."""
    import subprocess
    import sys

    out = tmp_path / "sft"
    flags = _sft_args(tiny_model_dir, train_store, out, "--use_peft", "false", "--max_steps", "2")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "distill.cli", "sft", *flags],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "final" / "model.safetensors").is_file()
    assert '"world_size": 2' in run.stdout and '"rank": 1' in run.stdout  # rank 0 wrote, rank 1 waited for it
