"""The demo's GPU plan, run small on the CPU: a letters-only twin trained with the same seed and steps (in a process
of its own while the teacher works, as on a GPU, or after it), all three answered and compared, with both learning
curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def small_plan(tmp_path: Path, loader_workers: int = 0) -> Path:
    """configs/demo-gpu.yaml and its training recipes, shrunk to a few items and steps."""
    plan = yaml.safe_load((CONFIGS / "demo-gpu.yaml").read_text())
    plan["kit"] |= {"sample_data": {"n_train": 8, "n_val": 4, "n_dev": 2, "n_test": 4, "seed": 0}, "student": "tiny"}
    plan["augment"]["recombine"] = False
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    for name in ("sft-demo-gpu.yaml", "dpo-demo-gpu.yaml"):
        recipe = yaml.safe_load((CONFIGS / name).read_text()) | {"pipeline": "plan.yaml", "report_to": "none"}
        recipe |= {"max_steps": 2, "eval_steps": 1, "save_steps": 1, "logging_steps": 1}
        recipe |= {"per_device_train_batch_size": 4, "per_device_eval_batch_size": 8}
        recipe |= {"dataloader_num_workers": loader_workers} if name.startswith("sft") else {}
        (tmp_path / name).write_text(yaml.safe_dump(recipe))
    return tmp_path / "plan.yaml"


@pytest.mark.parametrize("in_its_own_process", [False, True], ids=["one-after-the-other", "beside"])
def test_the_gpu_plan_trains_a_letters_only_twin_and_compares(tmp_path, capsys, monkeypatch, in_its_own_process):
    from distill.kit import demo

    monkeypatch.setattr(demo, "beside", lambda settings: in_its_own_process)  # on a GPU: beside
    # beside, the twin's data-loader workers are spawned from a spawned process, as on a GPU
    plan = small_plan(tmp_path, loader_workers=1 if in_its_own_process else 0)
    artefacts = demo.run_demo(plan, tmp_path / "work", device="cpu")
    out = capsys.readouterr().out
    assert "(untrained -> letters only -> sft -> sft + dpo)" in out
    for curve in ("letters only", "sft", "dpo"):
        assert f"validation accuracy, {curve} " in out
    twin = json.loads((tmp_path / "work" / "sft-letters" / "final" / "distill_student.json").read_text())
    assert twin["max_pixels"] == 12544  # the SFT recipe's cap, on both students' cards
    for folder in ("answers", "answers-sft", "answers-letters", "answers-untrained"):
        assert (tmp_path / "work" / folder / "eval.md").is_file()
    [twin_run, run] = [
        [json.loads(line) for line in (tmp_path / "work" / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("sft-letters", "sft")
    ]
    assert {"loss_reason"} & set().union(*run) and not {"loss_reason"} & set().union(*twin_run)  # letters only
    assert max(r["step"] for r in twin_run) == max(r["step"] for r in run) == 2  # the same steps
    assert Path(artefacts["letters-only model"]).is_dir()
