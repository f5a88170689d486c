"""Does distilling the teacher's agents beat training on gold letters? The ablation table, on the sample covers.

    python -m bench.ablation prepare --work W                     # sample data, the sample teacher's graph, augment
    python -m bench.ablation train --work W --rows A,B,F,G,H --out W/ablation.json   # every row x seed, the table
    python -m bench.ablation train --work W --rows G+dpo,G+aug,G:debias,G:cot --out W/ablation.json   # follow-ups

Rows (every row: the same optimizer steps and batch size; `distill sft`, the user's command, on the same store):
  A  gold letters only (the answer task)
  B  accepted rationales then the answer in one sequence, plus an answer per item, one mean over all tokens
     (the defaults of `distill sft` and the shipped recipes: the best row measured)
  F  describe + answer (each task's loss averaged over its own tokens, then weighted; so are G, H, J, C, K)
  G  describe + reason + answer (distilling step by step: every agent's output a task)
  H  answer-first rationales (the letter, then the rationale) + describe
  J  G with each item's letter repeated (--repeats): the answer task keeps a share of the steps
  C  describe, then answer: the answer prompt carries the describer's captions of the covers (at validation and
     test the student's own), beside the describe task (MAC's describe-and-deduce, distilled)
  K  G with the captions in the prompt (C plus the reason task)
  R+dpo  row R for (steps - dpo_steps), then DPO on accepted vs rejected rationales
  R+aug  row R with the augmented items (permutations, recombination) in the answer task
  R:M    row R's model predicted with method M (debias, prior, cot, adaptive) instead of letter scoring
Validation items are on motifs of their own (neither training's nor test's): each run's validation accuracy
every --eval-steps is its learning curve, and the best checkpoint by it is the one tested. Test accuracy is per
task and overall, mean and sd over seeds. Grounding: how often the student's own caption of a test cover names the
cover's colour and shape (the generator's truth scores it), and how often its own rationale ends on the letter
its letter scoring picks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TASKS = {
    "A": ("gold letters only", ["--reason_weight", "0", "--describe_weight", "0", "--task_loss", "task"]),
    "B": (
        "rationale then answer, one token mean",
        ["--reason_weight", "1", "--describe_weight", "0", "--task_loss", "token"],
    ),
    "F": ("describe + answer", ["--reason_weight", "0", "--describe_weight", "{w}", "--task_loss", "task"]),
    "G": (
        "describe + reason + answer",
        ["--reason_weight", "{w}", "--describe_weight", "{w}", "--task_loss", "task"],
    ),
    "J": (
        "describe + reason + answer, letters repeated (--repeats)",
        ["--reason_weight", "{w}", "--describe_weight", "{w}", "--answer_repeats", "{r}", "--task_loss", "task"],
    ),
    "H": (
        "answer-first rationale + describe",
        ["--answer_first", "true", "--reason_weight", "0", "--describe_weight", "{w}", "--task_loss", "task"],
    ),
    "C": (
        "describe, then answer: captions in the prompt + describe",
        ["--reason_weight", "0", "--describe_weight", "{w}", "--captions", "true", "--task_loss", "task"],
    ),
    "K": (
        "G with captions in the prompt",
        ["--reason_weight", "{w}", "--describe_weight", "{w}", "--captions", "true", "--task_loss", "task"],
    ),
}
METHODS = ("debias", "prior", "cot", "adaptive")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["prepare", "train", "table"])
    p.add_argument("--work", required=True)
    p.add_argument("--n-train", type=int, default=1000, help="sample training items per task")
    p.add_argument("--n-val", type=int, default=100, help="validation items per task (motifs of their own)")
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--error-rate", type=float, default=0.2)
    p.add_argument("--rows", default="A,B,F,G,H")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--student", default="tiny", help="a student size of `distill tiny-model --size`")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--dpo-steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dpo-lr", type=float, default=5e-4)
    p.add_argument("--weight", type=float, default=1.0, help="{w}: the reason and describe tasks' loss weight")
    p.add_argument("--repeats", type=int, default=4, help="{r}: row J's examples of each item's letter")
    p.add_argument("--eval-steps", type=int, default=100)
    p.add_argument("--max-pixels", type=int, default=12544)
    p.add_argument("--parallel", type=int, default=2, help="runs at once")
    p.add_argument("--threads", type=int, default=1, help="CPU threads a run")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes a training run")
    p.add_argument("--devices", default="", help="GPUs to spread the runs over, e.g. 0,1 (default: as visible)")
    p.add_argument("--grounding-items", type=int, default=48, help="test items whose covers and rationales are read")
    p.add_argument("--out", default=None)
    return p


def prepare(args, work: Path) -> None:
    from distill.augment import AugmentConfig
    from distill.ingest import DataConfig
    from distill.kit.sample_data import generate
    from distill.kit.sample_teacher.serving import SampleTeacherConfig, serving
    from distill.pipeline import run_augment, run_teacher
    from distill.recipe import load_recipe

    data = generate(work / "data", n_train=args.n_train, n_dev=10, n_test=args.n_test, n_val=args.n_val, seed=0)
    files = {s: [str(data / f"{t}_{s}.json") for t in ("image2text", "text2image")] for s in ("train", "val", "test")}
    teacher = {"backend": "openai", "model": "sample-teacher", "max_pixels": 62720, "concurrency": 16}
    with serving(SampleTeacherConfig(port=0, error_rate=args.error_rate)) as url:
        recipe = load_recipe(
            None,
            {
                "workdir": str(work),
                "db": str(work / "traces.db"),
                "data": DataConfig(**files, max_pixels=args.max_pixels).model_dump(),
                "teacher": {
                    "describer": teacher | {"base_url": url},
                    "reasoner": teacher | {"base_url": url, "structured": "choice"},
                    "max_attempts": 2,
                    "rationalize": True,
                    "samples": 2,
                    "temperature": 0.7,
                    "seed": 0,
                    "max_new_tokens": 256,
                    "describe_tokens": 64,
                    "min_words": 10,
                    "concurrency": 16,
                },
            },
        )
        summary = run_teacher(recipe, run_id="teacher")
    aug = run_augment(
        recipe.db, work / "augment", AugmentConfig(permutations=1, option_counts=[4]), show_progress=False
    )
    (work / "prepared.json").write_text(
        json.dumps({"teacher": summary.as_dict(), "augment": aug, "teacher_stats": teacher_stats(recipe.db)}, indent=1)
    )
    print(json.dumps({"teacher": summary.as_dict(), "augment": aug["counts"]}, indent=1))


def teacher_stats(db) -> dict:
    """The teacher's own accuracy (first attempts), the critic's acceptance, and what STaR recovered."""
    from store.db import Store

    store = Store(db)
    gold = {it.key: it.gold for it in store.items(split="train")}
    traces = store.traces(run_id="teacher")
    first = [t for t in traces if t["attempt"] == 0 and not t["hinted"]]
    hinted = [t for t in traces if t["hinted"]]
    return {
        "first_attempt_accuracy": sum(t["answer"] == gold[t["item_key"]] for t in first) / max(1, len(first)),
        "acceptance": sum(t["verdict"] == "accepted" for t in traces) / max(1, len(traces)),
        "traces": len(traces),
        "rejected_wrong_answer": sum(t["reason"] == "wrong_answer" for t in traces),
        "rejected_hint_leak": sum(t["reason"] == "hint_leak" for t in traces),
        "star_recovered": sum(t["verdict"] == "accepted" for t in hinted),
        "star_tried": len(hinted),
        "descriptions": len(store.descriptions()),
    }


def parse_row(row: str) -> tuple[str, str | None, str]:
    """'G+dpo' -> (G, dpo, score); 'G:cot' -> (G, None, cot); 'A' -> (A, None, score)."""
    base, _, method = row.partition(":")
    base, _, extra = base.partition("+")
    if base not in TASKS or extra not in ("", "dpo", "aug") or (method and method not in METHODS):
        raise SystemExit(f"unknown row {row!r}: rows are {', '.join(TASKS)}, optionally +dpo or +aug, or :METHOD")
    return base, extra or None, method or "score"


def _runs(cmds: list[tuple[str, list[str]]], args, work: Path) -> None:
    """Run the commands, `parallel` at a time, each logging to its own file and timed; a failure stops the table."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(args.threads))
    times_path = work / "times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    devices = [d for d in args.devices.split(",") if d]
    pending, running, failed, launched = list(cmds), [], [], 0
    while pending or running:
        while pending and len(running) < args.parallel:
            name, cmd = pending.pop(0)
            log = open(work / "logs" / f"{name}.log", "w")  # noqa: SIM115 (closed when the run ends)
            if devices:  # one GPU a run, round robin
                env["CUDA_VISIBLE_DEVICES"] = devices[launched % len(devices)]
            launched += 1
            proc = subprocess.Popen(
                [sys.executable, "-m", "distill.cli", *cmd], stdout=log, stderr=subprocess.STDOUT, env=env
            )
            running.append((name, proc, log, time.time()))
        time.sleep(1)
        for entry in list(running):
            name, proc, log, started = entry
            if proc.poll() is None:
                continue
            running.remove(entry)
            log.close()
            times[name] = round(time.time() - started, 1)
            times_path.write_text(json.dumps(times, indent=1))
            failed += [name] if proc.returncode else []
            print(f"{time.strftime('%X')} {name}: exit {proc.returncode} ({times[name]:.0f} s)", flush=True)
    if failed:
        raise SystemExit(f"runs failed: {failed} (logs in {work / 'logs'})")


def train(args, work: Path) -> None:
    from distill.kit.tiny_model import build_tiny_model

    (work / "logs").mkdir(exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [parse_row(r) for r in args.rows.split(",")]
    models = {s: work / f"student-{args.student}-{s}" for s in seeds}
    for s, path in models.items():
        if not (path / "config.json").exists():
            build_tiny_model(path, seed=s, size=args.student, max_pixels=args.max_pixels)
    common = [
        "--db", str(work / "traces.db"), "--max_pixels", str(args.max_pixels), "--report_to", "none",
        "--per_device_train_batch_size", str(args.batch), "--per_device_eval_batch_size", "64",
        "--use_peft", "false", "--freeze_vision", "false", "--templates", "true", "--disable_tqdm", "true",
        "--eval_strategy", "steps", "--eval_steps", str(args.eval_steps), "--val_max_items", "1000",
        "--save_strategy", "steps", "--save_steps", str(args.eval_steps), "--save_total_limit", "1",
        "--logging_steps", str(args.eval_steps), "--dataloader_num_workers", str(args.workers),
    ]  # fmt: skip

    def name(base: str, extra: str | None, seed: int) -> str:
        return f"{args.student}-{base}{'+' + extra if extra else ''}-{seed}"

    def again(out: Path) -> list[str]:  # a run cut short (a call's time limit) continues from its checkpoint
        return ["--resume"] if list(out.glob("checkpoint-*")) else ["--overwrite"]

    sft_runs = list(dict.fromkeys((b, e) for b, e, _ in rows))
    cmds = []
    for base, extra in sft_runs:
        flags = [f.format(w=args.weight, r=args.repeats) for f in TASKS[base][1]]
        steps = args.steps - (args.dpo_steps if extra == "dpo" else 0)
        for s in seeds:
            out = work / f"sft-{name(base, extra, s)}"
            if (out / "final").exists():
                continue
            cmds.append((
                f"sft-{name(base, extra, s)}",
                ["sft", *common, *again(out), *flags, "--augmented", "true" if extra == "aug" else "false",
                 "--model_name_or_path", str(models[s]), "--output_dir", str(out), "--learning_rate", str(args.lr),
                 "--lr_scheduler_type", "constant_with_warmup", "--warmup_steps", "20", "--max_steps", str(steps),
                 "--seed", str(s)],
            ))  # fmt: skip
    _runs(cmds, args, work)
    cmds = [
        (
            f"dpo-{name(base, extra, s)}",
            [
                "dpo",
                *common,
                *again(work / f"dpo-{name(base, extra, s)}"),
                "--include_hinted",
                "true",
                "--augmented",
                "false",
                "--model_name_or_path",
                str(work / f"sft-{name(base, extra, s)}" / "final"),
                "--output_dir",
                str(work / f"dpo-{name(base, extra, s)}"),
                "--learning_rate",
                str(args.dpo_lr),
                "--beta",
                "0.1",
                "--max_steps",
                str(args.dpo_steps),
                "--seed",
                str(s),
                "--per_device_train_batch_size",
                str(max(1, args.batch // 4)),
            ],
        )  # fmt: skip
        for base, extra in sft_runs
        if extra == "dpo"
        for s in seeds
        if not (work / f"dpo-{name(base, extra, s)}" / "final").exists()
    ]
    _runs(cmds, args, work)
    tests = [
        "--data",
        str(work / "data" / "image2text_test.json"),
        "--data",
        str(work / "data" / "text2image_test.json"),
    ]
    cmds = []
    for base, extra, method in rows:
        for s in seeds:
            model = work / f"{'dpo' if extra == 'dpo' else 'sft'}-{name(base, extra, s)}" / "final"
            out = work / f"answers-{name(base, extra, s)}-{method}"
            if (out / "text2image_answer.json").exists():
                continue
            cmds.append((
                f"predict-{name(base, extra, s)}-{method}",
                ["predict", "--model", str(model), *tests, "--out", str(out), "--method", method,
                 "--max-pixels", str(args.max_pixels), "--samples", "5", "--max-new-tokens", "96",
                 "--concurrency", "64", "--overwrite"],
            ))  # fmt: skip
    _runs(cmds, args, work)
    for base, extra, method in rows:
        if method != "score":
            continue
        for s in seeds:
            target = work / f"grounding-{name(base, extra, s)}.json"
            if not target.exists():
                model = work / f"{'dpo' if extra == 'dpo' else 'sft'}-{name(base, extra, s)}" / "final"
                scored = work / f"answers-{name(base, extra, s)}-score"
                target.write_text(json.dumps(grounding(model, work / "data", scored, args), indent=1))


def grounding(model_dir: Path, data_dir: Path, scored: Path, args) -> dict:
    """The student's own captions of test covers and rationales for test items (distill.kit.grounding)."""
    from distill.data.records import load_json
    from distill.kit.grounding import grounding as read_student
    from distill.kit.grounding import scored_letters

    items = []
    for task in ("image2text", "text2image"):
        gold = {r["id"]: r["output"] for r in json.loads((data_dir / f"{task}_test_gold.json").read_text())}
        items += [it.model_copy(update={"gold": gold[it.id]}) for it in load_json(data_dir / f"{task}_test.json").items]
    items = items[:: max(1, len(items) // args.grounding_items)][: args.grounding_items]
    return read_student(model_dir, data_dir, scored_letters(scored), items, args.max_pixels)


def curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, validation accuracy) at every evaluation of a run."""
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]


def table(args, work: Path) -> dict:
    from distill.evaluate import evaluate

    gold = [work / "data" / f"{t}_test_gold.json" for t in ("image2text", "text2image")]
    times = json.loads((work / "times.json").read_text()) if (work / "times.json").exists() else {}
    out: dict = {"args": vars(args), "rows": {}}
    if (work / "prepared.json").exists():
        out["teacher"] = json.loads((work / "prepared.json").read_text())["teacher_stats"]

    def stat(values: list[float]) -> str:
        if not values:
            return "-"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"

    for folder in sorted(work.glob("answers-*")):
        student, row, seed, method = folder.name.removeprefix("answers-").rsplit("-", 3)
        if not (folder / "text2image_answer.json").exists():
            continue
        report = evaluate(folder, gold)
        key = f"{student} {row}" + (f":{method}" if method != "score" else "")
        r = out["rows"].setdefault(key, {"seeds": []})
        r["seeds"].append(int(seed))
        for task, t in report["tasks"].items():
            r.setdefault(task, []).append(t["accuracy"])
        r.setdefault("overall", []).append(report["overall"]["accuracy"])
        sft = work / f"sft-{student}-{row}-{seed}"
        r.setdefault("curve", []).append(curve(sft))
        r.setdefault("train_s", []).append(
            times.get(f"sft-{student}-{row}-{seed}", 0) + times.get(f"dpo-{student}-{row}-{seed}", 0)
        )
        g = work / f"grounding-{student}-{row}-{seed}.json"
        if g.exists() and method == "score":
            for k, v in json.loads(g.read_text()).items():
                if k != "examples":
                    r.setdefault(k, []).append(v)
    lines = [
        "| student | row | what trains | image2text | text2image | overall | caption colour | caption shape | "
        "rationale right | rationale = letter | train s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in sorted(out["rows"].items()):
        student, row = key.split(" ")
        base = parse_row(row)[0]
        cells = [stat(r.get(c, [])) for c in ("image2text", "text2image", "overall")]
        cells += [
            stat(r.get(c, [])) for c in ("caption_colour", "caption_shape", "rationale_correct", "rationale_agrees")
        ]
        cells.append(f"{statistics.mean(r['train_s']):.0f}" if r.get("train_s") else "-")
        lines.append(f"| {student} | {row} | {TASKS[base][0]} | " + " | ".join(cells) + " |")
    out["markdown"] = "\n".join(lines)
    print(out["markdown"])
    return out


def main(argv=None) -> dict | None:
    args = make_parser().parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.stage == "prepare":
        prepare(args, work)
        return None
    if args.stage == "train":
        train(args, work)
    res = table(args, work)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
