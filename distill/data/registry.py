"""A LLaMA-Factory `dataset_info.json`, read as LLaMA-Factory 0.9.5 reads it (`data/parser.py`, `converter.py`).

- `formatting: alpaca` (the default): the user turn is `prompt` and `query` joined by a newline (each only when
  present); `response` is the answer; `system` is the system turn (absent: the template's default); `images`.
  An entry without `columns` uses LLaMA-Factory's defaults (instruction, input, output); with `columns`, a column
  it does not list is absent.
- `formatting: sharegpt`: `messages` (default `conversations`) with `tags` (from/value, human/gpt/system); the
  system turn is a leading system message or the `system` column.
- `ranking: true` datasets hold preference pairs, not multiple-choice items: an error naming the dataset.
- `file_name` is relative to the registry's folder, images to that folder (LLaMA-Factory's default
  `media_dir`), else to the working directory.
Each dataset keeps its own split, from its name (or its file's): a registry's dev and test sets never become
training data."""

from __future__ import annotations

import json
from pathlib import Path

from distill.data.filenames import split_of, task_of
from distill.data.items import Item
from distill.data.letters import parse_answer
from distill.data.options import parse_options
from distill.data.records import (
    Bad,
    DataError,
    Loaded,
    RecordError,
    build_item,
    collect,
    finish,
    read_records,
    task_for,
)

ALPACA_DEFAULTS = {"prompt": "instruction", "query": "input", "response": "output"}
SHAREGPT_DEFAULTS = {"messages": "conversations"}
TAG_DEFAULTS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "system_tag": "system",
}


def read_registry(path: Path) -> dict:
    if not path.is_file():
        raise DataError([RecordError(str(path), -1, None, "file", "file not found")])
    try:
        reg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError([RecordError(str(path), -1, None, "file", f"not valid JSON: {exc}")]) from None
    except RecursionError:
        raise DataError([RecordError(str(path), -1, None, "file", "JSON nested too deeply to read")]) from None
    if not isinstance(reg, dict):
        raise DataError([RecordError(str(path), -1, None, "file", "expected an object of named datasets")])
    return reg


def load_registry(
    path: str | Path,
    names: list[str] | None = None,
    *,
    split: str | None = None,
    check_images: bool = True,
    skip_invalid: bool = False,
    hint: str | None = None,
) -> Loaded:
    """Datasets registered in a LLaMA-Factory `dataset_info.json`. `split` applies only to datasets whose name
    and file name declare none."""
    path = Path(path)
    out = Loaded()
    for name, entry in read_registry(path).items():
        if names and name not in names:
            continue
        problem = _entry_problem(entry)
        if problem:
            out.errors.append(RecordError(str(path), -1, name, problem[0], problem[1]))
            continue
        file = Path(entry["file_name"])
        file = file if file.is_absolute() else path.parent / file
        ds_split = split_of(name) or split_of(file) or split
        if ds_split is None:
            out.errors.append(
                RecordError(
                    str(path),
                    -1,
                    name,
                    "split",
                    f"cannot tell the split of dataset {name!r} "
                    "from its name or file (name it *_train, *_dev or *_test)",
                )
            )
            continue
        try:
            out.extend(_load_dataset(file, name, entry, ds_split, [path.parent, Path.cwd()], check_images))
        except DataError as exc:  # one dataset's file missing or unreadable: an error of its own, the rest loads
            out.errors.extend(exc.errors)
    return finish(out, skip_invalid, hint)


def _entry_problem(entry) -> tuple[str, str] | None:
    if not isinstance(entry, dict) or "file_name" not in entry:
        return "file_name", "registry entry has no file_name (only local files are read)"
    if entry.get("ranking"):
        return "ranking", "a preference (ranking) dataset holds answer pairs, not multiple-choice items"
    if entry.get("formatting", "alpaca") not in ("alpaca", "sharegpt"):
        return "formatting", f"unknown formatting {entry.get('formatting')!r} (alpaca or sharegpt)"
    return None


def _load_dataset(file: Path, name: str, entry: dict, split: str, roots: list[Path], check_images: bool) -> Loaded:
    sharegpt = entry.get("formatting", "alpaca") == "sharegpt"
    cols = entry.get("columns")
    if cols is None:
        cols = SHAREGPT_DEFAULTS if sharegpt else ALPACA_DEFAULTS
    tags = TAG_DEFAULTS | (entry.get("tags") or {})
    records = read_records(file)

    def build(rec: dict, index: int) -> Item:
        parts = _sharegpt(rec, cols, tags) if sharegpt else _alpaca(rec, cols)
        images = rec.get(cols["images"]) if cols.get("images") else []
        n_images = len(images) if isinstance(images, list) else 1
        return build_item(
            task=task_for(file, task_of(name), n_images),
            images=images,
            rid=rec.get("id"),
            journal=rec.get("journal"),
            split=split,
            source=f"{file}#{index}",
            roots=roots,
            check_images=check_images,
            fields=parts.pop("fields"),
            meta={k: v for k, v in rec.items() if k not in set(cols.values()) | {"id", "journal"}},
            **parts,
        )

    return collect(records, file, build)


def _text(rec: dict, col: str | None) -> str:
    value = rec.get(col) if col else None
    return value if isinstance(value, str) else ""


def _alpaca(rec: dict, cols: dict) -> dict:
    prompt, query = _text(rec, cols.get("prompt")), _text(rec, cols.get("query"))
    system = _text(rec, cols.get("system"))
    if system and prompt and query:  # both a system turn and a prompt prefix: the user turn is prompt + query
        prefix, text, turn = system, f"{prompt}\n{query}", True
    elif system:
        prefix, text, turn = system, query or prompt, True
    else:  # the task's registry: `prompt` (the requirement text) opens the user turn
        prefix, text, turn = (prompt, query, False) if query else ("", prompt, False)
    return {
        "system": prefix,
        "system_turn": turn,
        "text": text,
        "gold": rec.get(cols.get("response") or ""),
        "fields": {
            "system": cols.get("prompt") or cols.get("system") or "system",
            "input": cols.get("query") or cols.get("prompt") or "input",
            "output": cols.get("response") or "output",
            "images": cols.get("images") or "images",
        },
    }


def _sharegpt(rec: dict, cols: dict, tags: dict) -> dict:
    col = cols.get("messages", "conversations")
    messages = rec.get(col)
    if not isinstance(messages, list) or not messages:
        raise Bad(col, "expected a list of messages")
    role, content = tags["role_tag"], tags["content_tag"]
    system = _text(rec, cols.get("system"))
    if messages[0].get(role) == tags["system_tag"]:
        system, messages = str(messages[0].get(content, "")), messages[1:]
    users = [m for m in messages if m.get(role) == tags["user_tag"]]
    answers = [m for m in messages if m.get(role) == tags["assistant_tag"]]
    if len(users) != 1 or len(answers) > 1:
        raise Bad(col, "a multiple-choice item is one user turn and at most one answer")
    text = str(users[0].get(content, ""))
    gold = None
    if answers:
        reply = str(answers[0].get(content, ""))
        try:
            gold = parse_answer(reply, [o.letter for o in parse_options(text)]) or reply
        except ValueError:
            gold = reply
    return {
        "system": system,
        "system_turn": bool(system),
        "text": text,
        "gold": gold,
        "fields": {"system": "system", "input": col, "output": col, "images": cols.get("images") or "images"},
    }
