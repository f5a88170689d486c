"""Writing outputs: atomic (a temporary file in the same folder, fsynced, renamed over the target), readable by
others (0644), and never over an existing output unless the caller was told `--overwrite`."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


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
    """Every file written to a temporary name first, then all of them put in place (each file they replace kept
    aside), then the block runs (e.g. the store's write). A failure while writing, while putting them in place or in
    the block puts back what was there before: the folder holds all the new files or all the old ones, never a mix,
    and a block that commits last keeps nothing where the files could not be put in place."""
    staged: list[tuple[str, Path]] = []
    made: list[Path] = []  # folders made here: removed again (when empty) after a failure
    placed: list[tuple[Path, Path | None]] = []  # (file put in place, the previous version set aside, if any)
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
        for tmp, path in staged:
            placed.append(_put_in_place(tmp, path))
        yield
        done = True
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        if done:
            for _, previous in placed:
                if previous is not None:
                    with contextlib.suppress(OSError):  # the new files are in place: a leftover copy harms nothing
                        previous.unlink(missing_ok=True)
        else:
            _put_back(placed)
            for q in reversed(made):
                with contextlib.suppress(OSError):
                    q.rmdir()


def _put_in_place(tmp: str, path: Path) -> tuple[Path, Path | None]:
    """Rename `tmp` over `path`, a hard link (else a copy) of the file it replaces kept aside first."""
    previous = None
    if os.path.lexists(path):
        previous = path.parent / f".{path.name}.{secrets.token_hex(6)}.previous"
        try:
            os.link(path, previous)
        except OSError:  # no hard links here (or the file refuses them): a copy
            shutil.copy2(path, previous)
    try:
        os.replace(tmp, path)
    except BaseException:
        if previous is not None:
            previous.unlink(missing_ok=True)
        raise
    return path, previous


def _put_back(placed: list[tuple[Path, Path | None]]) -> None:
    """Undo `_put_in_place`, last file first: each previous version back, each new file that replaced none removed.
    A previous version that cannot be put back stays where it was set aside, and the log says where."""
    for path, previous in reversed(placed):
        try:
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                os.replace(previous, path)
        except OSError as exc:
            log.error("could not put back %s (%s): its previous version is %s", path, exc, previous)
