"""A call run in a process of its own, started now and collected later: the demo trains its letters-only twin on
the GPU while the teacher graph and the other student work. Spawned, not forked: the parent may have touched CUDA."""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from typing import Any

from distill.errors import UserError


class BesideError(RuntimeError):
    """The call failed in its own process; the message is its error, the traceback text follows it."""


def _child(fn: Callable, args: tuple, conn) -> None:
    # A spawned process inherits "spawn" as its own default, so a training run's data-loader workers would be
    # spawned too, and started again every epoch and every evaluation (each re-importing the program: on an H200 the
    # demo's twin ran at a fifth of its speed). Its children start as they would in a process of its own.
    multiprocessing.set_start_method(None, force=True)
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # sent back whole: the parent raises it where it collects the result
        conn.send(("error", isinstance(exc, UserError), " ".join(str(exc).split()), traceback.format_exc()))
    finally:
        conn.close()


class Beside:
    """`fn(*args)` in a spawned process; `result()` waits for it and returns its value or raises its error (a user's
    error stays a one-line UserError); `check()` raises that error early if the call has already failed; `stop()`
    ends it if it is still running."""

    def __init__(self, fn: Callable, *args: Any, name: str = "beside"):
        ctx = multiprocessing.get_context("spawn")
        self.name = name
        self._reply: tuple | None = None
        self._conn, child_end = ctx.Pipe(duplex=False)
        # not a daemon: a training run starts data-loader workers of its own
        self._proc = ctx.Process(target=_child, args=(fn, args, child_end), name=name)
        self._proc.start()
        child_end.close()

    def check(self) -> None:
        """Raise the call's error now if it has already failed, so a caller stops before more work that needs it; a
        value that has come back is kept for `result()`."""
        if self._reply is None and (self._conn.poll() or not self._proc.is_alive()):
            self._receive()
        if self._reply is not None and self._reply[0] != "ok":
            self.result()

    def result(self) -> Any:
        if self._reply is None:
            self._receive()
        self._proc.join()
        if self._reply[0] == "ok":
            return self._reply[1]
        _, user_error, message, trace = self._reply
        if user_error:
            raise UserError(f"{self.name}: {message}")
        raise BesideError(f"{self.name}: {message}\n{trace}")

    def _receive(self) -> None:
        try:
            self._reply = self._conn.recv()
        except EOFError:
            self._proc.join()
            raise BesideError(
                f"{self.name}: its process ended without a result (exit code {self._proc.exitcode})"
            ) from None

    def stop(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join()
        self._conn.close()
