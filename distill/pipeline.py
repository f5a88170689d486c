"""The pipeline's stages as functions: what the CLI commands and the demo call."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

from distill.config import PipelineConfig, load_config

log = logging.getLogger(__name__)


def run_teacher(config: str | Path | PipelineConfig, overrides: dict | None = None, resume: str | None = None,
                run_id: str | None = None, show_progress: bool = True):
    from distill.backends import make_backend
    from distill.ingest import ingest
    from graphs.runner import run_items
    from store import open_store

    cfg = config if isinstance(config, PipelineConfig) else load_config(config, overrides)
    store = open_store(cfg.db)
    data = ingest(store, cfg.data)
    items = data.splits.get("train", [])
    if cfg.teacher.limit:  # the first N, alternating between the tasks
        by_task = [[it for it in items if it.task == t] for t in ("image2text", "text2image")]
        mixed = [it for pair in itertools.zip_longest(*by_task) for it in pair if it is not None]
        items = mixed[: cfg.teacher.limit]
    if not items:
        raise ValueError("no training items: set data.train in the recipe or pass --data")
    reasoner = make_backend(cfg.teacher.reasoner)
    describer = make_backend(cfg.teacher.describer) if cfg.teacher.describer else None
    for be in (reasoner, describer):  # a wrong model path is one clear error now, not one per item later
        if be is not None and be.config.backend == "transformers":
            try:
                be.model
            except (OSError, ValueError) as exc:  # missing folder, or a name the hub client rejects offline
                raise ValueError(f"cannot load the {be.config.backend} model {be.config.model!r}: {exc}") from None
    if resume:
        store.reopen_run(resume)
        run_id = resume
    else:
        run_id = store.start_run("graph", cfg.model_dump(), {
            "reasoner": cfg.teacher.reasoner.model, "describer": cfg.teacher.describer.model
            if cfg.teacher.describer else None}, run_id=run_id)
    log.info("run %s: %d training items -> %s", run_id, len(items), cfg.db)
    try:
        summary = asyncio.run(run_items(store, items, run_id, reasoner, describer, cfg.teacher,
                                        show_progress=show_progress))
    except BaseException:
        store.end_run(run_id, "interrupted")
        raise
    store.end_run(run_id, "done" if not summary.failed else "done_with_failures", summary.as_dict())
    return summary


def run_demo(config: str | Path, workdir: str | Path) -> dict:
    """Sample data + tiny model (made once), then every stage of the pipeline, on CPU."""
    from distill.sample_data import generate
    from distill.tiny_model import build_tiny_model

    workdir = Path(workdir)
    cfg = load_config(config, {"workdir": str(workdir)})
    data_dir, model_dir = workdir / "data", workdir / "tiny-model"
    if not (data_dir / "dataset_info.json").exists():
        log.info("writing sample data to %s", data_dir)
        generate(data_dir)
    if not (model_dir / "config.json").exists():
        log.info("building the tiny model in %s", model_dir)
        build_tiny_model(model_dir)
    artefacts = {"data": str(data_dir), "tiny model": str(model_dir), "store": cfg.db}
    summary = run_teacher(cfg)
    artefacts["teacher run"] = summary.run_id
    log.info("teacher: %d accepted, %d rejected traces over %d items (%d failed)", summary.accepted,
             summary.rejected, summary.items, summary.failed)

    from distill.augment import AugmentConfig, augment, write_dataset
    from store import open_store

    store = open_store(cfg.db)
    new, report = augment(store.items(split="train"), AugmentConfig(**cfg.augment))
    store.add_items(new)
    artefacts["augmented"] = str(write_dataset(new, workdir / "augment", report)["image2text"].parent)
    log.info("augment: %d new training items %s, gold letters %s", len(new), dict(report.counts),
             dict(report.gold_letters))

    from distill.train.dpo import main as dpo_main
    from distill.train.sft import main as sft_main

    configs = Path(config).parent
    common = ["--db", cfg.db, "--max_pixels", str(cfg.data.max_pixels)]
    sft = sft_main(["--config", str(configs / "sft-demo.yaml"), "--model_name_or_path", str(model_dir),
                    "--output_dir", str(workdir / "sft"), "--disable_tqdm", "True", *common])
    artefacts["sft model"] = sft["final"]
    student = sft["final"]
    try:
        dpo = dpo_main(["--config", str(configs / "dpo-demo.yaml"), "--model_name_or_path", sft["final"],
                        "--output_dir", str(workdir / "dpo"), "--disable_tqdm", "True", *common])
        student = dpo.get("merged", dpo["final"])
        artefacts["dpo model"] = student
    except ValueError as exc:  # no item had both an accepted and a wrong-answer rationale
        log.warning("DPO skipped: %s", exc)

    from distill.evaluate import evaluate, markdown
    from distill.predict import PredictConfig

    tests = [str(data_dir / f"{t}_test.json") for t in ("image2text", "text2image")]
    answers = workdir / "answers"
    run_predict(student, tests, answers, PredictConfig(method="debias"), max_pixels=cfg.data.max_pixels)
    report = evaluate(answers, [data_dir / f"{t}_test_gold.json" for t in ("image2text", "text2image")], answers)
    artefacts["answers"] = str(answers)
    artefacts["eval report"] = str(answers / "eval.md")
    for k, v in artefacts.items():
        log.info("%-12s %s", k, v)
    from distill.logs import console

    console.print("\n[bold]Test accuracy of the demo student[/bold] (a tiny random model trained for seconds on "
                  "CPU: expect chance, 25%):\n" + markdown(report).split("\n\n")[0])
    return artefacts


def run_predict(model: str, data_files: list[str | Path], out_dir: str | Path, cfg=None, backend: str = "transformers",
                max_pixels: int | None = None, base_url: str | None = None, batch_size: int = 16,
                show_progress: bool = True, devices: list[str] | None = None,
                shard: tuple[int, int] | None = None) -> dict[str, Path]:
    """Answer files (validated, atomic) plus a details JSONL per task.

    `devices`: one worker process per device (data-parallel: each takes every n-th item, sees only its own
    GPU through CUDA_VISIBLE_DEVICES, and writes a shard of details); the shards are merged here.
    `shard=(k, n)`: be such a worker (details only)."""
    import json
    import time

    from rich.progress import Progress

    from distill.answers import write_answers
    from distill.fileio import atomic_write_text
    from distill.images import DEFAULT_MAX_PIXELS
    from distill.loaders import load_any
    from distill.predict import PredictConfig, predict_items

    cfg = cfg or PredictConfig()
    out = Path(out_dir)
    tasks = {}
    for f in data_files:
        items = load_any(f).items
        if not items:
            raise ValueError(f"{f}: no items")
        tasks[items[0].task] = items
    if devices and len(devices) > 1:
        _predict_on_devices(model, data_files, out, cfg, backend, max_pixels, base_url, batch_size, devices)
        rows_by_task = {task: _merge_shards(out, task, len(devices), items) for task, items in tasks.items()}
    else:
        from distill.backends import BackendConfig, make_backend

        be = make_backend(BackendConfig(backend=backend, model=str(model), base_url=base_url,
                                        max_pixels=max_pixels or DEFAULT_MAX_PIXELS, concurrency=batch_size,
                                        max_new_tokens=cfg.max_new_tokens))
        rows_by_task = {}
        for task, items in tasks.items():
            if shard:
                items = items[shard[0]::shard[1]]
            t0 = time.perf_counter()
            with Progress(disable=not show_progress) as bar:
                tid = bar.add_task(f"{task} ({cfg.method})", total=len(items))
                rows_by_task[task] = asyncio.run(predict_items(be, items, cfg, progress=lambda: bar.advance(tid)))
            log.info("%s: %d items in %.1fs (%.2f items/s)", task, len(items), time.perf_counter() - t0,
                     len(items) / max(1e-9, time.perf_counter() - t0))
    written = {}
    for task, rows in rows_by_task.items():
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if shard:
            written[task] = atomic_write_text(out / f"{task}_details.shard{shard[0]}of{shard[1]}.jsonl", text)
            continue
        atomic_write_text(out / f"{task}_details.jsonl", text)
        written[task] = write_answers(out / f"{task}_answer.json", {r["id"]: r["letter"] for r in rows},
                                      [it.id for it in tasks[task]])
        log.info("%s answers -> %s", task, written[task])
    return written


def _predict_on_devices(model, data_files, out: Path, cfg, backend, max_pixels, base_url, batch_size,
                        devices: list[str]) -> None:
    import os
    import subprocess
    import sys

    n = len(devices)
    procs = []
    for k, dev in enumerate(devices):
        cmd = [sys.executable, "-m", "distill.cli", "predict", "--model", str(model), "--out", str(out),
               "--method", cfg.method, "--rotations", str(cfg.rotations), "--samples", str(cfg.samples),
               "--threshold", str(cfg.threshold), "--backend", backend, "--batch-size", str(batch_size),
               "--shard", f"{k}/{n}"]
        for f in data_files:
            cmd += ["--data", str(f)]
        if max_pixels:
            cmd += ["--max-pixels", str(max_pixels)]
        if base_url:
            cmd += ["--base-url", base_url]
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="" if dev == "cpu" else str(dev))
        log.info("worker %d/%d on device %s", k + 1, n, dev)
        procs.append(subprocess.Popen(cmd, env=env))
    failed = [k for k, p in enumerate(procs) if p.wait() != 0]
    if failed:
        raise RuntimeError(f"prediction workers {failed} failed; their shards are incomplete")


def _merge_shards(out: Path, task: str, n: int, items) -> list[dict]:
    import json

    rows = {}
    for k in range(n):
        path = out / f"{task}_details.shard{k}of{n}.jsonl"
        for line in path.read_text().splitlines():
            r = json.loads(line)
            rows[r["id"]] = r
        path.unlink()
    missing = [it.id for it in items if it.id not in rows]
    if missing:
        raise RuntimeError(f"{task}: {len(missing)} items missing from the shards, e.g. {missing[:5]}")
    return [rows[it.id] for it in items]
