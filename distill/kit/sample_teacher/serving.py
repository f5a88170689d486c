"""Serving the sample-cover teacher on 127.0.0.1: in this process (`distill sample-teacher`), or as a server process
for as long as a block needs it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from distill.errors import UserError


class SampleTeacherConfig(BaseModel):
    """The recipe's `sample_teacher:` section: a stand-in for a VLM teacher, valid only on the sample covers."""

    model_config = ConfigDict(extra="forbid")

    port: int = Field(8765, ge=0, le=65535, description="Port on 127.0.0.1 (0: any free port).")
    error_rate: float = Field(0.2, ge=0, le=1, description="How often it misreads a cover's colour.")
    leak_rate: float = Field(0.1, ge=0, le=1, description="How often a hinted rationale gives the hint away.")
    seed: int = Field(0, description="Seed of its draws.")


def server_args(cfg: SampleTeacherConfig) -> list[str]:
    """The settings as the server's command line (`python -m distill.kit.sample_teacher`)."""
    return ["--port", str(cfg.port), "--error-rate", str(cfg.error_rate), "--leak-rate", str(cfg.leak_rate),
            "--seed", str(cfg.seed)]  # fmt: skip


def serve(cfg: SampleTeacherConfig) -> None:
    """`distill sample-teacher`: serve in this process until interrupted (it prints a ready line naming its URL)."""
    from distill.kit.sample_teacher.__main__ import main

    main(server_args(cfg))


class SampleTeacherError(UserError, RuntimeError):
    """The sample teacher's server did not start; the message carries the server's own reason."""


def _reason(lines: list[str]) -> str:
    """What a server that did not start said, as one line: its last error line (uvicorn's "ERROR: ..."), else its
    last line; where it said nothing, that."""
    said = [line.strip() for line in lines if line.strip()]
    errors = [line for line in said if line.startswith("ERROR") or "Error" in line.split(":", 1)[0]]
    last = (errors or said or ["it printed nothing"])[-1]
    return last.removeprefix("ERROR:").strip()


def _not_started(cfg: SampleTeacherConfig, reason: str, code: int) -> str:
    where = f" on 127.0.0.1:{cfg.port}" if cfg.port else ""
    advice = ": give it another port (0 picks a free one), or stop what uses this one" if "in use" in reason else ""
    return f"the sample teacher did not start{where}: {reason} (exit code {code}){advice}"


@contextlib.contextmanager
def serving(cfg: SampleTeacherConfig, timeout_s: float = 60.0) -> Iterator[str]:
    """The server's base URL (…/v1) while the block runs; the process ends with it. A server that does not start
    (its port taken, say) is a SampleTeacherError with the server's own reason."""
    cmd = [sys.executable, "-m", "distill.kit.sample_teacher", *server_args(cfg)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said: list[str] = []  # what it printed before it was ready: the reason, when it is not
    try:
        deadline = time.time() + timeout_s
        line = ""
        while time.time() < deadline:
            line = proc.stdout.readline()
            if line.startswith("sample teacher ready at "):
                break
            if line:
                said.append(line)
            elif proc.poll() is not None:
                raise SampleTeacherError(_not_started(cfg, _reason(said), proc.returncode))
        else:
            raise SampleTeacherError(
                f"the sample teacher was not ready in {timeout_s:.0f}s" + (f": {_reason(said)}" if said else "")
            )
        # keep reading what it prints, so a full pipe never stalls it
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        yield line.split()[4]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
