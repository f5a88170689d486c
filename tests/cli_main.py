"""`distill` in this process through its real entry point (`distill.cli.main`, with its error handling), as a user
runs it, without a subprocess: exit code, stdout and stderr."""

from __future__ import annotations

import sys
from dataclasses import dataclass


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
