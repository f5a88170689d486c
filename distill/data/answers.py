"""Answer files in the strict format: `[{"id": ..., "output": "B"}, ...]`, every test id exactly once.
A malformed file scores nothing, so every write is validated first and atomic."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from distill.data.fileio import atomic_write_json
from distill.data.letters import parse_reply

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


FILL_RULE = (
    "an unparseable line gets the letter its task's parsed answers have chosen least often so far "
    "(ties: the earliest such letter in A-D order), so fills never pile onto one letter"
)


def from_llamafactory(
    jsonl: str | Path, ids: list[str], letters: list[list[str]], fallback: str | None = None
) -> tuple[dict[str, str], list[dict]]:
    """LLaMA-Factory `vllm_infer.py` output (one JSON line per dataset record, in order: `prompt`, `predict`,
    `label`) -> ({id: letter}, one detail row per line). Replies are parsed strictly; a line with no letter
    named as the answer is filled by `fallback` (a letter) or, by default, by FILL_RULE, and its row says so."""
    lines = [ln for ln in Path(jsonl).read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(lines) != len(ids):
        raise AnswerError(f"{jsonl}: {len(lines)} predictions for {len(ids)} test records (they pair up in order)")
    rows: list[dict] = []
    for n, (line, rid, opts) in enumerate(zip(lines, ids, letters), start=1):
        try:
            raw = json.loads(line).get("predict", "")
        except (json.JSONDecodeError, AttributeError):
            raw, letter, why = line, None, "not a JSON object"
        else:
            letter, why = parse_reply(str(raw), opts)
        rows.append(
            {
                "id": rid,
                "line": n,
                "raw": raw,
                "letter": letter,
                "parsed": letter is not None,
                **({"why": why} if why else {}),
            }
        )
    chosen = Counter(r["letter"] for r in rows if r["parsed"])
    for r, opts in zip(rows, letters):
        if r["parsed"]:
            continue
        if fallback:
            if fallback not in opts:
                raise AnswerError(f"--fallback {fallback} is not an option letter ({''.join(opts)})")
            r["letter"], r["filled_by"] = fallback, "--fallback"
        else:
            r["letter"] = min(opts, key=lambda L: (chosen[L], L))
            r["filled_by"] = "least-chosen"
            chosen[r["letter"]] += 1
        log.warning(
            "%s line %d (id %s): %s in %r; answered %s (%s)",
            jsonl,
            r["line"],
            r["id"],
            r["why"],
            str(r["raw"])[:60],
            r["letter"],
            r["filled_by"],
        )
    return {r["id"]: r["letter"] for r in rows}, rows
