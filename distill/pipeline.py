"""The pipeline's stages as functions: each CLI command calls one of these, and so do the tests and the demo."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import time
from pathlib import Path

from distill.recipe import Recipe

log = logging.getLogger(__name__)


def open_store(db: str | Path, must_exist: bool = True):
    from store.db import Store

    if must_exist and not Path(db).is_file():
        raise FileNotFoundError(f"no store at {db}")
    return Store(db)


# --- data -------------------------------------------------------------------------------------------------
def load_files(
    files: list[str | Path],
    db: str | Path,
    split: str | None = None,
    skip_invalid: bool = False,
    validation_fraction: float = 0.1,
    seed: int = 0,
):
    """`distill load`: each file's split from its name (a registry: each dataset's), else `split`."""
    from distill.data.filenames import split_of
    from distill.ingest import DataConfig, ingest

    lists: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for f in files:
        s = "train" if Path(f).name == "dataset_info.json" else (split_of(f) or split)
        if s is None:
            raise ValueError(f"{f}: its name says no split (train, dev, test): pass --split")
        lists["train" if s == "val" else s].append(str(f))
    cfg = DataConfig(**lists, skip_invalid=skip_invalid, validation_fraction=validation_fraction, seed=seed)
    return ingest(open_store(db, must_exist=False), cfg)


def run_audit(db: str | Path):
    from distill.audit import audit_store

    return audit_store(open_store(db))


# --- teacher ----------------------------------------------------------------------------------------------
def run_teacher(recipe: Recipe, resume: str | None = None, run_id: str | None = None, show_progress: bool = True):
    """`distill graph`: the teacher graph over the recipe's training items, stored in the recipe's store."""
    from distill.backends.factory import make_backend
    from distill.ingest import ingest
    from graphs.runner import run_items

    store = open_store(recipe.db, must_exist=False)
    if resume:
        store.run(resume)  # an unknown run id fails here, before any model loads
    items = ingest(store, recipe.data).splits.get("train", [])
    if recipe.teacher.limit:  # the first N, alternating between the tasks
        by_task = [[it for it in items if it.task == t] for t in ("image2text", "text2image")]
        items = [it for pair in itertools.zip_longest(*by_task) for it in pair if it is not None][
            : recipe.teacher.limit
        ]
    if not items:
        raise ValueError("no training items: set data.train in the recipe or pass --data")
    reasoner = make_backend(recipe.teacher.reasoner)
    describer = make_backend(recipe.teacher.describer) if recipe.teacher.describer else None
    for be in (reasoner, describer):  # a wrong model path is one clear error now, not one per item later
        if be is not None:
            be.check()
    log.info("%s %d training items -> %s", f"resuming {resume}:" if resume else "teacher run:", len(items), recipe.db)
    return asyncio.run(
        run_items(
            store,
            items,
            recipe.teacher,
            reasoner,
            describer,
            run_id=run_id,
            resume=resume,
            config=recipe.model_dump(),
            show_progress=show_progress,
        )
    )


# --- augmentation and exports -------------------------------------------------------------------------------
def run_augment(
    db: str | Path,
    out: str | Path,
    cfg,
    overwrite: bool = False,
    skip_invalid: bool = False,
    allow_leakage: bool = False,
    show_progress: bool = True,
) -> dict:
    """`distill augment`: new training items into the store and task-format files under `out`."""
    from distill.audit import audit_items, audit_store, require_clean
    from distill.augment import QUESTIONS, augment, write_dataset
    from distill.data.fileio import refuse_existing

    out = Path(out)
    refuse_existing([out / f"{t}_train_aug.json" for t in QUESTIONS] + [out / "augment_report.json"], overwrite)
    store = open_store(db)
    require_clean(audit_store(store), allow_leakage, "augment")
    items = store.items(split="train")
    new, report = augment(items, cfg, progress=show_progress, skip_invalid=skip_invalid)
    held_out = store.items(split="dev") + store.items(split="test")
    require_clean(audit_items(held_out, new, "augmented items"), allow_leakage, "augment")
    store.add_items(new)
    paths = write_dataset(new, out, report)
    return {
        "train_items": len(items),
        "new_items": len(new),
        **report.as_dict(),
        "files": {k: str(v) for k, v in paths.items()},
    }


def run_export(
    kind: str,
    db: str | Path,
    out: str | Path,
    fmt: str,
    opts,
    split: str = "train",
    overwrite: bool = False,
    allow_leakage: bool = False,
    copy_images: bool = False,
) -> tuple[list[Path], int, dict]:
    """`distill export`: SFT examples or DPO pairs as files TRL or LLaMA-Factory train on; or (`eval`) held-out
    items as a LLaMA-Factory registry for `vllm_infer.py`, in the prompt layout the student trains with."""
    from distill.audit import audit_store, require_clean
    from distill.data.fileio import refuse_existing
    from distill.train.datasets import export_items, export_llamafactory, export_trl
    from distill.train.examples import dpo_pairs, sft_examples

    out = Path(out)
    store = open_store(db)
    if kind == "eval":
        if split not in ("dev", "test"):
            raise ValueError(f"export eval --split {split}: held-out items only (dev or test)")
        by_task = {t: store.items(split=split, task=t) for t in ("image2text", "text2image")}
        by_task = {t: items for t, items in by_task.items() if items}
        if not by_task:
            raise ValueError(f"{db} holds no {split} items: nothing to export")
        refuse_existing([out / f"{t}_{split}.json" for t in by_task], overwrite)
        paths = [export_items(items, out, f"{t}_{split}", opts.layout, copy_images) for t, items in by_task.items()]
        return paths, sum(len(v) for v in by_task.values()), {}
    if split not in ("train", "val"):
        raise ValueError(f"export {kind} --split {split}: only training data is exported (train or val)")
    name = f"cover_distill_{kind}_{split}"
    refuse_existing([out / f"{name}.jsonl" if fmt == "trl" else out / f"{name}.json"], overwrite)
    items = store.items(split=split)
    if not items:
        raise ValueError(f"{db} holds no {split} items: nothing to export")
    require_clean(audit_store(store), allow_leakage, "export")
    built = (sft_examples if kind == "sft" else dpo_pairs)(store, items, opts)
    if not built.examples:
        raise ValueError(f"no {kind} examples in {db} (skipped: {dict(built.skipped)}): run `distill graph` first")
    path = (export_trl if fmt == "trl" else export_llamafactory)(built.examples, out, name, copy_images)
    return [path], len(built.examples), dict(built.skipped)


def export_traces(db: str | Path, out: str | Path | None, run: str | None = None, overwrite: bool = False) -> str:
    """`distill traces export`: every trace (latest attempts) with its item, as JSON lines."""
    from distill.data.fileio import atomic_write_text, refuse_existing

    store = open_store(db)
    if run:
        store.run(run)
    items = {it.key: it for it in store.items()}
    lines = [
        json.dumps(t | {"item": items[t["item_key"]].record()}, ensure_ascii=False) for t in store.traces(run_id=run)
    ]
    text = "".join(line + "\n" for line in lines)
    if out:
        refuse_existing([Path(out)], overwrite)
        atomic_write_text(out, text)
    return text


# --- prediction and evaluation ------------------------------------------------------------------------------
def load_tests(data_files: list[str | Path]) -> dict[str, list]:
    """Test items per task; every record must be usable (each test id needs an answer)."""
    from distill.data.loaders import load_any
    from distill.ingest import check_unique

    tasks: dict[str, list] = {}
    for f in data_files:
        items = load_any(f, split="test", hint="every test record needs an answer: fix these records").items
        if not items:
            raise ValueError(f"{f}: no items")
        for it in items:
            tasks.setdefault(it.task, []).append(it)
    check_unique([it for items in tasks.values() for it in items])
    return tasks


def run_predict(
    model: str,
    data_files: list[str | Path],
    out_dir: str | Path,
    cfg=None,
    backend: str = "transformers",
    max_pixels: int | None = None,
    base_url: str | list[str] | None = None,
    batch_size: int = 16,
    show_progress: bool = True,
    devices: list[str] | None = None,
    overwrite: bool = False,
    backend_options: dict | None = None,
) -> dict[str, Path]:
    """`distill predict`: a details JSONL per task (probabilities, letter, entropy, method, seconds), then the
    answer files (validated), each written atomically, the answers last.

    `devices`: one worker process per device (data-parallel): each takes every n-th item, sees only its own device
    (CUDA_VISIBLE_DEVICES) and writes a shard of details; the shards are merged here. `backend_options`: more
    BackendConfig fields (dtype, scoring, extra engine arguments)."""
    from distill.backends.config import BackendConfig
    from distill.data.answers import write_answers
    from distill.data.fileio import atomic_write_text, refuse_existing
    from distill.data.images import DEFAULT_MAX_PIXELS
    from distill.predict import PredictConfig

    cfg = cfg or PredictConfig()
    out = Path(out_dir)
    tasks = load_tests(data_files)
    refuse_existing([out / f"{t}_{kind}" for t in tasks for kind in ("answer.json", "details.jsonl")], overwrite)
    if backend != "openai":
        from distill.backends.base import require_local_model

        require_local_model(model)
    be_cfg = BackendConfig(
        backend=backend,
        model=str(model),
        base_url=base_url,
        concurrency=batch_size,
        max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
        **(backend_options or {}),
    )
    t0 = time.perf_counter()
    if devices and len(devices) > 1:
        rows_by_task = _predict_on_devices(be_cfg, tasks, cfg, devices, out)
    else:
        rows_by_task = predict_tasks(be_cfg, tasks, cfg, show_progress=show_progress)
    n = sum(len(v) for v in tasks.values())
    log.info("%d items in %.1fs (%.2f items/s)", n, time.perf_counter() - t0, n / max(1e-9, time.perf_counter() - t0))
    written = {}
    for task, rows in rows_by_task.items():
        atomic_write_text(out / f"{task}_details.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    for task, rows in rows_by_task.items():  # answers after every details file
        written[task] = write_answers(
            out / f"{task}_answer.json", {r["id"]: r["letter"] for r in rows}, [it.id for it in tasks[task]]
        )
        log.info("%s answers -> %s", task, written[task])
    return written


def predict_tasks(be_cfg, tasks: dict[str, list], cfg, show_progress: bool = True) -> dict[str, list[dict]]:
    """Every task's items through one backend, in one event loop."""
    from rich.progress import Progress

    from distill.backends.factory import make_backend
    from distill.predict import predict_items

    backend = make_backend(be_cfg)

    async def run() -> dict[str, list[dict]]:
        out = {}
        try:
            with Progress(disable=not show_progress) as bar:
                for task, items in tasks.items():
                    tid = bar.add_task(f"{task} ({cfg.method})", total=len(items))
                    out[task] = await predict_items(backend, items, cfg, progress=lambda tid=tid: bar.advance(tid))
        finally:
            await backend.aclose()
        return out

    return asyncio.run(run())


def predict_shard(be_cfg, tasks: dict[str, list], cfg, device: str, k: int, n: int, path: Path) -> None:
    """One data-parallel worker (a spawned process): every n-th item from the k-th, on one device."""
    os.environ["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else str(device)
    from distill.data.fileio import atomic_write_json

    rows = predict_tasks(be_cfg, {t: items[k::n] for t, items in tasks.items()}, cfg, show_progress=k == 0)
    atomic_write_json(path, rows)


def _predict_on_devices(be_cfg, tasks: dict[str, list], cfg, devices: list[str], out: Path) -> dict[str, list[dict]]:
    import multiprocessing
    import shutil

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: CUDA is set up after the env
    shards = out / ".shards"
    shutil.rmtree(shards, ignore_errors=True)
    shards.mkdir(parents=True)
    procs = []
    for k, dev in enumerate(devices):
        log.info("worker %d/%d on device %s", k + 1, len(devices), dev)
        p = ctx.Process(
            target=predict_shard, args=(be_cfg, tasks, cfg, dev, k, len(devices), shards / f"shard{k}.json")
        )
        p.start()
        procs.append(p)
    for p in procs:
        p.join()
    failed = [k for k, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"prediction workers {failed} failed; no answer file was written")
    merged: dict[str, dict] = {t: {} for t in tasks}
    for k in range(len(devices)):
        for task, rows in json.loads((shards / f"shard{k}.json").read_text()).items():
            merged[task].update({r["id"]: r for r in rows})
    shutil.rmtree(shards)
    for task, items in tasks.items():
        missing = [it.id for it in items if it.id not in merged[task]]
        if missing:
            raise RuntimeError(f"{task}: {len(missing)} items missing from the shards, e.g. {missing[:5]}")
    return {task: [merged[task][it.id] for it in items] for task, items in tasks.items()}


def run_eval(answers: str | Path, gold: list[str | Path], out: str | Path | None = None) -> dict:
    from distill.evaluate import evaluate

    return evaluate(answers, gold, out or answers)


def convert_llamafactory(
    jsonl: str | Path, data: list[str | Path], out_dir: str | Path, overwrite: bool = False, fallback: str | None = None
) -> tuple[Path, str]:
    """`distill predict --from-llamafactory`: vllm_infer.py's lines, paired in order with one test file's
    records, -> the answer file and a details file (raw reply, parsed or filled, why)."""
    from distill.data.answers import FILL_RULE, from_llamafactory, write_answers
    from distill.data.fileio import atomic_write_text, refuse_existing

    if len(data) != 1:
        raise ValueError("--from-llamafactory pairs with exactly one --data file (run it once per task)")
    [items] = load_tests(data).values()
    out = Path(out_dir)
    task = items[0].task
    refuse_existing([out / f"{task}_answer.json", out / f"{task}_details.jsonl"], overwrite)
    letters, rows = from_llamafactory(jsonl, [it.id for it in items], [it.letters for it in items], fallback)
    atomic_write_text(out / f"{task}_details.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    path = write_answers(out / f"{task}_answer.json", letters, [it.id for it in items])
    filled = [r for r in rows if not r["parsed"]]
    rule = f"--fallback {fallback}" if fallback else FILL_RULE
    return path, (
        f"{len(rows)} answers, {len(filled)} unparseable line(s) filled ({rule})"
        if filled
        else f"{len(rows)} answers, every line parsed"
    )
