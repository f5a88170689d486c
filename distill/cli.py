"""The `distill` command: a thin face over functions the tests call directly."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from distill import logs

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="cover-distill: teach a VLM to match journal covers with their cover stories.\n\n"
                       "Pipeline: graph (teacher traces) -> augment -> sft -> dpo -> predict -> eval. "
                       "`distill demo` runs all of it on bundled sample data with a tiny offline model.")
traces_app = typer.Typer(no_args_is_help=True, help="Inspect the teacher's traces in a store.")
app.add_typer(traces_app, name="traces")
log = logging.getLogger("distill")

DB_OPT = typer.Option("runs/demo/traces.db", "--db", help="SQLite store (created and migrated on open).")


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logs.setup(verbose)


@app.command("sample-data")
def sample_data(out_dir: Path = typer.Argument(..., help="Folder to write the dataset into."),
                n_train: int = typer.Option(64, help="Training items per task."),
                n_dev: int = typer.Option(10, help="Dev items per task."),
                n_test: int = typer.Option(24, help="Test items per task."),
                seed: int = typer.Option(0, help="Generator seed.")) -> None:
    """Write the seeded sample dataset: MAC-format JSON for both tasks, PNG covers, dataset_info.json."""
    from distill.sample_data import generate

    generate(out_dir, n_train, n_dev, n_test, seed)
    typer.echo(f"sample data written to {out_dir}")


@app.command("tiny-model")
def tiny_model(out_dir: Path = typer.Argument(..., help="Folder to write the model into."),
               seed: int = typer.Option(0, help="Initialisation seed."),
               init_range: float = typer.Option(
                   0.02, help="Std of the language model's initial weights; 0.2 lets a short SFT learn the "
                              "sample covers (bench/README.md).")) -> None:
    """Build a random tiny Qwen2.5-VL with the real Qwen2.5 tokenizer, offline."""
    from distill.tiny_model import build_tiny_model

    build_tiny_model(out_dir, seed=seed, text={"initializer_range": init_range})
    typer.echo(f"tiny model written to {out_dir}")


@app.command("load")
def load(files: list[Path] = typer.Argument(..., help="Task JSON files, a dataset_info.json, or MAC CSVs."),
         db: Path = DB_OPT,
         skip_invalid: bool = typer.Option(False, help="Report bad records and load the valid rest."),
         validation_fraction: float = typer.Option(0.1, help="Share of train carved out for validation."),
         seed: int = typer.Option(0)) -> None:
    """Validate data files and load them into the store (splits from file names; validation carved from train)."""
    from distill.config import DataConfig
    from distill.ingest import ingest
    from store import open_store

    buckets: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for f in files:
        split = "test" if "test" in f.stem else "dev" if "dev" in f.stem else "train"
        buckets[split].append(str(f))
    cfg = DataConfig(**buckets, skip_invalid=skip_invalid, validation_fraction=validation_fraction, seed=seed)
    data = ingest(open_store(db), cfg)
    for e in data.errors:
        typer.echo(f"skipped: {e}", err=True)
    for split, per_task in data.counts().items():
        typer.echo(f"{split:>5}: " + ", ".join(f"{t} {n}" for t, n in sorted(per_task.items())))
    typer.echo(f"store: {db}")


@app.command("graph")
def graph(config: Path = typer.Option("configs/demo.yaml", "--config", "-c", help="Recipe YAML."),
          data: Optional[list[Path]] = typer.Option(None, "--data", help="Training files (override the recipe)."),
          db: Optional[Path] = typer.Option(None, "--db", help="Store (overrides the recipe)."),
          limit: Optional[int] = typer.Option(None, help="First N training items only."),
          concurrency: Optional[int] = typer.Option(None, help="Items in flight at once."),
          resume: Optional[str] = typer.Option(None, help="Run id to resume: finished items are skipped."),
          run_id: Optional[str] = typer.Option(None, "--run-id", help="Name for a new run.")) -> None:
    """Run the teacher graph (describer -> reasoner -> critic, retries, rationalization) over training items."""
    from distill.pipeline import run_teacher

    overrides = {"db": str(db) if db else None, "teacher.limit": limit, "teacher.concurrency": concurrency,
                 "data.train": [str(d) for d in data] if data else None}
    summary = run_teacher(config, overrides, resume=resume, run_id=run_id)
    _print_summary(summary.as_dict())


def _print_summary(d: dict) -> None:
    from rich.table import Table

    t = Table(title=f"run {d['run_id']}")
    t.add_column("what")
    t.add_column("value", justify="right")
    for k, v in d.items():
        if k not in ("run_id", "errors"):
            t.add_row(k, f"{v:.1f}" if isinstance(v, float) else str(v))
    logs.console.print(t)
    for e in d.get("errors", []):
        typer.echo(f"failed: {e}", err=True)


@app.command("demo")
def demo(workdir: Path = typer.Option("runs/demo", help="Where every artefact goes."),
         config: Path = typer.Option("configs/demo.yaml", "--config", "-c", help="Recipe YAML.")) -> None:
    """The main job on the embedded default: sample covers, tiny model, SQLite, the whole pipeline."""
    from distill.pipeline import run_demo

    run_demo(config, workdir)


@app.command("predict")
def predict(model: Optional[Path] = typer.Option(None, "--model", help="Model folder (merged student)."),
            data: list[Path] = typer.Option(..., "--data", help="Test files, e.g. image2text_test.json."),
            out: Path = typer.Option(Path("runs/predict"), "--out", help="Folder for answer and details files."),
            method: str = typer.Option("score", help="score | debias | prior | cot | adaptive"),
            rotations: int = typer.Option(4, help="debias/prior: rotations of the options."),
            samples: int = typer.Option(5, help="cot/adaptive: sampled rationales for self-consistency."),
            threshold: float = typer.Option(0.6, help="adaptive: top probability under which cot runs."),
            backend: str = typer.Option("transformers", help="transformers | vllm | openai"),
            base_url: Optional[str] = typer.Option(None, help="openai backend: server URL."),
            max_pixels: Optional[int] = typer.Option(None, help="Image cap (use the training value)."),
            batch_size: int = typer.Option(16, help="Largest batch (transformers) / requests in flight."),
            devices: Optional[str] = typer.Option(
                None, help="Data-parallel: one worker per device, e.g. 0,1,2,3 (GPU ids; 'cpu' for none)."),
            shard: Optional[str] = typer.Option(None, hidden=True, help="Worker use: K/N."),
            from_llamafactory: Optional[Path] = typer.Option(
                None, "--from-llamafactory", help="Convert LLaMA-Factory generated_predictions.jsonl instead "
                                                  "(one --data file, whose records it pairs with in order).")) -> None:
    """Answer files in the strict format (every test id once, one letter A-D), plus details JSONL."""
    if from_llamafactory:
        from distill.answers import from_llamafactory as convert
        from distill.answers import write_answers
        from distill.loaders import load_any

        if len(data) != 1:
            raise ValueError("--from-llamafactory pairs with exactly one --data file")
        items = load_any(data[0], check_images=False).items
        letters, bad = convert(from_llamafactory, [it.id for it in items], [it.letters for it in items])
        path = write_answers(out / f"{items[0].task}_answer.json", letters, [it.id for it in items])
        typer.echo(f"{path}: {len(letters)} answers, {len(bad)} unparseable line(s)")
        return
    if model is None:
        raise ValueError("--model is required (or --from-llamafactory)")
    from distill.pipeline import run_predict
    from distill.predict import PredictConfig

    cfg = PredictConfig(method=method, rotations=rotations, samples=samples, threshold=threshold)
    k_n = tuple(int(x) for x in shard.split("/")) if shard else None
    written = run_predict(str(model), data, out, cfg, backend, max_pixels, base_url, batch_size,
                          devices=devices.split(",") if devices else None, shard=k_n)
    for task, path in written.items():
        typer.echo(f"{task}: {path}")


@app.command("eval")
def evaluate_cmd(answers: Path = typer.Option(..., "--answers", help="Folder with <task>_answer.json files."),
                 gold: list[Path] = typer.Option(..., "--gold", help="Labelled files, e.g. image2text_dev.json."),
                 out: Optional[Path] = typer.Option(None, "--out", help="Where to write eval.json/.md/.png "
                                                                       "(default: the answers folder).")) -> None:
    """Accuracy per task and overall, letter confusion, calibration, per-journal accuracy."""
    from distill.evaluate import evaluate, markdown

    report = evaluate(answers, gold, out or answers)
    typer.echo(markdown(report))


@app.command("augment")
def augment_cmd(db: Path = DB_OPT,
                out: Path = typer.Option(Path("runs/augment"), "--out", help="Folder for the new dataset."),
                config: Optional[Path] = typer.Option(None, "--config", "-c",
                                                      help="Recipe YAML (its `augment:` section)."),
                permutations: Optional[int] = typer.Option(None, help="Permuted copies per training item."),
                recombine: Optional[bool] = typer.Option(None, help="Cross-task recombination with hard negatives."),
                seed: Optional[int] = typer.Option(None)) -> None:
    """Permute options (balanced gold letters) and recombine (cover, story) pairs across tasks with hard
    negatives; writes task-format JSON plus a report, and records provenance in the store."""
    from distill.augment import AugmentConfig, augment, write_dataset
    from distill.config import load_config

    raw = load_config(config).augment if config else {}
    over = {k: v for k, v in {"permutations": permutations, "recombine": recombine, "seed": seed}.items()
            if v is not None}
    cfg = AugmentConfig(**(raw | over))
    s = _store(db)
    items = s.items(split="train")
    new, report = augment(items, cfg)
    s.add_items(new)
    paths = write_dataset(new, out, report)
    typer.echo(json.dumps({"train_items": len(items), "new_items": len(new), **report.as_dict(),
                           "files": {k: str(v) for k, v in paths.items()}}, indent=1))


TRAIN_CTX = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("sft", context_settings=TRAIN_CTX)
def sft(ctx: typer.Context,
        config: Path = typer.Option("configs/sft-demo.yaml", "--config", "-c", help="Recipe YAML.")) -> None:
    """Supervised fine-tuning with TRL on accepted rationales (and direct answers).

    Any field of the recipe can be overridden as a flag, e.g. `--learning_rate 2e-4 --max_steps 100`
    (fields of DistillArguments, trl.SFTConfig and trl.ModelConfig; `python -m distill.train.sft --help` lists
    them all). Resumes from the last checkpoint."""
    from distill.train.sft import main as sft_main

    result = sft_main(["--config", str(config), *ctx.args])
    typer.echo(json.dumps(result, indent=1))


@app.command("dpo", context_settings=TRAIN_CTX)
def dpo(ctx: typer.Context,
        config: Path = typer.Option("configs/dpo-demo.yaml", "--config", "-c", help="Recipe YAML.")) -> None:
    """DPO with TRL on accepted-vs-rejected rationales (flags override recipe fields, as for sft)."""
    from distill.train.dpo import main as dpo_main

    result = dpo_main(["--config", str(config), *ctx.args])
    typer.echo(json.dumps(result, indent=1))


@app.command("export")
def export(kind: str = typer.Argument(..., help="sft | dpo"),
           db: Path = DB_OPT,
           out: Path = typer.Option(Path("runs/export"), "--out", help="Output folder."),
           fmt: str = typer.Option("trl", "--format", help="trl (JSONL for datasets) | llamafactory"),
           direct_share: float = typer.Option(0.5, help="sft: direct-answer examples per rationale example."),
           include_hinted: bool = typer.Option(False, help="Include rationalized (hinted) traces."),
           templates: bool = typer.Option(True, help="Vary system prompts over the template set."),
           curriculum: str = typer.Option("none", help="none | easy_to_hard | staged"),
           split: str = typer.Option("train", help="Which split's items.")) -> None:
    """Write the SFT examples or DPO pairs as files TRL or LLaMA-Factory can train on."""
    from distill.train.datasets import export_llamafactory, export_trl
    from distill.train.examples import ExampleOptions, dpo_pairs, sft_examples

    s = _store(db)
    opts = ExampleOptions(direct_share=direct_share, include_hinted=include_hinted, templates=templates,
                          curriculum=curriculum)
    items = s.items(split=split)
    built = (sft_examples if kind == "sft" else dpo_pairs)(s, items, opts)
    name = f"cover_distill_{kind}_{split}"
    path = (export_trl if fmt == "trl" else export_llamafactory)(built.examples, out, name)
    typer.echo(f"{len(built.examples)} {kind} examples -> {path}  (skipped: {dict(built.skipped)})")


@app.command("merge")
def merge(adapter: Path = typer.Argument(..., help="A LoRA output folder (e.g. runs/sft/final)."),
          out: Path = typer.Argument(..., help="Where to write the merged model."),
          base: Optional[str] = typer.Option(None, help="Base model (default: the adapter's own).")) -> None:
    """Merge a LoRA adapter into its base: a standalone folder vLLM and transformers load."""
    from distill.train.merge import merge_adapter

    typer.echo(str(merge_adapter(adapter, out, base)))


# --- traces ------------------------------------------------------------------------------------------
def _store(db: Path):
    from store import open_store

    if not db.exists():
        raise FileNotFoundError(f"no store at {db}")
    return open_store(db)


@traces_app.command("path")
def traces_path(db: Path = DB_OPT) -> None:
    """Print the store's absolute path (open it with: datasette PATH)."""
    typer.echo(str(db.resolve()))


@traces_app.command("stats")
def traces_stats(db: Path = DB_OPT, as_json: bool = typer.Option(False, "--json")) -> None:
    """Counts per run, task and verdict, with acceptance rates."""
    rows = _store(db).stats()
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.table import Table

    t = Table(title=str(db))
    for c in ("run", "task", "accepted", "rejected", "cannot_judge", "acceptance"):
        t.add_column(c, justify="right" if c != "run" else "left")
    grouped: dict[tuple, dict] = {}
    for r in rows:
        grouped.setdefault((r["run_id"], r["task"]), {})[r["verdict"]] = r["n"]
    for (run, task), v in grouped.items():
        total = sum(v.values())
        t.add_row(run, task, str(v.get("accepted", 0)), str(v.get("rejected", 0)), str(v.get("cannot_judge", 0)),
                  f"{v.get('accepted', 0) / total:.0%}" if total else "-")
    logs.console.print(t)


@traces_app.command("list")
def traces_list(db: Path = DB_OPT, n: int = typer.Option(10, "-n", help="How many (0 for all)."),
                run: Optional[str] = typer.Option(None, "--run"), task: Optional[str] = typer.Option(None, "--task"),
                accepted: bool = typer.Option(False, "--accepted"), rejected: bool = typer.Option(False, "--rejected"),
                query: Optional[str] = typer.Option(None, "-q", help="Full-text search over rationales."),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Newest traces first."""
    verdict = "accepted" if accepted else "rejected" if rejected else None
    rows = _store(db).traces(run_id=run, task=task, verdict=verdict, query=query, limit=n or None)
    if as_json:
        typer.echo(json.dumps(rows, indent=1, ensure_ascii=False))
        return
    for r in rows:
        head = r["rationale"].replace("\n", " ")[:100] if r["rationale"] else ""
        typer.echo(f"{r['id']}  {r['item_id']}  {r['task']}  attempt {r['attempt']}{' hinted' if r['hinted'] else ''}"
                   f"  answer {r['answer']}  {r['verdict']} ({r['reason']})\n    {head}")


@traces_app.command("show")
def traces_show(trace_id: str = typer.Argument(...), db: Path = DB_OPT) -> None:
    """One trace in full, with its item and the calls behind it."""
    s = _store(db)
    rows = list(s.db["traces"].rows_where("id = ?", [trace_id]))
    if not rows:
        raise KeyError(f"no trace {trace_id!r} in {db}")
    t = rows[0]
    item = s.get_item(t["item_id"])
    typer.echo(f"trace {t['id']}  run {t['run_id']}  item {item.id} ({item.task}, gold {item.gold})")
    typer.echo(f"attempt {t['attempt']}  sample {t['sample']}  hinted {bool(t['hinted'])}  answer {t['answer']}  "
               f"verdict {t['verdict']} ({t['reason']})")
    typer.echo("\n--- question ---\n" + item.input)
    for path, text in json.loads(t["descriptions"] or "{}").items():
        typer.echo(f"\n--- description of {Path(path).name} ---\n{text}")
    typer.echo("\n--- rationale ---\n" + (t["rationale"] or ""))
    if t["feedback"]:
        typer.echo("\n--- critic feedback ---\n" + t["feedback"])


@traces_app.command("export")
def traces_export(db: Path = DB_OPT, out: Optional[Path] = typer.Option(None, help="JSONL file (default stdout)."),
                  run: Optional[str] = typer.Option(None, "--run")) -> None:
    """Every trace with its item, as JSON lines."""
    from distill.fileio import atomic_write_text

    s = _store(db)
    lines = []
    for t in s.traces(run_id=run):
        item = s.get_item(t["item_id"])
        lines.append(json.dumps(t | {"item": item.record()}, ensure_ascii=False))
    text = "\n".join(lines) + ("\n" if lines else "")
    if out:
        atomic_write_text(out, text)
        typer.echo(f"{len(lines)} traces -> {out}", err=True)
    else:
        sys.stdout.write(text)


def main() -> None:
    """Entry point: known failures become one clear line, not a traceback."""
    from distill.backends.base import BackendError
    from distill.config import ConfigError
    from distill.answers import AnswerError
    from distill.loaders import DataError

    try:
        app(standalone_mode=False)
    except (DataError, ConfigError, BackendError, AnswerError, FileNotFoundError, KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        typer.echo(f"error: {msg}", err=True)
        raise SystemExit(1) from None
    except typer.Abort:
        typer.echo("aborted", err=True)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: finished items are saved; rerun with --resume RUN_ID to continue", err=True)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as exc:  # usage errors of the command-line parser: its own message, no traceback
        if callable(getattr(exc, "show", None)) and hasattr(exc, "exit_code"):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise


if __name__ == "__main__":
    main()
