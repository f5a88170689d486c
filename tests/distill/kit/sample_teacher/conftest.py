"""A small generated sample set, and the sample-cover teacher served on 127.0.0.1 as a separate process."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port


@pytest.fixture(scope="session")
def covers_dir(tmp_path_factory) -> Path:
    from distill.kit.sample_data import generate

    return generate(tmp_path_factory.mktemp("sample-covers"), n_train=24, n_dev=2, n_test=4, seed=3)


@pytest.fixture(scope="session")
def serve():
    """serve(error_rate, leak_rate) -> the base URL of a running teacher (one process per setting)."""
    procs: dict[tuple[float, float], tuple[subprocess.Popen, str]] = {}

    def start(error_rate: float, leak_rate: float) -> str:
        if (error_rate, leak_rate) in procs:
            return procs[error_rate, leak_rate][1]
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distill.kit.sample_teacher",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--error-rate",
                str(error_rate),
                "--leak-rate",
                str(leak_rate),
                "--seed",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs[error_rate, leak_rate] = (proc, f"http://127.0.0.1:{port}/v1")
        deadline = time.time() + 60
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail("the teacher exited: " + proc.stdout.read().decode()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    return procs[error_rate, leak_rate][1]
            except OSError:
                time.sleep(0.2)
        pytest.fail("the teacher did not come up in 60 s")

    yield start
    for proc, _ in procs.values():
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
