"""Writing outputs: atomic (a temporary file in the same folder, fsynced, renamed over the target), readable by
others (0644), and never over an existing output unless the caller was told `--overwrite`."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    present = [str(p) for p in paths if Path(p).exists()]
    if present and not overwrite:
        more = f" and {len(present) - 3} more" if len(present) > 3 else ""
        raise FileExistsError(f"{', '.join(present[:3])}{more} already exist(s): pass --overwrite to replace")


def blocking_file(path: str | Path) -> Path | None:
    """The nearest existing ancestor of `path` (or `path` itself) where that is a file, not a folder: what stops a
    folder being made there."""
    p = Path(path)
    for q in (p, *p.parents):
        if os.path.lexists(q):
            return None if q.is_dir() else q
    return None


def require_writable_dir(path: str | Path) -> None:
    """Fail now, before any work, where `path` (a folder to write into, made when missing) cannot be made or
    written: a file stands where a folder must be, or the nearest existing folder is not writable (permissions, a
    read-only file system). The error names `path` and the reason."""
    p = Path(path)
    blocker = blocking_file(p)
    if blocker is not None:
        raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is a file, not a folder", str(p))
    existing = next((q for q in (p, *p.parents) if q.is_dir()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"cannot write into {existing} (permission denied or read-only)", str(p))


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; an output is for others to read too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def staged_writes(files: dict[Path, str]) -> Iterator[None]:
    """Every file written to a temporary name first; the block runs (e.g. the store's write); only then are they
    renamed into place. A failure while writing, or in the block, leaves none of them behind, and nothing of the
    block's work is kept where the files cannot be written."""
    staged: list[tuple[str, Path]] = []
    made: list[Path] = []  # folders made here: removed again (when empty) after a failure
    done = False
    try:
        for path, text in files.items():
            path = Path(path)
            made += [q for q in reversed(path.parents) if not os.path.lexists(q)]
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
        yield
        for tmp, path in staged:
            os.replace(tmp, path)
        done = True
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        if not done:
            for q in reversed(made):
                with contextlib.suppress(OSError):
                    q.rmdir()
