"""LLaMA-Factory 0.9.5 itself, in its own venv (opt-in: `pytest -m llamafactory`; build the venv with
`bash tests/llamafactory/setup_llamafactory.sh`, or name one with DISTILL_LF_VENV)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("DISTILL_LF_VENV", ROOT / ".venv-lf"))


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/llamafactory/" in str(item.fspath):
            item.add_marker(pytest.mark.llamafactory)


@pytest.fixture(scope="session")
def lf_venv() -> Path:
    if not (VENV / "bin" / "llamafactory-cli").exists():
        pytest.skip(f"no LLaMA-Factory venv at {VENV}: run `bash tests/llamafactory/setup_llamafactory.sh`")
    return VENV
