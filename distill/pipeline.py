"""The pipeline's stages as functions: each CLI command calls one of these, and so do the tests and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from pathlib import Path

from distill.errors import UserError
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
    """`distill load`: each file's split from its name (a registry: each dataset's, else `split`), else `split`; a
    `split` the name contradicts is an error. Every file is read and checked before the store is touched: a load
    that fails leaves no new file behind."""
    from distill.data.fileio import require_writable_dir
    from distill.data.filenames import split_of
    from distill.ingest import DataConfig, load_data, store_data

    lists: dict[str, list[str]] = {"train": [], "val": [], "dev": [], "test": []}
    for f in files:
        registry = Path(f).name == "dataset_info.json"
        named = None if registry else split_of(f)
        if split and named and named != split:
            raise UserError(f"{f}: its name says {named}, but --split says {split}: rename the file or drop --split")
        s = (split or "train") if registry else (named or split)
        if s is None:
            raise UserError(f"{f}: its name says no split (train, val, dev, test): pass --split")
        lists[s].append(str(f))
    require_writable_dir(Path(db).parent)
    if Path(db).is_file():  # a read-only store fails now, before the data is read
        require_writable_store(db)
    cfg = DataConfig(**lists, skip_invalid=skip_invalid, validation_fraction=validation_fraction, seed=seed)
    data = load_data(cfg)
    with _new_file_removed_on_failure(Path(db)):
        store = open_store(db, must_exist=False)
        try:
            store_data(store, data)
        finally:
            store.close()
    return data


def require_writable_store(db: str | Path) -> None:
    """One line naming the store where it cannot be written (`store.db.ReadOnlyStore`), before any work."""
    store = open_store(db)
    try:
        store.require_writable()
    finally:
        store.close()


@contextlib.contextmanager
def _new_file_removed_on_failure(path: Path):
    """A store this block creates is removed again (with its WAL, shared-memory and lock files, and the folders made
    for it) when the block fails; an existing store is left to its transactions."""
    if path.exists():
        yield
        return
    made = [q for q in reversed(path.parents) if not os.path.lexists(q)]
    try:
        yield
    except BaseException:
        for extra in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{extra}").unlink(missing_ok=True)
        for q in reversed(made):
            with contextlib.suppress(OSError):
                q.rmdir()
        raise


def run_audit(db: str | Path):
    from distill.audit import audit_store

    return audit_store(open_store(db))


# --- teacher ----------------------------------------------------------------------------------------------
def run_teacher(
    recipe: Recipe,
    resume: str | None = None,
    run_id: str | None = None,
    show_progress: bool = True,
    load: bool | None = None,
):
    """`distill graph`: the teacher graph over the store's training items (the items data files gave, not the ones
    augmentation made). The store is the source of truth: the recipe's data files are loaded first only when
    `load` says so, or (`load` None) when the store holds no training items yet. A run whose every item failed (an
    unreachable server) is recorded as `failed`, with its calls and their errors (`RunSummary.all_failed`)."""
    from graphs.backends import teacher_backends
    from graphs.runner import run_items

    _require_store_folder(Path(recipe.db))
    store = None
    if Path(recipe.db).is_file():  # a read-only store fails here, before any data is read or model loads
        require_writable_store(recipe.db)
    if resume:  # an unknown run id, or one another process is working on, fails here, before any model loads
        if not Path(recipe.db).is_file():
            from store.db import UnknownRun

            raise UnknownRun(f"no run {resume!r} in {recipe.db} (no store there)")
        store = open_store(recipe.db)
        store.run(resume)
        with store.run_lock(resume):
            pass
    if load is None:
        load = not (Path(recipe.db).is_file() and open_store(recipe.db).items(split="train"))
    if load:
        store = store_recipe_data(recipe, store)
    store = store or open_store(recipe.db)
    items = [it for it in store.items(split="train") if not it.transform]
    if recipe.teacher.limit:  # the first N, alternating between the tasks
        by_task = [[it for it in items if it.task == t] for t in ("image2text", "text2image")]
        items = [it for pair in itertools.zip_longest(*by_task) for it in pair if it is not None][
            : recipe.teacher.limit
        ]
    if not items:
        raise UserError(f"no training items in {recipe.db}: `distill load` some, set data.train, or pass --data")
    reasoner, describer = teacher_backends(recipe.teacher)
    for be in (reasoner, describer):  # a wrong model path is one clear error now, not one per item later
        if be is not None:
            be.check()
    log.info("%s %d training items -> %s", f"resuming {resume}:" if resume else "teacher run:", len(items), recipe.db)
    try:
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
    finally:
        store.close()


def store_recipe_data(recipe: Recipe, store=None):
    """The recipe's data files into its store (made if need be), checked first; the store is returned open."""
    from distill.ingest import load_data, report_data, store_data

    _require_store_folder(Path(recipe.db))
    data = load_data(recipe.data)  # the data is checked before a new store is made
    store = store or open_store(recipe.db, must_exist=False)
    store_data(store, data)
    report_data(data)
    return store


def _require_store_folder(db: Path) -> None:
    """One line naming the store where its folder cannot be made (a file stands in its place), before any work."""
    from distill.data.fileio import blocking_file, require_writable_dir

    blocker = blocking_file(db.parent)
    if blocker is not None:
        raise UserError(f"the store {db} cannot be made: {blocker} is a file, not a folder")
    require_writable_dir(db.parent)


# --- augmentation and exports -------------------------------------------------------------------------------
def run_augment(
    db: str | Path,
    out: str | Path,
    cfg,
    overwrite: bool = False,
    skip_invalid: bool = False,
    allow_leakage: bool = False,
    show_progress: bool = True,
    merge_registry: bool = False,
) -> dict:
    """`distill augment`: new training items into the store and task-format files under `out`, all or nothing: the
    files are written to temporary names and renamed into place (the ones they replace kept aside), then the store
    takes the items in one transaction; a failure at any step puts the previous files back and adds nothing. An
    existing `dataset_info.json` in `out` is replaced only with `overwrite`, or added to with
    `merge_registry` (its other datasets kept)."""
    from distill.audit import audit_items, audit_store, require_clean
    from distill.augment import QUESTIONS, augment, dataset_files, require_embedder
    from distill.data.fileio import refuse_existing, require_writable_dir, staged_writes
    from distill.data.registry import read_registry

    require_embedder(cfg)
    out = Path(out)
    ours = [f"{t}_train_aug" for t in QUESTIONS]
    refuse_existing([out / f"{name}.json" for name in ours] + [out / "augment_report.json"], overwrite)
    registry_path = out / "dataset_info.json"
    existing: dict = {}
    if registry_path.exists():
        if merge_registry:
            existing = read_registry(registry_path)
            clash = [name for name in ours if name in existing]
            if clash and not overwrite:
                raise FileExistsError(f"{registry_path} already registers {', '.join(clash)}: pass --overwrite")
        elif not overwrite:
            raise FileExistsError(
                f"{registry_path} already exists (it may register other datasets): pass --merge-registry to add "
                "the augmented datasets to it, or --overwrite to replace it"
            )
    require_writable_dir(out)
    store = open_store(db)
    store.require_writable()
    require_clean(audit_store(store), allow_leakage, "augment")
    items = store.items(split="train")
    new, report = augment(items, cfg, progress=show_progress, skip_invalid=skip_invalid)
    held_out = store.items(split="dev") + store.items(split="test")
    require_clean(audit_items(held_out, new, "augmented items"), allow_leakage, "augment")
    with staged_writes(dataset_files(new, out, report, existing)):
        store.add_items(new)
    return {
        "train_items": len(items),
        "new_items": len(new),
        **report.as_dict(),
        "files": {t: str(out / f"{t}_train_aug.json") for t in QUESTIONS},
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
    copy_images: bool = True,
    with_gold: bool = False,
    strict: bool = False,
) -> tuple[list[Path], int, dict]:
    """`distill export`: SFT examples or DPO pairs as files TRL or LLaMA-Factory train on; or (`eval`) held-out
    items as a LLaMA-Factory registry for `vllm_infer.py`, in the prompt layout the student trains with, with no
    gold letter (output "") unless `with_gold`. `copy_images` (the default): the images go into OUTPUT/images (hard
    links where possible) and the folder stands alone; without it, paths relative to OUTPUT point at them where they
    are. `strict`: the leakage audit also refuses held-out covers or stories seen as distractors."""
    from distill.audit import audit_store, require_clean
    from distill.data.fileio import refuse_existing
    from distill.train.datasets import export_items, export_llamafactory, export_trl
    from distill.train.examples import dpo_pairs, sft_examples

    out = Path(out)
    store = open_store(db)
    if kind == "eval":
        if split not in ("dev", "test"):
            raise UserError(f"export eval --split {split}: held-out items only (dev or test)")
        by_task = {t: store.items(split=split, task=t) for t in ("image2text", "text2image")}
        by_task = {t: items for t, items in by_task.items() if items}
        if not by_task:
            raise UserError(f"{db} holds no {split} items: nothing to export")
        refuse_existing([out / f"{t}_{split}.json" for t in by_task], overwrite)
        paths = [
            export_items(items, out, f"{t}_{split}", opts.layout, copy_images, with_gold=with_gold)
            for t, items in by_task.items()
        ]
        return paths, sum(len(v) for v in by_task.values()), {}
    if split not in ("train", "val"):
        raise UserError(f"export {kind} --split {split}: only training data is exported (train or val)")
    items = store.items(split=split)
    if not items:
        raise UserError(f"{db} holds no {split} items: nothing to export")
    require_clean(audit_store(store), allow_leakage, "export", strict=strict)
    built = (sft_examples if kind == "sft" else dpo_pairs)(store, items, opts)
    if not built.examples:
        raise UserError(f"no {kind} examples in {db} (skipped: {dict(built.skipped)}): run `distill graph` first")
    # SFT: one dataset per task, so that LLaMA-Factory can mix them (`interleave_probs`) as the weights say
    groups: dict[str, list[dict]] = {}
    for e in built.examples:
        groups.setdefault(f"cover_distill_{e['kind'] if kind == 'sft' else 'dpo'}_{split}", []).append(e)
    refuse_existing([out / (f"{name}.jsonl" if fmt == "trl" else f"{name}.json") for name in groups], overwrite)
    write = export_trl if fmt == "trl" else export_llamafactory
    paths = [write(examples, out, name, copy_images) for name, examples in groups.items()]
    return paths, len(built.examples), dict(built.skipped)


def export_traces(db: str | Path, out: str | Path | None, run: str | None = None, overwrite: bool = False) -> str:
    """`distill traces export`: every trace (latest attempts) with its item, as JSON lines."""
    from distill.data.fileio import atomic_write_text, refuse_existing, require_writable_dir

    if out:
        refuse_existing([Path(out)], overwrite)
        require_writable_dir(Path(out).parent)
    store = open_store(db)
    if run:
        store.run(run)
    items = {it.key: it for it in store.items()}
    lines = [
        json.dumps(t | {"item": items[t["item_key"]].record()}, ensure_ascii=False) for t in store.traces(run_id=run)
    ]
    text = "".join(line + "\n" for line in lines)
    if out:
        atomic_write_text(out, text)
    return text


# --- training -----------------------------------------------------------------------------------------------
def run_sft(settings) -> dict:
    """`distill sft`: supervised fine-tuning with TRL, from typed settings (`distill.train.settings`: a training
    recipe, values and flags)."""
    from distill.train.sft import train_sft

    return train_sft(settings)


def run_dpo(settings) -> dict:
    """`distill dpo`: DPO with TRL on accepted-vs-rejected rationales, from typed settings as for `run_sft`."""
    from distill.train.dpo import train_dpo

    return train_dpo(settings)


def run_merge(adapter: str | Path, out: str | Path, base: str | None = None, overwrite: bool = False) -> Path:
    """`distill merge`: a LoRA adapter merged into its base (by default the adapter's own) as a standalone folder,
    written whole or not at all (distill.train.merge)."""
    from distill.train.merge import merge_adapter

    return merge_adapter(adapter, out, base, overwrite)


# --- prediction and evaluation ------------------------------------------------------------------------------
HELD_OUT = ("dev", "test")


def store_tests(db: str | Path, split: str | None = None) -> dict[str, list]:
    """The store's held-out items of `split` (default test), per task."""
    if split is not None and split not in HELD_OUT:
        raise UserError(f"--split {split}: predictions are for a held-out split (dev or test)")
    tasks: dict[str, list] = {}
    for it in open_store(db).items(split=split or "test"):
        tasks.setdefault(it.task, []).append(it)
    if not tasks:
        raise UserError(f"{db} holds no {split or 'test'} items: load them with `distill load`")
    return tasks


def load_tests(data_files: list[str | Path], split: str | None = None) -> dict[str, list]:
    """Test items per task; every record must be usable (each test id needs an answer). A registry
    (`dataset_info.json`) gives only its datasets of `split` (default test; a dataset whose name and file say no
    split counts as `split`); a task file gives its own split (its name's, else `split`, else test), and a name that
    contradicts an explicit `split` is an error."""
    from distill.data.filenames import split_of
    from distill.data.loaders import load_any
    from distill.data.registry import load_registry, read_registry
    from distill.ingest import check_unique

    if split is not None and split not in HELD_OUT:
        raise UserError(f"--split {split}: predictions are for a held-out split (dev or test)")
    want = split or "test"
    hint = "every test record needs an answer: fix these records"
    tasks: dict[str, list] = {}
    for f in data_files:
        path = Path(f)
        if path.name == "dataset_info.json":
            registry = read_registry(path)
            splits = {
                name: split_of(name) or split_of(Path(str(entry.get("file_name", "")))) or want
                for name, entry in registry.items()
                if isinstance(entry, dict)
            }
            names = [name for name, s in splits.items() if s == want]
            if not names:
                found = ", ".join(f"{name} ({s})" for name, s in splits.items()) or "none"
                raise UserError(f"{f}: registers no {want} dataset (it registers: {found}); choose with --split")
            log.info("%s: the %s split: %s", f, want, ", ".join(names))
            items = load_registry(path, names, split=want, hint=hint).items
        else:
            named = split_of(path)
            if split and named and named != split:
                raise UserError(f"{f}: its name says {named}, but --split says {split}: give the {split} file")
            items = load_any(path, split=want, hint=hint).items
        if not items:
            raise UserError(f"{f}: no items")
        for it in items:
            tasks.setdefault(it.task, []).append(it)
    check_unique([it for items in tasks.values() for it in items])
    return tasks


def splits_of(tasks: dict[str, list]) -> dict[str, str]:
    """Each task's split(s), for saying what was predicted ("test", or "dev+test" from several files)."""
    return {task: "+".join(sorted({it.split or "test" for it in items})) for task, items in tasks.items()}


def run_predict(
    model: str,
    data_files: list[str | Path],
    out_dir: str | Path,
    cfg=None,
    max_pixels: int | None = None,
    show_progress: bool = True,
    devices: list[str] | None = None,
    overwrite: bool = False,
    backend_options: dict | None = None,
    split: str | None = None,
    used: dict | None = None,
    db: str | Path | None = None,
) -> dict[str, Path]:
    """`distill predict`: a details JSONL per task (probabilities, letter, entropy, method, seconds), then the
    answer files (validated), each written atomically, the answers last.

    The held-out items come from `data_files` or from the store `db`. `split`: which held-out split (default test;
    `load_tests`). `max_pixels`: the image cap, by default the one on the trained model's card
    (`distill.data.student_card`); `cfg.layout` and `cfg.captions` likewise. `used`, when given, receives what was
    used: `split` (per task) and `max_pixels` (the cap and where it came from).

    `devices`: one worker process per device (data-parallel): each takes every n-th item, sees only its own device
    (CUDA_VISIBLE_DEVICES) and writes a shard of details; the shards are merged here. `backend_options`: more
    BackendConfig fields (backend, base_url, concurrency, dtype, scoring, extra engine arguments)."""
    from distill.backends.config import BackendConfig
    from distill.data.answers import write_answers
    from distill.data.fileio import atomic_write_text, refuse_existing, require_writable_dir
    from distill.data.student_card import StudentCard, image_cap, read_card
    from distill.predict import PredictConfig

    cfg = cfg or PredictConfig()
    card = read_card(model) or StudentCard()
    if cfg.layout is None:
        cfg = cfg.model_copy(update={"layout": card.layout})
    if cfg.captions is None:
        cfg = cfg.model_copy(update={"captions": card.captions})
    out = Path(out_dir)
    tasks = store_tests(db, split) if db else load_tests(data_files, split)
    cap, cap_source = image_cap(model, max_pixels, given="--max-pixels")
    log.info("image cap: %d pixels (%s)", cap, cap_source)
    for task, s in splits_of(tasks).items():
        log.info("%s: %d %s item(s)", task, len(tasks[task]), s)
    if used is not None:
        used.update(split=splits_of(tasks), max_pixels=(cap, cap_source))
    refuse_existing([out / f"{t}_{kind}" for t in tasks for kind in ("answer.json", "details.jsonl")], overwrite)
    require_writable_dir(out)  # before any model loads
    options = backend_options or {}
    if options.get("backend", "transformers") != "openai":
        from distill.backends.base import require_local_model
        from distill.predict import check_context

        require_local_model(model)
        check_context(model, [it for items in tasks.values() for it in items], cfg, cap)
    be_cfg = BackendConfig(model=str(model), max_pixels=cap, **options)
    t0, clock = time.perf_counter(), {}
    if devices and len(devices) > 1:
        rows_by_task = _predict_on_devices(be_cfg, tasks, cfg, devices, out)
    else:
        rows_by_task = predict_tasks(be_cfg, tasks, cfg, show_progress=show_progress, clock=clock)
    log.info("%s", throughput(sum(len(v) for v in tasks.values()), time.perf_counter() - t0, clock.get("start_up_s")))
    written = {}
    for task, rows in rows_by_task.items():
        atomic_write_text(out / f"{task}_details.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    for task, rows in rows_by_task.items():  # answers after every details file
        written[task] = write_answers(
            out / f"{task}_answer.json", {r["id"]: r["letter"] for r in rows}, [it.id for it in tasks[task]]
        )
        log.info("%s answers -> %s", task, written[task])
    return written


def throughput(n: int, seconds: float, start_up_s: float | None) -> str:
    """The prediction summary: the items' rate without the model's start-up (loading, an engine's compilation), which
    a user pays once a run and which would otherwise swamp the rate of a short run."""
    if start_up_s is None:
        return f"{n} items in {seconds:.1f}s ({n / max(1e-9, seconds):.2f} items/s)"
    run = max(1e-9, seconds - start_up_s)
    return f"{n} items in {run:.1f}s after {start_up_s:.1f}s of model start-up ({n / run:.2f} items/s)"


def predict_tasks(
    be_cfg, tasks: dict[str, list], cfg, show_progress: bool = True, clock: dict | None = None
) -> dict[str, list[dict]]:
    """Every task's items through one backend, in one event loop; `clock` gets the backend's start-up seconds."""
    from rich.progress import Progress

    from distill.backends.factory import make_backend
    from distill.predict import predict_items

    t0 = time.perf_counter()
    backend = make_backend(be_cfg)
    backend.start()
    if clock is not None:
        clock["start_up_s"] = time.perf_counter() - t0

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
        raise UserError(f"prediction workers {failed} failed; no answer file was written")
    merged: dict[str, dict] = {t: {} for t in tasks}
    for k in range(len(devices)):
        for task, rows in json.loads((shards / f"shard{k}.json").read_text()).items():
            merged[task].update({r["id"]: r for r in rows})
    shutil.rmtree(shards)
    for task, items in tasks.items():
        missing = [it.id for it in items if it.id not in merged[task]]
        if missing:
            raise UserError(f"{task}: {len(missing)} items missing from the shards, e.g. {missing[:5]}")
    return {task: [merged[task][it.id] for it in items] for task, items in tasks.items()}


def run_eval(answers: str | Path, gold: list[str | Path], out: str | Path | None = None) -> dict:
    from distill.data.fileio import require_writable_dir
    from distill.evaluate import evaluate

    require_writable_dir(out or answers)
    return evaluate(answers, gold, out or answers)


def convert_llamafactory(
    jsonl: str | Path,
    data: list[str | Path],
    out_dir: str | Path,
    overwrite: bool = False,
    fallback: str | None = None,
    split: str | None = None,
) -> tuple[Path, str]:
    """`distill predict --from-llamafactory`: vllm_infer.py's lines, paired in order with one test file's
    records, -> the answer file and a details file (raw reply, parsed or filled, why). Lines that are not the
    records' own (another count; a prompt with another number of images or without the record's question) are
    refused (`distill.data.answers.from_llamafactory`)."""
    from distill.data.answers import FILL_RULE, from_llamafactory, write_answers
    from distill.data.fileio import atomic_write_text, refuse_existing, require_writable_dir

    if len(data) != 1:
        raise UserError("--from-llamafactory pairs with exactly one --data file (run it once per task)")
    by_task = load_tests(data, split)
    if len(by_task) != 1:
        raise UserError(f"{data[0]}: holds {' and '.join(by_task)} items: give one task's test file")
    [items] = by_task.values()
    out = Path(out_dir)
    task = items[0].task
    refuse_existing([out / f"{task}_answer.json", out / f"{task}_details.jsonl"], overwrite)
    require_writable_dir(out)
    letters, rows = from_llamafactory(
        jsonl, [it.id for it in items], [it.letters for it in items], fallback, records=items
    )
    atomic_write_text(out / f"{task}_details.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    path = write_answers(out / f"{task}_answer.json", letters, [it.id for it in items])
    filled = [r for r in rows if not r["parsed"]]
    rule = f"--fallback {fallback}" if fallback else FILL_RULE
    return path, (
        f"{len(rows)} answers, {len(filled)} unparseable line(s) filled ({rule})"
        if filled
        else f"{len(rows)} answers, every line parsed"
    )
