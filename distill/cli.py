"""The `distill` command: a thin face over `distill.pipeline`, which the tests call directly. Nothing imports it."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path

import typer

from agents.settings import TeacherConfig
from distill import logs
from distill.augment import AugmentConfig
from distill.backends.config import BackendConfig
from distill.cli_options import with_settings
from distill.ingest import DataConfig
from distill.kit.sample_data import SampleDataConfig
from distill.kit.sample_teacher.serving import SampleTeacherConfig
from distill.predict import PredictConfig
from distill.train.examples import ExampleOptions

_VERBOSE = False  # set by the -v option; main() then shows a user's error's traceback too

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="cover-distill: teach a VLM to match journal covers with their cover stories.\n\n"
    "Pipeline: load -> graph (teacher traces) -> augment -> sft -> dpo -> predict -> eval. "
    "`distill demo` runs all of it on generated sample data with a tiny offline model.",
)
traces_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Inspect the teacher's traces in a store.")
app.add_typer(traces_app, name="traces")
log = logging.getLogger("distill")
out = logs.stdout

DB_HELP = "The SQLite store (give --db, or --config for the recipe's)."
CONFIG_HELP = "A pipeline recipe (YAML); its `db` is the store when --db is not given."


def _db(db: Path | None, config: Path | None) -> Path:
    """The store: --db, else the recipe's; never a default the user did not choose."""
    if db:
        return db
    if config:
        from distill.recipe import load_recipe

        return Path(load_recipe(config).db)
    raise typer.BadParameter("give --db STORE (or --config RECIPE)", param_hint="--db")


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging, and the traceback of any error."),
) -> None:
    global _VERBOSE
    _VERBOSE = verbose
    logs.setup(verbose)


ALLOW_LEAKAGE = typer.Option(
    False, "--allow-leakage", help="Go on although the audit finds held-out items in training data."
)
OVERWRITE_FILES = typer.Option(False, "--overwrite", help="Replace existing output files.")


@app.command("sample-data")
@with_settings(SampleDataConfig, "cfg")
def sample_data(
    out_dir: Path = typer.Argument(..., help="Folder to write the dataset into."),
    cfg: SampleDataConfig = None,
) -> None:
    """Write the seeded sample dataset: MAC-format JSON for both tasks, JPEG covers drawn per item,
    dataset_info.json, and covers.json (each cover's motif, for scoring only)."""
    from distill.kit.sample_data import generate

    generate(out_dir, cfg)
    out.print(f"sample data written to {out_dir}")


@app.command("tiny-model")
def tiny_model(
    out_dir: Path = typer.Argument(..., help="Folder to write the model into."),
    seed: int = typer.Option(0, help="Initialisation seed."),
    size: str = typer.Option("tiny", help="Student size: tiny (2 layers x 64) | small (4 layers x 256)."),
    init_range: float | None = typer.Option(
        None, help="Std of the language model's initial weights (default: the size's, 0.2)."
    ),
) -> None:
    """Build a random tiny Qwen2.5-VL with the real Qwen2.5 tokenizer, offline."""
    from distill.kit.tiny_model import build_tiny_model

    build_tiny_model(out_dir, seed=seed, size=size, init_range=init_range)
    out.print(f"tiny model written to {out_dir}")


@app.command("sample-teacher")
@with_settings(SampleTeacherConfig, "cfg")
def sample_teacher(cfg: SampleTeacherConfig = None) -> None:
    """Serve the sample-cover teacher (OpenAI-compatible, 127.0.0.1): a stand-in for a VLM teacher that reads the
    sample covers' pixels; valid ONLY on the covers `distill sample-data` draws."""
    from distill.kit.sample_teacher.serving import serve

    serve(cfg)


@app.command("load")
@with_settings(DataConfig, "opts", include=("validation_fraction", "seed", "skip_invalid"))
def load(
    files: list[Path] = typer.Argument(..., help="Task JSON files, a dataset_info.json, or MAC CSVs."),
    db: Path = typer.Option(..., "--db", help="The SQLite store (created and migrated on open)."),
    split: str | None = typer.Option(
        None,
        help="train | val | dev | test, for files whose names say none (a name that says another split is an "
        "error); in a dataset_info.json, for the datasets whose names say none.",
    ),
    opts: dict = None,
) -> None:
    """Validate data files and load them into the store. Each file's split comes from its name (a registry:
    each dataset's name); a validation split is carved from train unless val files are given. Every file is checked
    before the store is touched: a failed load changes nothing."""
    from distill.pipeline import load_files

    if split is not None and split not in ("train", "val", "dev", "test"):
        raise typer.BadParameter(f"{split!r}: train, val, dev or test", param_hint="--split")
    data = load_files(files, db, split, **opts)
    for e in data.errors:
        typer.echo(f"skipped: {e}", err=True)
    for name, per_task in data.counts().items():
        out.print(f"{name:>5}: " + ", ".join(f"{t} {n}" for t, n in sorted(per_task.items())))
    out.print(f"store: {db}")


@app.command("audit")
def audit(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    strict: bool = typer.Option(
        False, "--strict", help="Also refuse held-out covers or stories seen only as distractors (kind c)."
    ),
) -> None:
    """Count the dev/test items whose content training data holds, per kind: (a) the item itself, (b) its cover or
    story in a training item's gold pair, (c) its cover or story only as a distractor. Exits 1 on (a) or (b), and on
    (c) with --strict."""
    from distill.pipeline import run_audit

    report = run_audit(_db(db, config))
    out.print(report.table(), markup=False, highlight=False)
    if report.refused(strict):
        typer.echo(f"leakage: {report.summary(strict)}", err=True)
        raise typer.Exit(1)
    if report.distractor_only:
        out.print(report.summary(strict), markup=False, highlight=False)
    else:
        out.print("no leakage found")


@app.command("graph")
@with_settings(TeacherConfig, "over", include=("limit", "concurrency", "workers"), overrides=True)
def graph(
    config: Path = typer.Option(..., "--config", "-c", help="Pipeline recipe (YAML)."),
    data: list[Path] | None = typer.Option(
        None, "--data", help="Training files to load into the store first (override data.train)."
    ),
    db: Path | None = typer.Option(None, "--db", help="Store (overrides the recipe's)."),
    resume: str | None = typer.Option(
        None, help="Run id to resume: finished items are skipped, failed and interrupted ones redone."
    ),
    run_id: str | None = typer.Option(None, "--run-id", help="Name for a new run."),
    over: dict = None,
) -> None:
    """Run the teacher graph (describer -> reasoner -> critic, retries, rationalization) over the store's training
    items. The recipe's data files are loaded first when the store has none (or with --data). Exits 1 when items
    failed, loudly when every item did (the run is then recorded as failed)."""
    from distill.pipeline import run_teacher
    from distill.recipe import load_recipe

    recipe = load_recipe(
        config,
        {
            "db": str(db) if db else None,
            **{f"teacher.{k}": v for k, v in over.items()},
            "data.train": [str(d) for d in data] if data else None,
        },
    )
    summary = run_teacher(recipe, resume=resume, run_id=run_id, load=True if data else None)
    _print_summary(summary)
    if summary.failed:
        again = f"distill graph -c {config}" + (f" --db {db}" if db else "") + f" --resume {summary.run_id}"
        if summary.all_failed:
            typer.echo(
                f"error: {summary.failed} item(s) failed, every item of run {summary.run_id}: it holds no trace, so "
                f"nothing can train on it. Fix the cause (first failure above), then: {again}",
                err=True,
            )
        else:
            typer.echo(f"{summary.failed} item(s) failed; finish them with: {again}", err=True)
        raise typer.Exit(1)


def _print_summary(summary) -> None:
    """The run's counts, items and traces (an item's attempts and samples) each named as such."""
    from rich.table import Table

    from distill.secrets import redact

    t = Table(title=f"run {summary.run_id}")
    t.add_column("what")
    t.add_column("value", justify="right")
    for label, v in summary.rows():
        t.add_row(label, f"{v:.1f}" if isinstance(v, float) else str(v))
    out.print(t)
    for e in summary.errors:
        typer.echo(f"failed: {redact(e)}", err=True)


@app.command("demo")
def demo(
    workdir: Path = typer.Option(Path("runs/demo"), help="Where every artefact goes."),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Pipeline recipe (YAML; its `kit:` section is the plan). Default: configs/demo.yaml, or on a GPU "
        "configs/demo-gpu.yaml.",
    ),
    gpu: bool | None = typer.Option(
        None,
        "--gpu/--cpu",
        help="Where the students train (default: the GPU when there is one). On a GPU the default plan trains a "
        "4-layer student to the measured budget beside a letters-only twin.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again in a workdir a demo already used."),
) -> None:
    """The main job on the embedded default: sample covers, a random student, SQLite, the whole pipeline."""
    from distill.kit.demo import run_demo

    run_demo(config, workdir, overwrite=overwrite, device={None: "auto", True: "cuda", False: "cpu"}[gpu])


@app.command("predict")
@with_settings(PredictConfig, "cfg", exclude=("prior_min_items",))
@with_settings(
    BackendConfig,
    "backend_opts",
    include=("backend", "base_url", "scoring", "dtype", "concurrency", "gpu_memory_utilization"),
)
@with_settings(
    BackendConfig, "cap", include=("max_pixels",), overrides="the cap the model folder records from training"
)
def predict(
    model: Path | None = typer.Option(
        None, "--model", help="Model folder (a merged student); required unless --from-llamafactory."
    ),
    data: list[Path] | None = typer.Option(
        None, "--data", help="Test files, e.g. image2text_test.json (repeat for several), or a dataset_info.json."
    ),
    db: Path | None = typer.Option(None, "--db", help="Predict the store's held-out items (instead of --data)."),
    split: str | None = typer.Option(
        None,
        help="The held-out split to predict: test (default) | dev. A dataset_info.json gives only its datasets of "
        "that split; a task file's name must not say another.",
    ),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the answer and details files."),
    devices: str | None = typer.Option(
        None, help="Data-parallel: one worker per device, e.g. 0,1,2,3 (GPU ids; 'cpu' for none)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing answer files."),
    fallback: str | None = typer.Option(
        None,
        help="--from-llamafactory: the letter for lines that name none (default: the letter chosen "
        "least often so far, so fills do not pile onto one letter).",
    ),
    from_llamafactory: Path | None = typer.Option(
        None,
        "--from-llamafactory",
        help="Convert LLaMA-Factory's vllm_infer.py output instead (one --data "
        "file: its records pair with the output's lines in order).",
    ),
    cfg: PredictConfig = None,
    backend_opts: dict = None,
    cap: dict = None,
) -> None:
    """Answer files in the strict format (every test id once, one capital letter: A-D, or on to Z for items with
    more options), plus details JSONL, written
    atomically: details first, answers last."""
    from distill.pipeline import convert_llamafactory, run_predict

    if bool(data) == bool(db):
        raise typer.BadParameter("give the held-out items with --data FILE... or --db STORE", param_hint="--data")
    if from_llamafactory:
        path, summary = convert_llamafactory(from_llamafactory, data or [], out_dir, overwrite, fallback, split)
        out.print(f"{path}: {summary}")
        return
    if model is None:
        raise typer.BadParameter("--model is required (or --from-llamafactory)", param_hint="--model")
    used: dict = {}
    written = run_predict(
        str(model),
        data or [],
        out_dir,
        cfg,
        max_pixels=cap.get("max_pixels"),
        devices=devices.split(",") if devices else None,
        overwrite=overwrite,
        backend_options=backend_opts,
        split=split,
        used=used,
        db=db,
    )
    cap, source = used["max_pixels"]
    out.print(f"image cap: {cap} pixels ({source})")
    for task, path in written.items():
        out.print(f"{task} ({used['split'][task]} split): {path}")


@app.command("eval")
def evaluate_cmd(
    answers: Path = typer.Option(..., "--answers", help="Folder with <task>_answer.json files."),
    gold: list[Path] = typer.Option(..., "--gold", help="Labelled files, e.g. image2text_dev.json."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Where to write eval.json/.md/.png (default: the answers folder)."
    ),
) -> None:
    """Accuracy per task and overall, letter confusion, calibration, per-journal accuracy."""
    from distill.evaluate import markdown
    from distill.pipeline import run_eval

    out.print(markdown(run_eval(answers, gold, out_dir)))


@app.command("augment")
@with_settings(AugmentConfig, "over", include=("permutations", "recombine", "option_counts", "seed"), overrides=True)
def augment_cmd(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    config: Path | None = typer.Option(
        None, "--config", "-c", help=CONFIG_HELP + " Its `augment:` section is the default."
    ),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the new dataset files."),
    skip_invalid: bool = typer.Option(
        False,
        "--skip-invalid",
        help="Leave out items whose story cannot be read (listed in the report) instead of stopping.",
    ),
    allow_leakage: bool = ALLOW_LEAKAGE,
    overwrite: bool = OVERWRITE_FILES,
    merge_registry: bool = typer.Option(
        False,
        "--merge-registry",
        help="Add the augmented datasets to an existing OUT/dataset_info.json, keeping its other datasets (without "
        "it, an existing registry is replaced only with --overwrite).",
    ),
    over: dict = None,
) -> None:
    """Permute options (balanced gold letters) and recombine (cover, story) pairs across tasks with hard
    negatives; writes task-format JSON, a dataset_info.json and a report, and records provenance in the store
    (files and store all or nothing)."""
    from distill.pipeline import run_augment
    from distill.recipe import load_recipe

    recipe = load_recipe(config, {f"augment.{k}": v for k, v in over.items()})
    result = run_augment(
        _db(db, config), out_dir, recipe.augment, overwrite, skip_invalid, allow_leakage, merge_registry=merge_registry
    )
    out.print_json(json.dumps(result))


TRAIN_CTX = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command("sft", context_settings=TRAIN_CTX)
def sft(ctx: typer.Context) -> None:
    """Supervised fine-tuning with TRL on accepted rationales (and direct answers).

    Takes `--config RECIPE.yaml` and any field of it as a flag, e.g. `--learning_rate 2e-4 --max_steps 100`
    (fields of DistillArguments, trl.SFTConfig and trl.ModelConfig; `distill sft --help` lists them all).
    An existing output folder is continued only with --resume, replaced only with --overwrite."""
    from distill.pipeline import run_sft
    from distill.recipe import training_from_argv

    out.print_json(json.dumps(run_sft(training_from_argv("sft", ctx.args)), default=str))


@app.command("dpo", context_settings=TRAIN_CTX)
def dpo(ctx: typer.Context) -> None:
    """DPO with TRL on accepted-vs-rejected rationales (flags as for sft; `distill dpo --help` lists them)."""
    from distill.pipeline import run_dpo
    from distill.recipe import training_from_argv

    out.print_json(json.dumps(run_dpo(training_from_argv("dpo", ctx.args)), default=str))


@app.command("export")
@with_settings(ExampleOptions, "opts")
def export(
    kind: str = typer.Argument(..., help="sft | dpo | eval (held-out items for LLaMA-Factory's vllm_infer.py)"),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    out_dir: Path = typer.Option(..., "--out", help="Output folder."),
    fmt: str = typer.Option("trl", "--format", help="trl (JSONL for datasets) | llamafactory"),
    split: str = typer.Option("train", help="Which split's items: train | val (sft, dpo); dev | test (eval)."),
    copy_images: bool = typer.Option(
        True,
        "--copy-images/--images-by-reference",
        help="--copy-images (the default): the images in OUTPUT/images (hard links where possible), so the folder "
        "stands alone and moves anywhere. --images-by-reference: paths relative to OUTPUT to the images where they "
        "are (the folder then breaks when moved to another depth).",
    ),
    with_gold: bool = typer.Option(
        False,
        "--with-gold",
        help='eval: write each record\'s gold letter as its output (default: "", no answer in the export).',
    ),
    allow_leakage: bool = ALLOW_LEAKAGE,
    overwrite: bool = OVERWRITE_FILES,
    opts: ExampleOptions = None,
) -> None:
    """Write SFT examples (one dataset per task) or DPO pairs as files TRL or LLaMA-Factory train on, or the
    dev/test items as a LLaMA-Factory registry for vllm_infer.py (no gold letters unless --with-gold). The images
    are copied into the output folder (hard links where possible) so it moves as a whole (--images-by-reference
    for paths to where they are); with LLaMA-Factory, train and infer with image_max_pixels equal to distill's
    cap."""
    from distill.pipeline import run_export

    if kind not in ("sft", "dpo", "eval") or fmt not in ("trl", "llamafactory"):
        raise typer.BadParameter("KIND is sft, dpo or eval; --format is trl or llamafactory")
    if with_gold and kind != "eval":
        raise typer.BadParameter("--with-gold is for eval exports (sft and dpo exports are training data)")
    paths, n, skipped = run_export(
        kind, _db(db, config), out_dir, fmt, opts, split, overwrite, allow_leakage, copy_images, with_gold=with_gold
    )
    out.print(f"{n} {kind} records -> {', '.join(map(str, paths))}" + (f"  (skipped: {skipped})" if skipped else ""))


@app.command("merge")
def merge(
    adapter: Path = typer.Argument(..., help="A LoRA output folder (e.g. runs/sft/final)."),
    out_dir: Path = typer.Argument(..., help="Where to write the merged model."),
    base: str | None = typer.Option(None, help="Base model folder (default: the adapter's own)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Merge a LoRA adapter into its base: a standalone folder vLLM and transformers load."""
    from distill.pipeline import run_merge

    out.print(str(run_merge(adapter, out_dir, base, overwrite)))


# --- traces ------------------------------------------------------------------------------------------
@traces_app.command("path")
def traces_path(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
) -> None:
    """Print the store's absolute path (open it with: datasette PATH)."""
    out.print(str(_db(db, config).resolve()))


@traces_app.command("stats")
def traces_stats(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
) -> None:
    """Counts per run, task and verdict, with acceptance rates (latest attempt at each item)."""
    from distill.pipeline import open_store

    path = _db(db, config)
    rows = open_store(path).stats()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    from rich.table import Table

    t = Table(title=str(path))
    for c in ("run", "task", "accepted", "rejected", "cannot_judge", "acceptance"):
        t.add_column(c, justify="right" if c != "run" else "left")
    grouped: dict[tuple, dict] = {}
    for r in rows:
        grouped.setdefault((r["run_id"], r["task"]), {})[r["verdict"]] = r["n"]
    for (run, task), v in grouped.items():
        total = sum(v.values())
        t.add_row(
            run,
            task,
            str(v.get("accepted", 0)),
            str(v.get("rejected", 0)),
            str(v.get("cannot_judge", 0)),
            f"{v.get('accepted', 0) / total:.0%}" if total else "-",
        )
    out.print(t)


@traces_app.command("list")
def traces_list(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    n: int = typer.Option(10, "-n", help="How many (0 for all)."),
    run: str | None = typer.Option(None, "--run", help="Only this teacher run."),
    task: str | None = typer.Option(None, "--task", help="image2text | text2image"),
    accepted: bool = typer.Option(False, "--accepted", help="Only accepted traces."),
    rejected: bool = typer.Option(False, "--rejected", help="Only rejected traces."),
    query: str | None = typer.Option(
        None, "-q", help="Full-text search over rationales: traces holding every word (as typed, nothing special)."
    ),
    fts: bool = typer.Option(
        False, "--fts", help='Read -q as an SQLite FTS5 query (AND, OR, NOT, NEAR, "phrases", prefix*).'
    ),
    history: bool = typer.Option(False, "--history", help="Include earlier attempts at an item."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a summary."),
) -> None:
    """Newest traces first."""
    from distill.pipeline import open_store

    if fts and query is None:
        raise typer.BadParameter("--fts reads the -q query: give -q QUERY", param_hint="--fts")
    if task is not None and task not in ("image2text", "text2image"):
        raise typer.BadParameter(f"{task!r} is not a task: image2text or text2image", param_hint="--task")
    verdict = "accepted" if accepted else "rejected" if rejected else None
    rows = open_store(_db(db, config)).traces(
        run_id=run, task=task, verdict=verdict, query=query, limit=n or None, history=history, fts=fts
    )
    if as_json:
        out.print_json(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:  # stored text, printed as it is: no markup, no highlighting (slow on long words)
        head = r["rationale"].replace("\n", " ")[:100] if r["rationale"] else ""
        out.print(
            f"{r['id']}  {r['item_key']}  attempt {r['attempt']}{' hinted' if r['hinted'] else ''}"
            f"  answer {r['answer']}  {r['verdict']} ({r['reason']})\n    {head}",
            markup=False,
            highlight=False,
        )


@traces_app.command("show")
def traces_show(
    trace_id: str = typer.Argument(..., help="A trace id (see `distill traces list`)."),
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
) -> None:
    """One trace in full, with its item and the calls behind it."""
    from distill.pipeline import open_store

    t, item, calls = open_store(_db(db, config)).get_trace(trace_id)
    lines = [
        f"trace {t['id']}  run {t['run_id']}  item {item.key} (gold {item.gold}, attempt "
        f"{t['item_attempt']} at the item)",
        f"reasoning attempt {t['attempt']}  sample {t['sample']}  hinted {bool(t['hinted'])}  answer {t['answer']}"
        f"  verdict {t['verdict']} ({t['reason']})",
        "",
        "--- question ---",
        item.input,
    ]
    for path, text in json.loads(t["descriptions"] or "{}").items():
        lines += ["", f"--- description of {Path(path).name} ---", text]
    lines += ["", "--- rationale ---", t["rationale"] or ""]
    if t["feedback"]:
        lines += ["", "--- critic feedback ---", t["feedback"]]
    lines += ["", f"--- calls of this attempt at the item ({len(calls)}) ---"]
    for c in calls:
        tokens = f"{c['prompt_tokens']}+{c['completion_tokens']} tokens" if c["prompt_tokens"] is not None else ""
        status = f"ERROR {c['error']}" if c["error"] else (c["response"] or "").replace("\n", " ")[:80]
        lines.append(f"{c['created_at']}  {c['agent']:<9} {c['model']}  {tokens}  {c['duration_ms']:.0f} ms  {status}")
    out.print("\n".join(lines), markup=False, highlight=False)


@traces_app.command("export")
def traces_export(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    out_file: Path | None = typer.Option(None, "--out", help="JSONL file (default: stdout)."),
    run: str | None = typer.Option(None, "--run", help="Only this teacher run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Every trace with its item, as JSON lines."""
    from distill.pipeline import export_traces

    text = export_traces(_db(db, config), out_file, run, overwrite)
    if out_file:
        typer.echo(f"{text.count(chr(10))} traces -> {out_file}", err=True)
    else:
        sys.stdout.write(text)


def _os_error(exc: OSError) -> str:
    """An OSError as one line naming the path and the reason; where a file stands in a folder's place, which."""
    from distill.data.fileio import blocking_file

    if not exc.filename:
        return str(exc)
    paths = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
    reason = exc.strerror or str(exc)
    if isinstance(exc, NotADirectoryError | FileExistsError) and "not a folder" not in reason:
        blocker = blocking_file(exc.filename)
        if blocker is not None and str(blocker) != str(exc.filename):
            reason += f" ({blocker} is a file, not a folder)"
    return f"{paths}: {reason}"


def main() -> None:
    """Entry point: a user's error (bad input, a bad setting, a missing file) is one clear line with no secret in
    it; a bug keeps its traceback. `-v` shows the traceback of a user's error too."""
    from pydantic import ValidationError

    from distill.errors import UserError, problems
    from distill.secrets import redact

    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except (UserError, OSError, ValidationError) as exc:
        if _VERBOSE:
            traceback.print_exc()
        if isinstance(exc, OSError):
            msg = _os_error(exc)
        elif isinstance(exc, ValidationError):
            msg = f"invalid settings: {problems(exc)}"
        else:
            msg = str(exc)
        typer.echo(f"error: {redact(msg)}", err=True)
        raise SystemExit(1) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        typer.echo("aborted", err=True)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: what finished is saved (a teacher run resumes with --resume RUN_ID)", err=True)
        raise SystemExit(130) from None
    except Exception as exc:  # usage errors of the command-line parser: its own message, no traceback
        if callable(getattr(exc, "show", None)) and hasattr(exc, "exit_code"):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise


if __name__ == "__main__":
    main()
