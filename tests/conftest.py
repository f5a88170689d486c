"""Shared fixtures: the sample dataset and the tiny offline model are built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    from distill.kit.sample_data import generate

    return generate(tmp_path_factory.mktemp("sample"), n_train=32, n_dev=6, n_test=8, seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from distill.kit.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture
def store(tmp_path):
    from store import open_store

    s = open_store(tmp_path / "traces.db")
    yield s
    s.close()
