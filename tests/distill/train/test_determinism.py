"""`full_determinism: true` holds for the run that asks for it: deterministic kernels while it trains, and after it
the process as it was (no CUDA_LAUNCH_BLOCKING left for the processes it starts next, no deterministic mode for
the stages it runs next)."""

import os

import pytest
import torch
from transformers import TrainerCallback

from distill.train.determinism import VARIABLES
from tests.helpers import add_to_trainers, sft_main, tiny_sft_args

pytestmark = pytest.mark.slow


class ModeDuringTraining(TrainerCallback):
    def __init__(self):
        self.seen = []

    def on_step_end(self, args, state, control, **kwargs):
        self.seen.append((torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG")))


@pytest.fixture
def watched(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # the user's own, which the run must give back
    watch = ModeDuringTraining()
    add_to_trainers(monkeypatch, watch)
    return watch


def test_full_determinism_is_the_runs_and_leaves_the_process_as_it_was(watched, tiny_model_dir, train_store, tmp_path):
    two_steps = ["--max_steps", "2", "--full_determinism", "true"]
    args = tiny_sft_args(tiny_model_dir, train_store, tmp_path / "sft", *two_steps)
    before = process_state()
    assert before[0] is False  # (otherwise the test could not tell the run's mode from the process's)
    assert sft_main(args)["status"] == "done"
    assert watched.seen == [(True, ":16:8")] * 2  # transformers' deterministic mode while the run trained
    assert process_state() == before
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not [name for name in VARIABLES if name in os.environ and name != "CUBLAS_WORKSPACE_CONFIG"]


def process_state():
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
