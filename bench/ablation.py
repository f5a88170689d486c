"""Does each stage of the pipeline earn its place? The ablation table, on the sample covers, with the tiny student.

    python -m bench.ablation prepare --work W          # CPU: sample data, the sample-cover teacher's graph, augment
    python -m bench.ablation train --work W --out W/ablation.json   # GPU: every row x seed, then the table

Rows (every row: the same number of optimizer steps and of examples seen, batch x steps):
  A  gold letters only (direct answers)                                   -> score
  B  accepted teacher rationales + one direct answer per item             -> score
  C  B for (steps - dpo_steps), then DPO on accepted vs rejected           -> score
  D  C with augmented items (permutations, recombination) and templates    -> score
  E  D's model                                                            -> debias / prior / cot+sc / adaptive
The teacher is the sample-cover teacher (a stand-in for a VLM that reads the sample covers' pixels, misreading a
colour at --error-rate). Accuracy is on the sample test split, per task and overall, mean and sd over seeds.
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

ROWS = {
    "A": {"sft": ["--rationales", "false", "--direct_share", "1.0", "--augmented", "false"]},
    "B": {"sft": ["--rationales", "true", "--direct_share", "1.0", "--augmented", "false"]},
    "C": {"sft": ["--rationales", "true", "--direct_share", "1.0", "--augmented", "false"], "dpo": True},
    "D": {"sft": ["--rationales", "true", "--direct_share", "1.0", "--augmented", "true"], "dpo": True},
}
METHODS_E = ("debias", "prior", "cot", "adaptive")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["prepare", "train", "table"])
    p.add_argument("--work", required=True)
    p.add_argument("--n-train", type=int, default=1000, help="sample items per task (10%% become validation)")
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--error-rate", type=float, default=0.2)
    p.add_argument("--rows", default="A,B,C,D,E")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--dpo-steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dpo-lr", type=float, default=5e-4)
    p.add_argument("--max-pixels", type=int, default=12544)
    p.add_argument("--parallel", type=int, default=12, help="runs at once (they share the GPU)")
    p.add_argument("--phase", default="sft,dpo,predict", help="train: which phases to run (resumable)")
    p.add_argument("--out", default=None)
    return p


def prepare(args, work: Path) -> None:
    from distill.augment import AugmentConfig
    from distill.data.sample import generate
    from distill.ingest import DataConfig
    from distill.pipeline import run_augment, run_teacher
    from distill.recipe import load_recipe
    from distill.sample_teacher.serving import SampleTeacherConfig, serving

    data = generate(work / "data", n_train=args.n_train, n_dev=10, n_test=args.n_test, seed=0)
    teacher = {
        "backend": "openai",
        "base_url": "http://127.0.0.1:0/v1",
        "model": "sample-teacher",
        "max_pixels": 62720,
        "concurrency": 16,
    }
    with serving(SampleTeacherConfig(port=0, error_rate=args.error_rate)) as url:
        teacher["base_url"] = url
        recipe = load_recipe(
            None,
            {
                "workdir": str(work),
                "db": str(work / "traces.db"),
                "data": DataConfig(
                    train=[str(data / f"{t}_train.json") for t in ("image2text", "text2image")],
                    test=[str(data / f"{t}_test.json") for t in ("image2text", "text2image")],
                    validation_fraction=0.1,
                    max_pixels=args.max_pixels,
                ).model_dump(),
                "teacher": {
                    "describer": teacher,
                    "reasoner": teacher | {"structured": "choice"},
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
    }


def _runs(cmds: list[tuple[str, list[str]]], parallel: int, work: Path) -> None:
    """Run the commands, `parallel` at a time; each logs to its own file; a failure stops the table."""
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2")
    pending, running, failed = list(cmds), [], []
    while pending or running:
        while pending and len(running) < parallel:
            name, cmd = pending.pop(0)
            log = open(work / "logs" / f"{name}.log", "w")  # noqa: SIM115 (closed when the run ends)
            running.append(
                (
                    name,
                    subprocess.Popen(
                        [sys.executable, "-m", "distill.cli", *cmd], stdout=log, stderr=subprocess.STDOUT, env=env
                    ),
                    log,
                )
            )
        time.sleep(2)
        for entry in list(running):
            name, proc, log = entry
            if proc.poll() is not None:
                running.remove(entry)
                log.close()
                if proc.returncode:
                    failed.append(name)
                print(f"{time.strftime('%X')} {name}: exit {proc.returncode}", flush=True)
    if failed:
        raise SystemExit(f"runs failed: {failed} (logs in {work / 'logs'})")


def train(args, work: Path) -> None:
    from distill.tiny_model import build_tiny_model

    (work / "logs").mkdir(exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [r for r in args.rows.split(",") if r in ROWS]
    phases = args.phase.split(",")
    models = {s: work / f"tiny-{s}" for s in seeds}
    for s, path in models.items():
        if not (path / "config.json").exists():
            build_tiny_model(path, seed=s, max_pixels=args.max_pixels, text={"initializer_range": 0.2})
    common = [
        "--db",
        str(work / "traces.db"),
        "--max_pixels",
        str(args.max_pixels),
        "--report_to",
        "none",
        "--per_device_train_batch_size",
        str(args.batch),
        "--use_peft",
        "false",
        "--templates",
        "true",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "steps",
        "--save_steps",
        "100",
        "--save_total_limit",
        "1",
        "--logging_steps",
        "50",
        "--disable_tqdm",
        "true",
        "--dataloader_num_workers",
        "1",
    ]

    def again(out: Path) -> list[str]:  # a run cut short (a call's time limit) continues from its checkpoint
        return ["--resume"] if list(out.glob("checkpoint-*")) else ["--overwrite"]

    if "sft" in phases:
        cmds = []
        for r in rows:
            steps = args.steps - (args.dpo_steps if ROWS[r].get("dpo") else 0)
            for s in seeds:
                out = work / f"sft-{r}-{s}"
                if (out / "final").exists():
                    continue
                cmds.append(
                    (
                        f"sft-{r}-{s}",
                        [
                            "sft",
                            *common,
                            *again(out),
                            *ROWS[r]["sft"],
                            "--model_name_or_path",
                            str(models[s]),
                            "--output_dir",
                            str(out),
                            "--learning_rate",
                            str(args.lr),
                            "--lr_scheduler_type",
                            "constant_with_warmup",
                            "--warmup_steps",
                            "20",
                            "--max_steps",
                            str(steps),
                            "--seed",
                            str(s),
                        ],
                    )
                )
        _runs(cmds, args.parallel, work)
    if "dpo" in phases:
        cmds = [
            (
                f"dpo-{r}-{s}",
                [
                    "dpo",
                    *common,
                    *again(work / f"dpo-{r}-{s}"),
                    "--model_name_or_path",
                    str(work / f"sft-{r}-{s}" / "final"),
                    "--output_dir",
                    str(work / f"dpo-{r}-{s}"),
                    "--include_hinted",
                    "true",
                    "--augmented",
                    "false",
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
            )
            for r in rows
            if ROWS[r].get("dpo")
            for s in seeds
            if not (work / f"dpo-{r}-{s}" / "final").exists()
        ]
        _runs(cmds, args.parallel, work)
    if "predict" in phases:
        tests = [
            "--data",
            str(work / "data" / "image2text_test.json"),
            "--data",
            str(work / "data" / "text2image_test.json"),
        ]
        cmds = []
        for r in rows:
            for s in seeds:
                model = work / (f"dpo-{r}-{s}" if ROWS[r].get("dpo") else f"sft-{r}-{s}") / "final"
                methods = ["score"] + (list(METHODS_E) if r == "D" and "E" in args.rows else [])
                for m in methods:
                    cmds.append(
                        (
                            f"predict-{r}-{s}-{m}",
                            [
                                "predict",
                                "--model",
                                str(model),
                                *tests,
                                "--out",
                                str(work / f"answers-{r}-{s}-{m}"),
                                "--method",
                                m,
                                "--max-pixels",
                                str(args.max_pixels),
                                "--samples",
                                "5",
                                "--max-new-tokens",
                                "96",
                                "--batch-size",
                                "64",
                                "--overwrite",
                            ],
                        )
                    )
        _runs(cmds, args.parallel, work)


def table(args, work: Path) -> dict:
    from distill.evaluate import evaluate

    gold = [work / "data" / f"{t}_test_gold.json" for t in ("image2text", "text2image")]
    out: dict = {"args": vars(args), "rows": {}}
    prepared = work / "prepared.json"
    if prepared.exists():
        out["teacher"] = json.loads(prepared.read_text())["teacher_stats"]
    for folder in sorted(work.glob("answers-*")):
        _, r, s, m = folder.name.split("-")
        report = evaluate(folder, gold)
        row = out["rows"].setdefault(f"{'E' if m != 'score' else r}:{m}", {})
        for task, t in report["tasks"].items():
            row.setdefault(task, []).append(t["accuracy"])
        row.setdefault("overall", []).append(report["overall"]["accuracy"])
    lines = ["| row | method | image2text | text2image | overall |", "|---|---|---:|---:|---:|"]
    for key, row in sorted(out["rows"].items()):
        r, m = key.split(":")
        cells = []
        for col in ("image2text", "text2image", "overall"):
            v = row.get(col, [])
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            row[f"{col}_mean"], row[f"{col}_sd"] = (statistics.mean(v) if v else None), sd
            cells.append(f"{100 * statistics.mean(v):.1f} ± {100 * sd:.1f}" if v else "-")
        lines.append(f"| {r} | {m} | " + " | ".join(cells) + " |")
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
