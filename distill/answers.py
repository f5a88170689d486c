"""Answer files in the strict format: `[{"id": ..., "output": "B"}, ...]`, every test id exactly once.
A malformed file scores nothing, so every write is validated first and atomic."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from distill.fileio import atomic_write_json
from distill.letters import parse_answer

log = logging.getLogger(__name__)
VALID = set("ABCD")


class AnswerError(ValueError):
    pass


def validate(answers: list[dict], expected_ids: list[str], where: str = "answers") -> None:
    problems = []
    seen: dict[str, int] = {}
    for k, a in enumerate(answers):
        if not isinstance(a, dict) or set(a) != {"id", "output"}:
            problems.append(f"entry #{k}: must be an object with exactly 'id' and 'output'")
            continue
        if a["output"] not in VALID:
            problems.append(f"entry #{k} id={a['id']}: output {a['output']!r} is not a single letter A-D")
        seen[a["id"]] = seen.get(a["id"], 0) + 1
    dup = [i for i, n in seen.items() if n > 1]
    missing = [i for i in expected_ids if i not in seen]
    extra = [i for i in seen if i not in set(expected_ids)]
    if dup:
        problems.append(f"duplicate ids: {dup[:10]}")
    if missing:
        problems.append(f"{len(missing)} test ids missing: {missing[:10]}")
    if extra:
        problems.append(f"{len(extra)} ids not in the test set: {extra[:10]}")
    if problems:
        raise AnswerError(f"{where} is invalid:\n  " + "\n  ".join(problems))


def write_answers(path: str | Path, letters: dict[str, str], expected_ids: list[str]) -> Path:
    answers = [{"id": i, "output": letters[i]} for i in expected_ids if i in letters]
    validate(answers, expected_ids, str(path))
    return atomic_write_json(path, answers)


def read_answers(path: str | Path) -> dict[str, str]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AnswerError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise AnswerError(f"{path}: expected a JSON array")
    validate(data, [a.get("id") for a in data if isinstance(a, dict)], str(path))
    return {a["id"]: a["output"] for a in data}


def from_llamafactory(jsonl: str | Path, ids: list[str], letters: list[list[str]], fallback: str = "A"):
    """LLaMA-Factory `vllm_infer.py` output (one JSON line per dataset record, in order: `prompt`, `predict`,
    `label`) -> {id: letter}, plus the line numbers that held no parseable letter (given `fallback`)."""
    lines = [ln for ln in Path(jsonl).read_text().splitlines() if ln.strip()]
    if len(lines) != len(ids):
        raise AnswerError(f"{jsonl}: {len(lines)} predictions for {len(ids)} test records (they pair up in order)")
    out, bad = {}, []
    for n, (line, rid, opts) in enumerate(zip(lines, ids, letters), start=1):
        try:
            pred = json.loads(line).get("predict", "")
        except json.JSONDecodeError:
            bad.append((n, "not JSON"))
            out[rid] = fallback
            continue
        text = re.sub(r"<think>.*?</think>", "", str(pred), flags=re.DOTALL).strip()
        letter = parse_answer(text, opts)
        if letter is None and text[:1].upper() in opts and (len(text) == 1 or not text[1].isalpha()):
            letter = text[0].upper()
        if letter is None:
            bad.append((n, f"no letter in {text[:60]!r}"))
            letter = fallback
        out[rid] = letter
    for n, why in bad:
        log.warning("%s line %d: %s (answered %s)", jsonl, n, why, fallback)
    return out, bad
