"""Does the teacher's work make the student better, and does every stage after SFT pay? The ablation on the
sample covers, in shards that fit one device session each.

    python -m bench.ablation prepare --work W --data-seed 1     # a data draw, the sample teacher's graph, augment
    python -m bench.ablation train --work W --rows A,B,B+dpo,B:debias,B:cot --seeds 0,1,2 --steps 2500 --patience 4
    python -m bench.ablation results --work W --out-dir bench/results --card "NVIDIA H200"   # a file per seed
    python -m bench.ablation table bench/results/ablation-*.json                            # the tables

Every row trains at one learning rate (`--lr`, 1e-3 by default, where B was chosen); a study at another rate
(`--lr 3e-4 --rows A`) writes files of its own, and `table` pairs each seed's B with letters alone (A) at the rate
where A did best on validation, so rationales are measured against a letters-only student at its own rate.

A data draw (`--data-seed`) is its own motif pools and covers: the rows compare on draws the formulation was
not chosen on. `data` rebuilds a draw's covers beside a store carried from elsewhere (the generator is
byte-stable for a seed) and checks them against the store's hashes.

Rows (`distill sft`, the user's command, on the same store; every row of a seed starts from the same weights):
  A  gold letters only (the answer task)
  B  accepted rationales then the answer in one sequence, plus an answer per item, one mean over all tokens
     (the defaults of `distill sft` and the shipped recipes)
  F  describe + answer (each task's loss averaged over its own tokens, then weighted; so are G, H, J, C, K)
  G  describe + reason + answer (distilling step by step: every agent's output a task)
  H  answer-first rationales (the letter, then the rationale) + describe
  J  G with each item's letter repeated (--repeats): the answer task keeps a share of the steps
  C  describe, then answer: the answer prompt carries the describer's captions of the covers (at validation and
     test the student's own), beside the describe task (MAC's describe-and-deduce, distilled)
  K  G with the captions in the prompt (C plus the reason task)
  R+aug  row R with the augmented items (permutations, recombination) in the answer task
  R+dpo  `distill dpo` with the shipped recipe (configs/dpo-demo.yaml: LoRA, accepted vs wrong-answer rationales,
         hinted ones included) from row R's best checkpoint, for --dpo-epochs epochs
  R:M    row R's model predicted with method M (score, debias, prior, cot, adaptive; default score)
Training runs until validation accuracy has not improved for --patience evaluations, or --steps (the cap); the
best checkpoint by validation accuracy (held-out motifs, neither training's nor test's) is the one tested. Each
run's validation accuracy every --eval-steps is its learning curve.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
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
METHODS = ("score", "debias", "prior", "cot", "adaptive")
TEST_TASKS = ("image2text", "text2image")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LR = 1e-3  # the rate the ablation chose the formulation at; every row trains at it unless told


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["prepare", "data", "train", "results", "table", "curves"])
    p.add_argument("files", nargs="*", help="table: the results files to aggregate; curves: runs' JOB.metrics.jsonl")
    p.add_argument("--work", help="the draw's folder (data, store, runs)")
    p.add_argument("--data-seed", type=int, default=0, help="the data draw: motif pools and covers")
    p.add_argument("--n-train", type=int, default=1000, help="sample training items per task")
    p.add_argument("--n-val", type=int, default=100, help="validation items per task (motifs of their own)")
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--error-rate", type=float, default=0.2, help="the sample teacher's colour misreadings")
    p.add_argument("--rows", default="A,B")
    p.add_argument("--seeds", default="0,1,2", help="student seeds (initial weights and data order)")
    p.add_argument("--student", default="small", help="a student size of `distill tiny-model --size`")
    p.add_argument(
        "--steps",
        type=int,
        default=2500,
        help="the cap on optimizer steps (runs that ended at a lower cap, or at a time limit, continue)",
    )
    p.add_argument(
        "--patience", type=int, default=4, help="evaluations without gain before stopping (0: a fixed --steps)"
    )
    p.add_argument("--eval-steps", type=int, default=250)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument(
        "--lr", type=float, default=DEFAULT_LR, help="every row's learning rate (another rate: its own study)"
    )
    p.add_argument("--dpo-config", default=str(ROOT / "configs" / "dpo-demo.yaml"), help="the DPO recipe")
    p.add_argument("--dpo-epochs", type=float, default=1.0, help="epochs over the DPO pairs")
    p.add_argument("--dpo-eval-steps", type=int, default=100)
    p.add_argument("--weight", type=float, default=1.0, help="{w}: the reason and describe tasks' loss weight")
    p.add_argument("--repeats", type=int, default=4, help="{r}: row J's examples of each item's letter")
    p.add_argument("--samples", type=int, default=5, help="cot / adaptive: self-consistency samples")
    p.add_argument("--max-new-tokens", type=int, default=160, help="cot / adaptive: longest rationale")
    p.add_argument("--max-pixels", type=int, default=12544)
    p.add_argument("--parallel", type=int, default=2, help="jobs at once")
    p.add_argument("--threads", type=int, default=1, help="CPU threads a job")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes a training run")
    p.add_argument("--devices", default="", help="GPUs to spread the jobs over, e.g. 0,1 (default: as visible)")
    p.add_argument(
        "--train-flags",
        default="",
        help="more flags for every sft and dpo run, e.g. '--bf16 false' (the runs checkpoint whole layers: "
        "'--gradient_checkpointing false --checkpoint_mlps true' for the MLPs alone)",
    )
    p.add_argument("--grounding-items", type=int, default=48, help="test items whose covers and rationales are read")
    p.add_argument("--card", default="", help="results: the machine the runs ran on")
    p.add_argument("--out-dir", default=None, help="results: the folder of the per-seed files")
    p.add_argument("--overwrite", action="store_true", help="results: replace per-seed files that exist")
    p.add_argument("--out", default=None, help="table: also write the aggregate as JSON here")
    return p


# --- the data draw ------------------------------------------------------------------------------------------
def draw(args, work: Path) -> Path:
    from distill.kit.sample_data import generate

    return generate(
        work / "data", n_train=args.n_train, n_dev=10, n_test=args.n_test, n_val=args.n_val, seed=args.data_seed
    )


def prepare(args, work: Path) -> None:
    from distill.augment import AugmentConfig, require_embedder
    from distill.ingest import DataConfig
    from distill.kit.sample_teacher.serving import SampleTeacherConfig, serving
    from distill.pipeline import run_augment, run_teacher
    from distill.recipe import load_recipe

    require_embedder(AugmentConfig())  # augmentation comes after the teacher graph: what it needs is checked first
    data = draw(args, work)
    files = {s: [str(data / f"{t}_{s}.json") for t in TEST_TASKS] for s in ("train", "val", "test")}
    teacher = {"backend": "openai", "model": "sample-teacher", "max_pixels": 62720, "concurrency": 16}
    with serving(SampleTeacherConfig(port=0, error_rate=args.error_rate, seed=args.data_seed)) as url:
        recipe = load_recipe(
            None,
            {
                "workdir": str(work),
                "db": str(work / "traces.db"),
                "data": DataConfig(**files).model_dump(),
                "teacher": {
                    "describer": teacher | {"base_url": url},
                    "reasoner": teacher | {"base_url": url, "structured": "choice"},
                    "max_attempts": 2,
                    "rationalize": True,
                    "samples": 2,
                    "temperature": 0.7,
                    "seed": args.data_seed,
                    "max_new_tokens": 256,
                    "describe_tokens": 64,
                    "min_words": 10,
                    "concurrency": 16,
                },
            },
        )
        summary = run_teacher(recipe, run_id="teacher")
    require_teacher(summary)
    aug = run_augment(
        recipe.db, work / "augment", AugmentConfig(permutations=1, option_counts=[4]), show_progress=False
    )
    prepared = {
        "data_seed": args.data_seed,
        "sizes": {"train": args.n_train, "val": args.n_val, "test": args.n_test},
        "teacher": summary.as_dict(),
        "augment": aug,
        "teacher_stats": teacher_stats(recipe.db),
    }
    (work / "prepared.json").write_text(json.dumps(prepared, indent=1))
    print(json.dumps({"teacher": prepared["teacher_stats"], "augment": aug["counts"]}, indent=1))


def require_teacher(summary) -> None:
    """A draw whose teacher failed items would train its rows on less (or, with every item failed, on letters
    alone under every row's name): stop with the teacher's own error instead."""
    if summary.failed:
        errors = "; ".join(str(e) for e in (summary.errors or [])[:3]) or "no error recorded"
        raise SystemExit(f"the teacher failed {summary.failed} of {summary.items} item(s): {errors}")


def rebuild_covers(args, work: Path) -> None:
    """The draw's data files and covers for a store prepared elsewhere, checked against the store's hashes."""
    from distill.data.images import sha256_file
    from store.db import Store

    draw(args, work)
    store = Store(work / "traces.db")
    hashes = {p: sha for p, sha in store.image_hashes().items() if p}  # (a caption's cover may have no path yet)
    # the store names the covers where it was prepared (WORK/data/images/NAME): here they are under this work
    here = {p: str(work.resolve() / Path(p).relative_to(Path(p).parents[2])) for p in hashes}
    wrong = [p for p, sha in hashes.items() if not Path(here[p]).is_file() or sha256_file(here[p]) != sha]
    if wrong:
        raise SystemExit(f"{len(wrong)} of {len(hashes)} covers differ from the store's, e.g. {wrong[:2]}")
    moved = store.move_images({p: new for p, new in here.items() if new != p})
    print(
        f"{len(hashes)} covers match the store"
        + (f"; {moved} of its paths moved under {work.resolve()}" if moved else "")
    )


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


# --- rows and jobs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    base: str  # A, B, ...
    extra: str | None  # None, "dpo" or "aug"
    method: str  # a prediction method

    @property
    def model(self) -> str:
        """The trained model's name: `B`, `B+dpo`, `B+aug`."""
        return self.base + (f"+{self.extra}" if self.extra else "")

    @property
    def sft(self) -> str:  # the SFT run a DPO row starts from is the plain row's
        return self.base + ("+aug" if self.extra == "aug" else "")

    def __str__(self) -> str:
        return self.model + (f":{self.method}" if self.method != "score" else "")


def parse_row(row: str) -> Row:
    """'B+dpo' -> (B, dpo, score); 'B:cot' -> (B, None, cot); 'B+dpo:debias'; 'A' -> (A, None, score)."""
    name, _, method = row.partition(":")
    base, _, extra = name.partition("+")
    if base not in TASKS or extra not in ("", "dpo", "aug") or (method and method not in METHODS):
        raise SystemExit(
            f"unknown row {row!r}: rows are {', '.join(TASKS)}, optionally +dpo or +aug, then optionally :METHOD "
            f"({', '.join(METHODS)})"
        )
    return Row(base, extra or None, method or "score")


@dataclass
class Job:
    name: str
    cmd: list[str]
    after: list[str] = field(default_factory=list)
    done: Path | None = None  # exists once the job has finished before


def folders(work: Path, student: str, seed: int) -> dict[str, Path]:
    return {
        "sft": work / "runs" / f"{student}-s{seed}" / "sft",
        "dpo": work / "runs" / f"{student}-s{seed}" / "dpo",
        "answers": work / "runs" / f"{student}-s{seed}" / "answers",
    }


def model_dir(work: Path, student: str, seed: int, row: Row) -> Path:
    f = folders(work, student, seed)
    if row.extra == "dpo":
        return f["dpo"] / row.base / "merged"
    return f["sft"] / row.sft / "final"


def answers_dir(work: Path, student: str, seed: int, row: Row) -> Path:
    return folders(work, student, seed)["answers"] / f"{row.model}-{row.method}"


def jobs_for(args, work: Path, seeds: list[int], rows: list[Row]) -> list[Job]:
    common = [
        "--db", str(work / "traces.db"), "--max_pixels", str(args.max_pixels), "--report_to", "none",
        "--disable_tqdm", "true", "--templates", "true", "--val_max_items", "1000",
        "--dataloader_num_workers", str(args.workers),
        "--gradient_checkpointing", "true",  # whole layers, as the results were trained (the GPU default: the MLPs)
        *args.train_flags.split(),
    ]  # fmt: skip

    def again(out: Path) -> list[str]:  # a run cut short (a call's time limit) continues from its checkpoint
        return ["--resume"] if list(out.glob("checkpoint-*")) else ["--overwrite"]

    trained_runs = stored_runs(work / "traces.db")
    jobs: list[Job] = []
    for s in seeds:
        raised: dict[str, bool] = {}  # this seed's SFT runs continued (a raised cap, a time limit), by row
        f, student = folders(work, args.student, s), work / "students" / f"{args.student}-{s}"
        for sft in dict.fromkeys(r.sft for r in rows):
            base, aug = sft.partition("+")[0], sft.endswith("+aug")
            out = f["sft"] / sft
            flags = [x.format(w=args.weight, r=args.repeats) for x in TASKS[base][1]]
            raised[sft] = continues(out, args.steps, run_status(trained_runs, out))
            jobs.append(Job(
                f"sft-{sft}-s{s}",
                ["sft", *common, *again(out), *flags, "--augmented", str(aug).lower(),
                 "--model_name_or_path", str(student), "--output_dir", str(out), "--seed", str(s),
                 "--use_peft", "false", "--freeze_vision", "false", "--learning_rate", str(args.lr),
                 "--lr_scheduler_type", "constant_with_warmup", "--warmup_steps", "20", "--max_steps", str(args.steps),
                 "--per_device_train_batch_size", str(args.batch), "--per_device_eval_batch_size", "64",
                 "--eval_strategy", "steps", "--eval_steps", str(args.eval_steps), "--save_strategy", "steps",
                 "--save_steps", str(args.eval_steps), "--save_total_limit", "1",
                 "--logging_steps", str(min(50, args.eval_steps)),
                 "--early_stopping_patience", str(args.patience)],
                done=None if raised[sft] else out / "final" / "config.json",
            ))  # fmt: skip
        for base in dict.fromkeys(r.base for r in rows if r.extra == "dpo"):
            out = f["dpo"] / base
            # DPO from a model made again (or to be) starts over; one cut short on the same model resumes
            sft_job = f"sft-{base}-s{s}"
            fresh = (
                raised[base]
                or state_of(work, sft_job) in ("running", "failed")
                or made_after(work, sft_job, f"dpo-{base}-s{s}")
            )
            jobs.append(Job(
                f"dpo-{base}-s{s}",
                ["dpo", "--config", args.dpo_config, *common, *(["--overwrite"] if fresh else again(out)),
                 "--model_name_or_path", str(f["sft"] / base / "final"), "--output_dir", str(out), "--seed", str(s),
                 "--max_steps", "-1", "--num_train_epochs", str(args.dpo_epochs),
                 "--eval_steps", str(args.dpo_eval_steps), "--save_steps", str(args.dpo_eval_steps),
                 "--logging_steps", str(min(50, args.dpo_eval_steps)), "--per_device_eval_batch_size", "64"],
                after=[f"sft-{base}-s{s}"],
                done=out / "merged" / "config.json",
            ))  # fmt: skip
        tests = [x for t in TEST_TASKS for x in ("--data", str(work / "data" / f"{t}_test.json"))]
        for row in rows:
            out = answers_dir(work, args.student, s, row)
            trained = f"dpo-{row.base}-s{s}" if row.extra == "dpo" else f"sft-{row.sft}-s{s}"
            jobs.append(Job(
                f"predict-{row.model}-{row.method}-s{s}",
                ["predict", "--model", str(model_dir(work, args.student, s, row)), *tests,
                 "--out", str(out), "--method", row.method, "--max-pixels", str(args.max_pixels),
                 "--samples", str(args.samples), "--max-new-tokens", str(args.max_new_tokens),
                 "--concurrency", "64", "--overwrite"],
                after=[trained],
                done=out / "text2image_answer.json",
            ))  # fmt: skip
    return jobs


def continues(out: Path, steps: int, status: str | None) -> bool:
    """A finished run with patience left that `train` continues from its last checkpoint (optimizer, schedule, data
    order and patience count as saved): one that trained to a cap below `steps` (raised since), or one stopped by its
    time limit (`max_train_minutes`, a shard that had to end inside a machine's lease) before `steps`. Under this
    constant schedule a continued run goes as one unbroken run would have: the validation the old cap or the time
    limit added off the schedule can only set a new best, not count as one waited without gain. A run stopped by its
    patience or a divergence, or whose patience ran out, stays as it is."""
    from distill.train.outputs import early_stopping, last_checkpoint

    last = last_checkpoint(out) if (out / "final" / "config.json").is_file() else None
    if last is None:
        return False
    state = json.loads((Path(last) / "trainer_state.json").read_text())
    waited, patience = early_stopping(state)
    stopped_short = status == "time_limit" or state["max_steps"] <= state["global_step"]
    return stopped_short and state["global_step"] < steps and waited < patience


def state_file(work: Path, job: str) -> Path:
    """A job's state as `run_jobs` leaves it: `running` from its launch, `failed`, or `done` (written when it
    succeeded: the file's time is when)."""
    return work / "logs" / f"{job}.state"


def job_times(work: Path) -> dict[str, float]:
    """Each job's seconds so far, summed over its runs, as `run_jobs` keeps them in `times.json`."""
    path = work / "times.json"
    return json.loads(path.read_text()) if path.exists() else {}


def state_of(work: Path, job: str) -> str | None:
    path = state_file(work, job)
    return path.read_text() if path.exists() else None


def made_after(work: Path, first: str, then: str) -> bool:
    """Job `first` succeeded after job `then` last ran (or `then` never ran under kept states)."""
    a, b = state_file(work, first), state_file(work, then)
    return state_of(work, first) == "done" and (not b.exists() or a.stat().st_mtime_ns > b.stat().st_mtime_ns)


def finished_jobs(jobs: list[Job], work: Path) -> set[str]:
    """The jobs that need not run, as make decides: each succeeded after every job it needs, and its output is there.
    A job cut short (`running`) or failed runs again, and so does everything made from a job made again. A job from
    before states were kept counts as finished by its output alone, unless something it needs was made since."""
    done: set[str] = set()
    for job in jobs:  # in order: a job comes after what it needs
        if job.done is None or not job.done.exists() or not all(a in done for a in job.after):
            continue
        state = state_of(work, job.name)
        if state is not None:
            fresh = state == "done" and not any(made_after(work, a, job.name) for a in job.after)
        else:
            fresh = not any(state_of(work, a) for a in job.after)
        if fresh:
            done.add(job.name)
    return done


def run_jobs(jobs: list[Job], args, work: Path) -> None:
    """Every job not finished (`finished_jobs`) whose inputs are ready, `parallel` at a time, in the order given
    (training first), each logging to its own file, timed and its state kept; a job whose input failed is skipped,
    and any failure ends the stage with an error."""
    from distill.data.fileio import atomic_write_json

    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(args.threads))
    devices = [d for d in args.devices.split(",") if d]
    (work / "logs").mkdir(exist_ok=True)
    finished = finished_jobs(jobs, work)
    pending = [j for j in jobs if j.name not in finished]
    running: list[tuple[Job, subprocess.Popen, object, float]] = []
    failed: list[str] = []
    launched = 0
    while pending or running:
        for job in [j for j in pending if any(a in failed for a in j.after)]:
            pending.remove(job)
            failed.append(job.name)
            print(f"{time.strftime('%X')} {job.name}: skipped (an input failed)", flush=True)
        ready = [j for j in pending if all(a in finished for a in j.after)]
        while ready and len(running) < args.parallel:
            job = ready.pop(0)
            pending.remove(job)
            log = open(work / "logs" / f"{job.name}.log", "a")  # noqa: SIM115 (closed when the job ends)
            if devices:  # one GPU a job, round robin
                env["CUDA_VISIBLE_DEVICES"] = devices[launched % len(devices)]
            launched += 1
            proc = subprocess.Popen(
                [sys.executable, "-m", "distill.cli", *job.cmd], stdout=log, stderr=subprocess.STDOUT, env=env
            )
            state_file(work, job.name).write_text("running")
            running.append((job, proc, log, time.time()))
            print(f"{time.strftime('%X')} {job.name}: started", flush=True)
        time.sleep(1)
        for entry in list(running):
            job, proc, log, started = entry
            if proc.poll() is None:
                continue
            running.remove(entry)
            log.close()
            # read again each time: another `train` on this work dir (other seeds) keeps its times here too
            times = job_times(work)
            times[job.name] = round(times.get(job.name, 0) + time.time() - started, 1)
            atomic_write_json(work / "times.json", times)
            state_file(work, job.name).write_text("done" if proc.returncode == 0 else "failed")
            if proc.returncode == 0:
                finished.add(job.name)
            else:
                failed.append(job.name)
            print(f"{time.strftime('%X')} {job.name}: exit {proc.returncode} ({times[job.name]:.0f} s)", flush=True)
    if failed:
        raise SystemExit(f"jobs failed: {failed} (logs in {work / 'logs'})")


def train(args, work: Path) -> None:
    from distill.kit.tiny_model import build_tiny_model

    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [parse_row(r) for r in args.rows.split(",")]
    for s in seeds:
        path = work / "students" / f"{args.student}-{s}"
        if not (path / "config.json").exists():
            build_tiny_model(path, seed=s, size=args.student, max_pixels=args.max_pixels)
    run_jobs(jobs_for(args, work, seeds, rows), args, work)
    if args.grounding_items:
        for s in seeds:
            for row in rows:
                target = answers_dir(work, args.student, s, row) / "grounding.json"
                answered = answers_dir(work, args.student, s, row) / "text2image_answer.json"
                if row.method == "score" and answered.exists() and not newer(target, answered):
                    model = model_dir(work, args.student, s, row)
                    found = grounding(model, work / "data", answers_dir(work, args.student, s, row), args)
                    target.write_text(json.dumps(found, indent=1))


def newer(path: Path, than: Path) -> bool:
    """`path` was written after `than` (what it was read from has not been made again since)."""
    return path.exists() and path.stat().st_mtime >= than.stat().st_mtime


def grounding(model: Path, data_dir: Path, scored: Path, args) -> dict:
    """The student's own captions of test covers and rationales for test items (distill.kit.grounding)."""
    from distill.data.records import load_json
    from distill.kit.grounding import grounding as read_student
    from distill.kit.grounding import scored_letters

    items = []
    for task in TEST_TASKS:
        gold = {r["id"]: r["output"] for r in json.loads((data_dir / f"{task}_test_gold.json").read_text())}
        items += [it.model_copy(update={"gold": gold[it.id]}) for it in load_json(data_dir / f"{task}_test.json").items]
    items = items[:: max(1, len(items) // args.grounding_items)][: args.grounding_items]
    return read_student(model, data_dir, scored_letters(scored), items, args.max_pixels)


# --- results: one file per (draw, seed) ---------------------------------------------------------------------
def diverged_at(rows: list[dict]) -> int | None:
    """The first logged step whose gradient norm was not finite (the run stops there; see distill.train.divergence)."""
    return next((r["step"] for r in rows if r.get("grad_norm") is not None and not math.isfinite(r["grad_norm"])), None)


def last_step(rows: list[dict]) -> int | None:
    return max((r["step"] for r in rows), default=None)


def prediction_cost(answers: Path, model: Path, log: Path) -> dict:
    """What a method cost an item: wall-clock seconds of the prediction over its items (what `distill predict`
    logs, the model's load left out), prompt passes (prefills) and generated tokens (rationales, read with the
    model's tokenizer)."""
    import re

    rows = [json.loads(line) for t in TEST_TASKS for line in (answers / f"{t}_details.jsonl").read_text().splitlines()]
    # a prompt pass per rotation; a cot sample is a generation and the scoring of its final letter
    passes = {"score": 1, "debias": 4, "prior-estimate": 4, "prior": 1, "cot": 0, "adaptive-cot": 1}
    prefills = sum(passes.get(r["method"], 1) + 2 * len(r.get("rationales", [])) for r in rows)
    texts = [t for r in rows for t in r.get("rationales", [])]
    tokens = 0
    if texts:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model)
        tokens = sum(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"])
    n = max(1, len(rows))
    timed = re.findall(r"(\d+) items in ([\d.]+)s", log.read_text()) if log.exists() else []
    seconds = float(timed[-1][1]) / int(timed[-1][0]) if timed else None
    return {
        "seconds_per_item": seconds,
        "prefills_per_item": prefills / n,
        "generated_tokens_per_item": tokens / n,
        "reasoned_items": sum(1 for r in rows if "rationales" in r),
    }


def stored_runs(db: Path) -> list[dict]:
    """The training runs a work folder's store recorded (none without a store: opening one would make it)."""
    from store import open_store

    if not db.exists():
        return []
    store = open_store(db)
    try:
        return store.train_runs()
    finally:
        store.close()


def run_status(runs: list[dict], output_dir: Path) -> str | None:
    """How the training stage ended, as the store recorded its latest run into `output_dir`: done, diverged or
    time_limit (`max_train_minutes`)."""
    return next((r["status"] for r in reversed(runs) if r["output_dir"] == str(output_dir)), None)


def results(args, work: Path) -> list[Path]:
    """Each seed's runs as one JSON file: curves, best and last steps, how training ended, test accuracy per row,
    costs."""
    from distill.data.fileio import atomic_write_json
    from distill.evaluate import evaluate
    from distill.train.metrics import read_metrics, validation_curve

    prepared = json.loads((work / "prepared.json").read_text())
    data_seed = prepared.get("data_seed", args.data_seed)
    times = job_times(work)
    gold = [work / "data" / f"{t}_test_gold.json" for t in TEST_TASKS]
    out_dir = Path(args.out_dir or work)
    seeds = [int(x) for x in args.seeds.split(",")]
    paths = {
        s: out_dir / f"ablation-{budget_tag(args.steps, args.patience, args.lr)}-d{data_seed}-s{s}-{args.student}.json"
        for s in seeds
    }
    there = [str(p) for p in paths.values() if p.exists()]
    if there and not args.overwrite:
        raise SystemExit(f"results exist: {', '.join(there)} (pass --overwrite to replace them)")
    out_dir.mkdir(parents=True, exist_ok=True)
    trained_runs = stored_runs(work / "traces.db")
    written = []
    for s in seeds:
        f = folders(work, args.student, s)
        runs: dict[str, dict] = {}
        for answers in sorted(f["answers"].glob("*-*")):
            if not (answers / "text2image_answer.json").exists():
                continue
            name, _, method = answers.name.rpartition("-")
            row = parse_row(name + (f":{method}" if method != "score" else ""))
            trained = f["dpo"] / row.base if row.extra == "dpo" else f["sft"] / row.sft
            report = evaluate(answers, gold)
            test = {t: report["tasks"][t]["accuracy"] for t in TEST_TASKS}
            entry = {
                "test": test | {"overall": report["overall"]["accuracy"]},
                "cost": prediction_cost(
                    answers,
                    model_dir(work, args.student, s, row),
                    work / "logs" / f"predict-{row.model}-{row.method}-s{s}.log",
                ),
            }
            if row.method == "score":
                logged = read_metrics(trained / "metrics.jsonl")
                c = validation_curve(logged)
                best = max(c, key=lambda p: (p[1], -p[0])) if c else (None, None)
                job = f"dpo-{row.base}-s{s}" if row.extra == "dpo" else f"sft-{row.sft}-s{s}"
                entry |= {
                    "curve": c,
                    "best_step": best[0],
                    "best_val": best[1],
                    "last_step": last_step(logged),
                    "diverged_at": diverged_at(logged),
                    "status": run_status(trained_runs, trained),
                    "train_s": times.get(job),
                }
                g = answers / "grounding.json"
                if g.exists():
                    entry["grounding"] = {k: v for k, v in json.loads(g.read_text()).items() if k != "examples"}
            runs[str(row)] = entry
        if not runs:  # a shard cut short before its test predictions: nothing to report, and no file to mislead
            print(f"seed {s}: no test predictions in {f['answers']} yet, no results file written", file=sys.stderr)
            continue
        path = paths[s]
        atomic_write_json(
            path,
            {
                "card": args.card,
                "date": date.today().isoformat(),
                "data_seed": data_seed,
                "student_seed": s,
                "student": args.student,
                "settings": {k: getattr(args, k) for k in ("steps", "patience", "eval_steps", "batch", "lr")}
                | {"dpo_epochs": args.dpo_epochs, "samples": args.samples, "max_pixels": args.max_pixels},
                "sizes": prepared.get("sizes"),
                "teacher": prepared.get("teacher_stats"),
                "runs": runs,
            },
        )
        written.append(path)
        print(path)
    return written


def budget_tag(steps: int, patience: int, lr: float = DEFAULT_LR) -> str:
    """Runs trained to their plateau (patience) or for a fixed number of steps are different studies, and so are
    runs at another learning rate: their files and table rows never mix."""
    return ("plateau" if patience else f"steps{steps}") + ("" if lr == DEFAULT_LR else f"-lr{lr:g}")


# --- the tables, over every shard ---------------------------------------------------------------------------
def mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


# A run is at its plateau from its first evaluation within one point of its best: a flat plateau's best may come
# thousands of steps after the run got there, and steps counted to it would flatter the other row.
PLATEAU_TOLERANCE = 0.01


def reach(curve: list, target: float | None) -> int | None:
    """The first evaluated step at which a run's validation accuracy reached `target`."""
    if target is None:
        return None
    return next((step for step, acc in curve if acc >= target - 1e-9), None)  # 0.1 - 0.01 > 0.09 in floats


def study_key(shard: dict) -> tuple[str, float]:
    """(the draw and its budget, the learning rate): "1" at plateau, "1 @ 1000 steps" for a fixed budget."""
    settings = shard.get("settings") or {}
    fixed = "" if settings.get("patience", 1) else f" @ {settings.get('steps')} steps"
    return f"{shard['data_seed']}{fixed}", settings.get("lr", DEFAULT_LR)


def best_rate(studies: dict[float, list[dict]], row: str) -> float | None:
    """The learning rate at which `row` did best on validation, averaged over its seeds: a row is compared at its
    own rate, chosen on validation, not at the rate another row was chosen at. Rates are compared on the seeds
    every one of them ran, where there are such seeds (a rate tried on one seed is not measured against another
    rate's mean over three)."""
    best = {
        lr: {sh["student_seed"]: sh["runs"][row].get("best_val") or 0 for sh in group if row in sh["runs"]}
        for lr, group in studies.items()
        if any(row in sh["runs"] for sh in group)
    }
    if not best:
        return None
    compared = set.intersection(*map(set, best.values())) or set.union(*map(set, best.values()))
    means = {lr: statistics.mean(v for s, v in by_seed.items() if s in compared) for lr, by_seed in best.items()}
    return max(means, key=lambda lr: (means[lr], lr == DEFAULT_LR))


def read_shard(file: str) -> dict:
    """One results file, or a one-line error naming it: a results folder holds job times and metrics beside them."""
    try:
        shard = json.loads(Path(file).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"{file}: not a readable results file ({e})") from None
    missing = [k for k in ("data_seed", "student_seed", "runs") if not isinstance(shard, dict) or k not in shard]
    if missing:
        raise SystemExit(f"{file}: not a results file of `results` (no {', '.join(missing)})")
    return shard


def table(files: list[str]) -> dict:
    files = list({Path(f).resolve(): f for f in reversed(files)}.values())[::-1]  # a file named twice counts once
    shards = [read_shard(f) for f in files]
    by_study: dict[str, dict[float, list[dict]]] = {}
    seen: dict[tuple, str] = {}
    for f, sh in zip(files, shards):
        key, lr = study_key(sh)
        by_study.setdefault(key, {}).setdefault(lr, []).append(sh)
        for row in sh["runs"]:  # a run given twice would count twice in its row's mean
            other = seen.setdefault((key, lr, sh["student_seed"], row), f)
            if other != f:
                raise SystemExit(f"{f}: draw {key}, lr {lr:g}, seed {sh['student_seed']}, row {row} is in {other} too")
    lines = [
        "| draw | row | overall (test) | image2text | text2image | per seed | best val | best step | stopped at |",
        "|---:|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    pairs = [
        "| draw | seed | A's rate | A test | B test | B − A | A's plateau: best val, from step | B reaches it at "
        "| B / A steps |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    stages: dict[str, list[dict]] = {}
    summary: dict = {"draws": {}}
    for key, studies in sorted(by_study.items()):
        for lr, group in sorted(studies.items(), key=lambda kv: (kv[0] != DEFAULT_LR, kv[0])):
            group.sort(key=lambda sh: sh["student_seed"])
            d = key + ("" if lr == DEFAULT_LR else f" @ lr {lr:g}")
            for row in ("A", "B"):
                got = [sh["runs"][row] for sh in group if row in sh["runs"]]
                if not got:
                    continue
                o = [g["test"]["overall"] for g in got if g.get("test")]
                seeds = [sh["student_seed"] for sh in group if row in sh["runs"] and sh["runs"][row].get("test")]
                named = seeds != list(range(len(seeds)))  # seeds 1 and 2 alone are named, not read as 0 and 1
                lines.append(
                    f"| {d} | {row} | **{mean_sd(o)}** | "
                    f"{mean_sd([g['test']['image2text'] for g in got if g.get('test')])} | "
                    f"{mean_sd([g['test']['text2image'] for g in got if g.get('test')])} | "
                    f"{' / '.join((f's{n} ' if named else '') + f'{100 * x:.1f}' for n, x in zip(seeds, o)) or '–'} | "
                    f"{mean_sd([g['best_val'] for g in got if g.get('best_val') is not None])} | "
                    f"{' / '.join(str(g.get('best_step')) for g in got)} | "
                    f"{' / '.join(stopped(g) for g in got)} |"
                )
                summary["draws"].setdefault(d, {})[row] = o
            for sh in group:
                for name, run in sh["runs"].items():
                    if name != "A" and run.get("test"):
                        stages.setdefault(f"{d}|{name}", []).append(run)
        # B at its own rate against A at the rate where A did best; B at another rate against A at that same rate
        a_best = best_rate(studies, "A")
        for b_lr in sorted(studies, key=lambda lr: (lr != DEFAULT_LR, lr)):
            a_lr = a_best if b_lr == DEFAULT_LR else b_lr
            d = key + ("" if b_lr == DEFAULT_LR else f" @ lr {b_lr:g}")
            a_by_seed = {sh["student_seed"]: sh["runs"]["A"] for sh in studies.get(a_lr, []) if "A" in sh["runs"]}
            for sh in studies[b_lr]:
                a, b = a_by_seed.get(sh["student_seed"]), sh["runs"].get("B")
                if b and b.get("test"):
                    pairs.append(pair_line(d, sh["student_seed"], a_lr, a, b))
    stage_lines = [
        "| draw | stage | overall | image2text | text2image | s / item | prefills / item | generated tokens / item "
        "| overall per seed |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, runs in sorted(stages.items(), key=lambda kv: (kv[0].split("|")[0], stage_order(kv[0].split("|")[1]))):
        d, name = key.split("|")
        c = [r["cost"] for r in runs]
        stage_lines.append(
            f"| {d} | {name} | {mean_sd([r['test']['overall'] for r in runs])} | "
            f"{mean_sd([r['test']['image2text'] for r in runs])} | "
            f"{mean_sd([r['test']['text2image'] for r in runs])} | "
            f"{statistics.mean(x['seconds_per_item'] or 0 for x in c):.4f} | "
            f"{statistics.mean(x['prefills_per_item'] for x in c):.2f} | "
            f"{statistics.mean(x['generated_tokens_per_item'] for x in c):.0f} | "
            f"{' / '.join(format(100 * r['test']['overall'], '.1f') for r in runs)} |"
        )
    summary["markdown"] = "\n\n".join(["\n".join(lines), "\n".join(pairs), "\n".join(stage_lines)])
    print(summary["markdown"])
    return summary


def pair_line(study: str, seed: int, a_lr: float | None, a: dict | None, b: dict) -> str:
    """One paired seed: B's test accuracy against A's, and the steps each row took to A's plateau (within one point
    of A's best validation accuracy)."""
    if not (a and a.get("test")):
        rate = "–" if a_lr is None else f"{a_lr:g}"
        return (
            f"| {study} | {seed} | {rate} | – | {100 * b['test']['overall']:.1f} | – | not run at this rate | – | – |"
        )
    plateau = None if a.get("best_val") is None else a["best_val"] - PLATEAU_TOLERANCE
    a_at = reach(a.get("curve", []), plateau) or a.get("best_step")
    hit = reach(b.get("curve", []), plateau)
    ratio = f"{hit / a_at:.2f}" if hit and a_at else "–"
    # a side its time limit stopped may still have been learning: its gap is not a plateau figure
    cut = ", ".join(row for row, run in (("A", a), ("B", b)) if run.get("status") == "time_limit")
    return (
        f"| {study} | {seed} | {a_lr:g} | {100 * a['test']['overall']:.1f} | {100 * b['test']['overall']:.1f} | "
        f"{100 * (b['test']['overall'] - a['test']['overall']):+.1f}{f' ({cut}: time limit)' if cut else ''} | "
        f"{100 * (a.get('best_val') or 0):.1f} % from {a_at} | {hit or 'never'} | {ratio} |"
    )


def stopped(run: dict) -> str:
    why = " (NaN)" if run.get("diverged_at") else " (time limit)" if run.get("status") == "time_limit" else ""
    return f"{run.get('last_step')}{why}"


def curves(files: list[str]) -> str:
    """Validation curves straight from runs' metrics files (`JOB.metrics.jsonl`, JOB as the train stage names it:
    sft-B-s0, dpo-B-s1): a shard's learning before its test predictions exist."""
    from distill.train.metrics import read_metrics, validation_curve

    lines = ["| run | validation accuracy by step | best (val, step) | NaN from step |", "|---|---|---:|---:|"]
    for f in sorted(files):
        rows = read_metrics(Path(f))
        c = validation_curve(rows)
        best = f"{100 * max(c, key=lambda p: (p[1], -p[0]))[1]:.1f} % at {max(c, key=lambda p: (p[1], -p[0]))[0]}"
        shown = " ".join(f"{step}: {100 * acc:.1f}" for step, acc in c)
        lines.append(f"| {Path(f).name.removesuffix('.metrics.jsonl')} | {shown} | {best if c else '–'} | "
                     f"{diverged_at(rows) or '–'} |")  # fmt: skip
    return "\n".join(lines)


def stage_order(name: str) -> tuple:
    row = parse_row(name)
    return (row.base, row.extra or "", METHODS.index(row.method))


def main(argv=None) -> dict | None:
    args = make_parser().parse_args(argv)
    if args.stage == "table":
        res = table(args.files)
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=1))
        return res
    if args.stage == "curves":
        print(curves(args.files))
        return None
    if not args.work:
        raise SystemExit(f"{args.stage}: --work is required")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.stage == "prepare":
        prepare(args, work)
    elif args.stage == "data":
        rebuild_covers(args, work)
    elif args.stage == "train":
        train(args, work)
    else:
        results(args, work)
    return None


if __name__ == "__main__":
    main()
