"""The LLaMA-Factory round trip, with LLaMA-Factory 0.9.5 itself: our SFT and DPO exports, moved to another folder,
train a step each; and from our exported test registry its own data pipeline (what `scripts/vllm_infer.py` runs)
builds the very prompt token ids `distill` builds, in both prompt layouts, for both tasks."""

import json
import shutil
import subprocess

import pytest
import yaml

from tests.llamafactory.conftest import ROOT

MAX_PIXELS = 12544
TASKS = ("image2text", "text2image")


@pytest.fixture(scope="module")
def demo_store(sample_dir, tmp_path_factory):
    """The demo's path on the sample data: the sample-cover teacher's graph into a store."""
    from distill.kit.sample_teacher.serving import SampleTeacherConfig, serving
    from distill.pipeline import run_teacher
    from distill.recipe import load_recipe

    work = tmp_path_factory.mktemp("lf-store")
    with serving(SampleTeacherConfig(port=0, error_rate=0.4)) as url:
        teacher = {"backend": "openai", "base_url": url, "model": "sample-teacher", "max_pixels": 62720}
        recipe = load_recipe(
            None,
            {
                "db": str(work / "t.db"),
                "data": {
                    "train": [str(sample_dir / f"{t}_train.json") for t in TASKS],
                    "test": [str(sample_dir / f"{t}_test.json") for t in TASKS],
                    "validation_fraction": 0.1,
                    "max_pixels": MAX_PIXELS,
                },
                "teacher": {
                    "reasoner": teacher | {"structured": "choice"},
                    "describer": teacher,
                    "samples": 2,
                    "max_attempts": 2,
                    "seed": 0,
                    "limit": 16,
                    "min_words": 5,
                },
            },
        )
        run_teacher(recipe, show_progress=False)
    return work / "t.db"


def _train(lf_venv, model, dataset_dir, dataset, stage, out, **extra):
    cfg = {
        "model_name_or_path": str(model),
        "stage": stage,
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "dataset": dataset,
        "dataset_dir": str(dataset_dir),
        "template": "qwen2_vl",
        "cutoff_len": 2048,
        "image_max_pixels": MAX_PIXELS,
        "output_dir": str(out),
        "max_steps": 1,
        "per_device_train_batch_size": 1,
        "learning_rate": 1e-4,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "overwrite_output_dir": True,
    }
    if stage == "dpo":
        cfg |= {"pref_beta": 0.1, "pref_loss": "sigmoid"}
    cfg |= extra
    (out.parent / f"{stage}.yaml").write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [str(lf_venv / "bin" / "llamafactory-cli"), "train", str(out.parent / f"{stage}.yaml")],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=out.parent,
    )


def test_exports_move_and_train_in_llamafactory(lf_venv, demo_store, tiny_model_dir, tmp_path):
    from distill.pipeline import run_export
    from distill.train.examples import ExampleOptions

    for kind in ("sft", "dpo"):
        run_export(
            kind,
            demo_store,
            tmp_path / "export",
            "llamafactory",
            ExampleOptions(include_hinted=True, describe_weight=1),
            copy_images=True,
        )
    moved = shutil.move(tmp_path / "export", tmp_path / "elsewhere" / "export")  # the images travel with it
    registered = json.loads((moved / "dataset_info.json").read_text())
    tasks = [f"cover_distill_{k}_train" for k in ("answer", "reason", "describe")]
    assert set(tasks) <= set(registered)
    # every task trains, mixed as the recipe's weights would share them
    sft = _train(
        lf_venv, tiny_model_dir, moved, ",".join(tasks), "sft", tmp_path / "out-sft",
        mix_strategy="interleave_over", interleave_probs="0.34,0.33,0.33", max_steps=3,
    )  # fmt: skip
    dpo = _train(lf_venv, tiny_model_dir, moved, "cover_distill_dpo_train", "dpo", tmp_path / "out-dpo")
    for res in (sft, dpo):
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        assert "train_loss" in res.stdout + res.stderr


@pytest.mark.parametrize("layout", ["llamafactory", "system"])
def test_llamafactory_builds_our_prompt_ids(lf_venv, demo_store, tiny_model_dir, tmp_path, layout):
    from transformers import AutoProcessor

    from distill.backends.transformers_backend import to_hf_messages
    from distill.data.images import cap_processor, load_image
    from distill.data.student import prompt_messages
    from distill.pipeline import open_store, run_export
    from distill.train.examples import ExampleOptions

    run_export(
        "eval",
        demo_store,
        tmp_path / "eval",
        "llamafactory",
        ExampleOptions(layout=layout),
        split="test",
        copy_images=True,
    )
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    cap_processor(processor, MAX_PIXELS)
    store = open_store(demo_store)
    for task in TASKS:
        out = tmp_path / f"{task}.jsonl"
        res = subprocess.run(
            [
                str(lf_venv / "bin" / "python"),
                str(ROOT / "tests/llamafactory/lf_prompt_ids.py"),
                "--dataset_dir",
                str(tmp_path / "eval"),
                "--dataset",
                f"{task}_test",
                "--model",
                str(tiny_model_dir),
                "--template",
                "qwen2_vl",
                "--image_max_pixels",
                str(MAX_PIXELS),
                "--out",
                str(out),
                "--check",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert res.returncode == 0, res.stderr[-4000:]
        theirs = [json.loads(line)["prompt_ids"] for line in out.read_text().splitlines()]
        items = store.items(split="test", task=task)
        assert len(theirs) == len(items) > 0
        for item, ids in zip(items, theirs):
            msgs, paths = to_hf_messages(prompt_messages(item, layout=layout))
            text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            ours = processor(text=[text], images=[load_image(p, MAX_PIXELS) for p in paths])["input_ids"][0]
            assert list(ours) == ids, f"{item.key}: {len(ours)} ids here, {len(ids)} in LLaMA-Factory"
