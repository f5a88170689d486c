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


@pytest.fixture(scope="module")
def train_store(sample_dir, tmp_path_factory):
    """A store with the sample items; per training item, one accepted and one wrong-answer rationale; a caption of
    every training cover but the last item's, and of one validation item's covers."""
    from distill.ingest import DataConfig, ingest
    from store import open_store

    path = tmp_path_factory.mktemp("train") / "traces.db"
    s = open_store(path)
    run = s.start_run("graph", {}, run_id="teacher")
    ingest(
        s,
        DataConfig(
            train=[str(sample_dir / "image2text_train.json"), str(sample_dir / "text2image_train.json")],
            validation_fraction=0.25,
        ),
    )
    for k, item in enumerate(s.items(split="train")):
        wrong = next(L for L in item.letters if item.gold != L)
        s.finish_item(
            run,
            item.key,
            1,
            "accepted",
            [
                {
                    "sample": 0,
                    "attempt": 0,
                    "hinted": 0,
                    "answer": wrong,
                    "verdict": "rejected",
                    "reason": "wrong_answer",
                    "rationale": "The stripes suggest layered growth, so the option about rows fits best.",
                },
                {
                    "sample": 0,
                    "attempt": 1,
                    "hinted": int(k % 5 == 0),
                    "answer": item.gold,
                    "verdict": "accepted",
                    "reason": "ok",
                    "rationale": "The colour and the shapes of the cover match this story's motifs.",
                },
            ],
        )
    from distill.data.images import sha256_file

    described = [it for it in s.items(split="train")][:-1] + s.items(split="val")[:1]  # the last train item: none
    for n, cover in enumerate(dict.fromkeys(p for it in described for p in it.images)):
        call = {"id": f"describe-{n}", "run_id": run, "agent": "describer", "model": "m", "created_at": "2026-11-28"}
        s.save_description(sha256_file(cover), "m", "v1", f"caption {n} of {Path(cover).name}", call)
    s.close()
    return path
