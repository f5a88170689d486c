"""Writing outputs: atomic (a temporary file in the same folder, fsynced, renamed over the target), readable by
others (0644), and never over an existing output unless the caller was told `--overwrite`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    present = [str(p) for p in paths if Path(p).exists()]
    if present and not overwrite:
        more = f" and {len(present) - 3} more" if len(present) > 3 else ""
        raise FileExistsError(f"{', '.join(present[:3])}{more} already exist(s): pass --overwrite to replace")


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
