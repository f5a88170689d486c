"""What a training run shows and leaves behind: readable log lines instead of raw dictionaries on the console,
every logged metric in OUTPUT_DIR/metrics.jsonl, and a plot of them."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

log = logging.getLogger("distill.train")
SHOWN = (
    "loss",
    "eval_loss",
    "eval_accuracy",
    "eval_gold_prob",
    "rewards/margins",
    "rewards/accuracies",
    "learning_rate",
    "grad_norm",
)


class MetricsFile(TrainerCallback):
    """Every logged metric, one JSON line per log call, with the wall-clock `time` it was logged at (the steps'
    pace, across resumes)."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a") as f:
                row = {"step": state.global_step, "epoch": state.epoch, **logs, "time": round(time.time(), 3)}
                f.write(json.dumps(row) + "\n")


class LogLines(TrainerCallback):
    """One readable line per log call, through the same logger as the rest of the pipeline."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        parts = [f"{k} {logs[k]:.4g}" for k in SHOWN if isinstance(logs.get(k), (int, float))]
        if parts:
            log.info("step %d/%d  %s", state.global_step, state.max_steps, "  ".join(parts))


class ProgressBar(ProgressCallback):
    """transformers' progress bar, without its printing of each log dictionary (LogLines does that)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return


def console_callbacks(trainer) -> None:
    """Swap the Trainer's console printers for LogLines and a quiet progress bar."""
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    if not trainer.args.disable_tqdm:
        trainer.add_callback(ProgressBar())
    trainer.add_callback(LogLines())


def read_metrics(path: Path) -> list[dict]:
    """A run's metrics.jsonl, one dict per logged step (none when the run logged nothing)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def validation_curve(rows: list[dict]) -> list[tuple[int, float]]:
    """(step, validation accuracy) at every evaluation of a run."""
    return [(r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]


def plot_metrics(metrics_path: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    keys = [
        k
        for k in ("loss", "eval_loss", "eval_accuracy", "learning_rate", "rewards/margins", "rewards/accuracies")
        if any(k in r for r in rows)
    ]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pts = [(r["step"], r[k]) for r in rows if k in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None)
        ax.set(title=k, xlabel="step")
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
