"""`distill` in this process through its real entry point (`distill.cli.main`, with its error handling), as a user
runs it, without a subprocess: exit code, stdout and stderr. `run_process` runs it in a child process instead, for
the few checks where the process boundary is the point (a warning the interpreter prints to stderr, a signal)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def one_error_line(self, *needles: str) -> str:
        """The command failed with exit 1 and exactly one `error: ...` line (no traceback) holding every needle."""
        assert self.code == 1, (self.code, self.err)
        assert "Traceback" not in self.err, self.err
        errors = [line for line in self.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, self.err
        for n in needles:
            assert n in errors[0], (n, errors[0])
        return errors[0]


def run_main(monkeypatch, capsys, *args) -> Ran:
    from distill.cli import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["distill", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


def run_process(*args, cwd=None, env: dict | None = None, timeout: float = 300) -> Ran:
    """`python -m distill.cli ARGS` in a child process (this checkout on its PYTHONPATH), as a user's shell runs it."""
    res = subprocess.run(
        [sys.executable, "-m", "distill.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
        timeout=timeout,
    )
    return Ran(res.returncode, res.stdout, res.stderr)
