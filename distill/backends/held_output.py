"""Output held back while an engine starts. The engine's processes inherit this process's stdout and stderr, so a
failed start would print every process's log and traceback (hundreds of lines) above the one line that matters.
While held, whatever reaches file descriptors 1 and 2 (from this process or its children) is kept in memory; on
release it is written where it would have gone (a start that worked shows its log as usual) or dropped (one that
failed, whose caller reports it in one line), and what the children write afterwards passes straight through."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
from collections.abc import Iterator

_QUIET_S = 0.05  # a pipe silent this long has been copied out


class _Relay:
    """One file descriptor pointed into a pipe; a thread copies the pipe to where the descriptor pointed before."""

    def __init__(self, fd: int):
        self.fd = fd
        self.target = os.dup(fd)
        self.held: list[bytes] | None = []  # None: written through
        self.drop = False
        self.lock = threading.Lock()
        self.quiet = threading.Event()
        read, write = os.pipe()
        os.dup2(write, fd)
        os.close(write)
        threading.Thread(target=self._copy, args=(read,), daemon=True, name=f"held-fd{fd}").start()

    def _copy(self, read: int) -> None:
        while True:
            if not select.select([read], [], [], _QUIET_S)[0]:
                self.quiet.set()
                continue
            chunk = os.read(read, 65536)
            if not chunk:  # every writer has gone
                os.close(read)
                self.quiet.set()
                return
            with self.lock:
                if self.held is not None:
                    self.held.append(chunk)
                elif not self.drop:
                    _write_all(self.target, chunk)

    def release(self, write_held: bool) -> bytes:
        """Point the descriptor back; the held bytes (returned) are written there, or dropped together with what
        the children write later. Waits for the pipe to fall quiet first, so the held bytes are complete."""
        os.dup2(self.target, self.fd)
        self.quiet.clear()
        self.quiet.wait(timeout=2.0)
        with self.lock:
            held, self.held, self.drop = b"".join(self.held or []), None, not write_held
            if write_held:
                _write_all(self.target, held)
        return held


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


class Held:
    """What `held_output` yields: `release(write_held)` ends the hold early and returns the held text."""

    def __init__(self, relays: list[_Relay]):
        self._relays = relays
        self.text: str | None = None

    def release(self, write_held: bool) -> str:
        if self.text is None:
            sys.stdout.flush()
            sys.stderr.flush()
            self.text = "".join(r.release(write_held).decode("utf-8", "replace") for r in self._relays)
        return self.text


@contextlib.contextmanager
def held_output(fds: tuple[int, ...] = (1, 2)) -> Iterator[Held]:
    """Hold the output of `fds` for the block; it is written out when the block ends unless released first."""
    sys.stdout.flush()
    sys.stderr.flush()
    held = Held([_Relay(fd) for fd in fds])
    try:
        yield held
    finally:
        held.release(write_held=True)
