"""`distill eval`: accuracy per task and overall (item-weighted), letter confusion (position bias),
calibration (ECE, from the details file), per-journal accuracy; JSON, markdown and a PNG."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from distill.data.answers import AnswerError, read_answers
from distill.data.fileio import atomic_write_json, atomic_write_text
from distill.data.filenames import task_of
from distill.data.items import LETTERS

MAC_LETTERS = "ABCD"  # always shown in the letter tables


GOLD_FORMS = (
    "a labelled task file (a JSON array of records with input, output and images, e.g. image2text_dev.json), a "
    'JSON array of {"id", "output"} records named after its task (e.g. image2text_test_gold.json), or a MAC CSV'
)


def _what(data) -> str:
    """What a JSON document is, in a few words, for an error message."""
    if isinstance(data, dict):
        keys = list(data)[:3]
        return f"an object with keys {keys}" + (" ..." if len(data) > 3 else "")
    if isinstance(data, list):
        if not data:
            return "an empty array"
        bad = next((r for r in data if not isinstance(r, dict)), None)
        if bad is not None:
            return f"an array holding {type(bad).__name__} {str(bad)[:40]!r}"
        return f"an array of objects with keys {sorted(data[0])[:6]}"
    return f"a JSON {type(data).__name__}"


def load_gold(path: str | Path) -> tuple[str, dict[str, str], dict[str, str]]:
    """(task, {id: gold}, {id: journal}) from a labelled task file, a MAC CSV, or a `[{"id", "output"}]` key."""
    path = Path(path)
    task = task_of(path)
    if not path.is_file():
        raise AnswerError(f"--gold {path}: file not found")
    if path.name == "dataset_info.json":
        from distill.data.registry import read_registry

        files = [str(e.get("file_name")) for e in read_registry(path).values() if isinstance(e, dict)]
        raise AnswerError(
            f"--gold {path}: a LLaMA-Factory registry of {len(files)} dataset(s) ({', '.join(files[:4])}"
            f"{' ...' if len(files) > 4 else ''}), not one labelled set: pass the labelled file itself; expected "
            f"{GOLD_FORMS}"
        )
    if path.suffix.lower() == ".csv":
        from distill.data.mac_csv import load_csv

        return _labelled(path, load_csv(path, check_images=False, split="test").items)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnswerError(f"--gold {path}: not valid JSON ({exc}); expected {GOLD_FORMS}") from None
    except RecursionError:
        raise AnswerError(f"--gold {path}: not valid JSON (nested too deeply to read); expected {GOLD_FORMS}") from None
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise AnswerError(f"--gold {path}: found {_what(data)}; expected {GOLD_FORMS}")
    if "input" in data[0]:
        from distill.data.records import load_json

        return _labelled(path, load_json(path, check_images=False, split="test").items)
    bad = next((k for k, r in enumerate(data) if not {"id", "output"} <= set(r)), None)
    if bad is not None:
        raise AnswerError(f"--gold {path}: record #{bad} has keys {sorted(data[bad])[:6]}; expected {GOLD_FORMS}")
    letters = next((r for r in data if not isinstance(r["output"], str) or r["output"] not in LETTERS), None)
    if letters is not None:
        raise AnswerError(
            f"--gold {path}: id {letters['id']!r} has output {letters['output']!r}, not a capital letter A-Z"
        )
    if task is None:
        raise AnswerError(
            f"--gold {path}: cannot tell the task from the file name (give it the word image2text or text2image, e.g. "
            "image2text_test_gold.json)"
        )
    return (
        task,
        {str(r["id"]): r["output"] for r in data},
        {str(r["id"]): r["journal"] for r in data if r.get("journal")},
    )


def _labelled(path: Path, items: list) -> tuple[str, dict[str, str], dict[str, str]]:
    if not items:
        raise AnswerError(f"--gold {path}: no records")
    unlabelled = [it.id for it in items if not it.gold]
    if unlabelled:
        raise AnswerError(
            f"--gold {path}: {len(unlabelled)} record(s) have no gold letter (e.g. {unlabelled[:3]}); it cannot be "
            "used as a key"
        )
    return items[0].task, {it.id: it.gold for it in items}, {it.id: it.journal for it in items if it.journal}


def ece(confidences: list[float], correct: list[bool], bins: int = 10) -> tuple[float, list[dict]]:
    table = []
    total = len(confidences)
    err = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidences) if (lo < c <= hi) or (b == 0 and c == 0)]
        if not idx:
            continue
        conf = sum(confidences[i] for i in idx) / len(idx)
        acc = sum(correct[i] for i in idx) / len(idx)
        err += len(idx) / total * abs(conf - acc)
        table.append({"bin": [lo, hi], "n": len(idx), "confidence": conf, "accuracy": acc})
    return err, table


def letters_of(*used: Iterable[str]) -> str:
    """The letters a report shows: A to D, or on to the last letter the gold or the answers use."""
    last = max((LETTERS.index(L) for L in set().union(*used) if L in LETTERS), default=0)
    return LETTERS[: max(last + 1, len(MAC_LETTERS))]


def evaluate_task(
    answers: dict[str, str], gold: dict[str, str], journals: dict[str, str], details: dict[str, dict] | None = None
) -> dict:
    missing = [i for i in gold if i not in answers]
    extra = [i for i in answers if i not in gold]
    if missing or extra:
        raise AnswerError(
            f"answers do not match the key: {len(missing)} missing ids {missing[:5]}, "
            f"{len(extra)} extra ids {extra[:5]}"
        )
    correct = {i: answers[i] == g for i, g in gold.items()}
    letters = letters_of(gold.values(), answers.values())
    confusion = {g: dict(Counter(answers[i] for i in gold if gold[i] == g)) for g in letters}
    per_journal = defaultdict(list)
    for i, j in journals.items():
        per_journal[j].append(correct[i])
    report = {
        "n": len(gold),
        "accuracy": sum(correct.values()) / len(gold),
        "predicted_letters": dict(Counter(answers.values())),
        "gold_letters": dict(Counter(gold.values())),
        "confusion": confusion,
        "per_journal": {j: {"n": len(v), "accuracy": sum(v) / len(v)} for j, v in sorted(per_journal.items())},
    }
    if details:
        ids = [i for i in gold if i in details]
        conf = [max(details[i]["probs"].values()) for i in ids]
        report["ece"], report["reliability"] = ece(conf, [correct[i] for i in ids])
    return report


def evaluate(answers_dir: str | Path, gold_files: list[str | Path], out_dir: str | Path | None = None) -> dict:
    answers_dir = Path(answers_dir)
    tasks = {}
    for g in gold_files:
        task, gold, journals = load_gold(g)
        ans_path = answers_dir / f"{task}_answer.json"
        if not ans_path.exists():
            raise AnswerError(f"no answer file {ans_path}")
        details_path = answers_dir / f"{task}_details.jsonl"
        details = None
        if details_path.exists():
            details = {r["id"]: r for r in map(json.loads, details_path.read_text().splitlines()) if r}
        tasks[task] = evaluate_task(read_answers(ans_path), gold, journals, details)
    n = sum(t["n"] for t in tasks.values())
    report = {"tasks": tasks, "overall": {"n": n, "accuracy": sum(t["accuracy"] * t["n"] for t in tasks.values()) / n}}
    if out_dir:
        out = Path(out_dir)
        atomic_write_json(out / "eval.json", report)
        atomic_write_text(out / "eval.md", markdown(report))
        plot(report, out / "eval.png")
    return report


def markdown(report: dict) -> str:
    lines = ["| task | n | accuracy | ECE |", "|---|---:|---:|---:|"]
    for task, t in report["tasks"].items():
        e = f"{t['ece']:.3f}" if "ece" in t else "-"
        lines.append(f"| {task} | {t['n']} | {t['accuracy']:.1%} | {e} |")
    o = report["overall"]
    lines.append(f"| **overall** | {o['n']} | **{o['accuracy']:.1%}** | |")
    for task, t in report["tasks"].items():
        letters = letters_of(t["gold_letters"], t["predicted_letters"])
        lines += [
            "",
            f"{task}: gold letter (rows) vs predicted (columns)",
            "",
            "| gold | " + " | ".join(letters) + " |",
            "|---|" + "---:|" * len(letters),
        ]
        for g in letters:
            row = t["confusion"].get(g, {})
            lines.append(f"| {g} | " + " | ".join(str(row.get(p, 0)) for p in letters) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(report["tasks"].items())
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 8), squeeze=False)
    for col, (task, t) in enumerate(tasks):
        ax = axes[0][col]
        rel = t.get("reliability", [])
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        if rel:
            ax.bar(
                [(b["bin"][0] + b["bin"][1]) / 2 for b in rel],
                [b["accuracy"] for b in rel],
                width=0.09,
                alpha=0.7,
                label="accuracy",
            )
            ax.plot([b["confidence"] for b in rel], [b["accuracy"] for b in rel], "o")
        ax.set(
            title=f"{task}: reliability" + (f" (ECE {t['ece']:.3f})" if "ece" in t else ""),
            xlabel="confidence",
            ylabel="accuracy",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax = axes[1][col]
        letters = letters_of(t["gold_letters"], t["predicted_letters"])
        xs = range(len(letters))
        ax.bar([x - 0.2 for x in xs], [t["gold_letters"].get(L, 0) for L in letters], 0.4, label="gold")
        ax.bar([x + 0.2 for x in xs], [t["predicted_letters"].get(L, 0) for L in letters], 0.4, label="predicted")
        ax.set_xticks(list(xs), list(letters))
        ax.set(title=f"{task}: letter bias (accuracy {t['accuracy']:.1%})")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
