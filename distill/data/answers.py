"""Answer files in the strict format: `[{"id": ..., "output": "B"}, ...]`, every test id exactly once.
A malformed file scores nothing, so every write is validated first and atomic. `output` is one capital letter: A-D
for MAC's four-option items (the task's rule), up to Z for items with more options (one rule with the loaders)."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

from distill.data.fileio import atomic_write_json
from distill.data.items import LETTERS, Item
from distill.data.letters import parse_reply
from distill.errors import UserError

log = logging.getLogger(__name__)
VALID = set(LETTERS)


class AnswerError(UserError, ValueError):
    pass


def validate(answers: list[dict], expected_ids: list[str], where: str = "answers") -> None:
    problems = []
    seen: dict[str, int] = {}
    for k, a in enumerate(answers):
        if not isinstance(a, dict) or set(a) != {"id", "output"}:
            problems.append(f"entry #{k}: must be an object with exactly 'id' and 'output'")
            continue
        if not isinstance(a["id"], str):
            problems.append(f"entry #{k}: id {a['id']!r} is not a string")
            continue
        if not isinstance(a["output"], str) or a["output"] not in VALID:
            problems.append(f"entry #{k} id={a['id']}: output {a['output']!r} is not a single capital letter A-Z")
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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnswerError(f"{path}: not valid JSON: {exc}") from None
    except RecursionError:
        raise AnswerError(f"{path}: not valid JSON: nested too deeply to read") from None
    if not isinstance(data, list):
        raise AnswerError(f"{path}: expected a JSON array")
    validate(data, [a.get("id") for a in data if isinstance(a, dict)], str(path))
    return {a["id"]: a["output"] for a in data}


FILL_RULE = (
    "an unparseable line gets the letter its task's parsed answers have chosen least often so far "
    "(ties: the earliest such letter in A-D order), so fills never pile onto one letter"
)


_VISION = re.compile(r"<\|vision_start\|>.*?<\|vision_end\|>", re.DOTALL)


def _squash(text: str) -> str:
    return "".join(text.split())


def prompt_problem(prompt: str, item: Item) -> str | None:
    """Why a `vllm_infer.py` prompt was not built from `item` (None: it may well have been). The prompt is the
    decoded prompt ids: its images show as `<|vision_start|>...<|vision_end|>` (or `<image>`) unless special tokens
    were skipped (then not at all), and the record's question stands in it verbatim, unless `cutoff_len` cut the
    prompt inside the question. Whitespace is not compared."""
    shown = prompt.count("<|vision_start|>") or prompt.count("<image>")
    if shown and shown != len(item.images):
        return f"the prompt shows {shown} image(s) where the record has {len(item.images)}"
    text = _squash(_VISION.sub("", prompt).replace("<image>", ""))
    question = _squash(item.input.replace("<image>", ""))
    if not question or question in text:
        return None
    at = text.find(question[:64])
    if at >= 0 and question.startswith(text[at:]):  # cut off at cutoff_len inside the question
        return None
    return "the prompt does not hold the record's question"


def from_llamafactory(
    jsonl: str | Path,
    ids: list[str],
    letters: list[list[str]],
    fallback: str | None = None,
    records: list[Item] | None = None,
) -> tuple[dict[str, str], list[dict]]:
    """LLaMA-Factory `vllm_infer.py` output (one JSON line per dataset record, in order: `prompt`, `predict`,
    `label`) -> ({id: letter}, one detail row per line). Blank lines are skipped; line numbers are the file's own.

    The lines must be the test records' own: as many lines as records and, where `records` are given and a line has
    a `prompt`, that prompt built from its record (`prompt_problem`: the number of images, the question text);
    otherwise it refuses with one line naming the first line that does not match.

    Replies are parsed strictly (`distill.data.letters.parse_reply`): a final `Answer: X`, "the answer is X", a
    reply (or last line) that is only the letter, "(X)", ...; a lone letter counts in either case, as the
    parenthesised and `Answer:` forms do ("b", "(b)", "Answer: b" are B); a JSON object's `answer` value is read
    by the same rule (`{"answer": "(C)"}` is C, in a code fence or after words too). A line with no letter named as the
    answer (or no `predict` field) is filled by `fallback` (a letter) or, by default, by FILL_RULE, and its row
    says why."""
    physical = Path(jsonl).read_text(encoding="utf-8").splitlines()
    lines = [(n, ln) for n, ln in enumerate(physical, start=1) if ln.strip()]
    if len(lines) != len(ids):
        raise AnswerError(f"{jsonl}: {len(lines)} predictions for {len(ids)} test records (they pair up in order)")
    rows: list[dict] = []
    for k, ((n, line), rid, opts) in enumerate(zip(lines, ids, letters)):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            raw, letter, why = line, None, "not a JSON object"
        elif obj.get("predict") is None:
            raw, letter, why = "", None, "no `predict` field" if "predict" not in obj else "`predict` is null"
        else:
            raw = obj["predict"]
            letter, why = parse_reply(str(raw), opts)
        prompt = obj.get("prompt") if isinstance(obj, dict) else None
        if records is not None and isinstance(prompt, str) and prompt.strip():
            problem = prompt_problem(prompt, records[k])
            if problem:
                rec = records[k]
                raise AnswerError(
                    f"{jsonl} line {n}: not a prediction for test record {rec.id} ({rec.task}, {rec.source}): "
                    f"{problem}; were these predictions made on this test file, in its order?"
                )
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
