"""Small helpers that several test files share."""

from __future__ import annotations

import socket
from pathlib import Path

TASKS = ("image2text", "text2image")


def ingested(data_dir: Path, db: Path, splits=("train",), tasks=TASKS, **config):
    """A store at `db` holding the data folder's `{task}_{split}.json` files (DataConfig's other settings as given),
    left open."""
    from distill.ingest import DataConfig, ingest
    from store import open_store

    s = open_store(db)
    ingest(s, DataConfig(**{split: [str(data_dir / f"{t}_{split}.json") for t in tasks] for split in splits}, **config))
    return s


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_mac_csv(path: Path, items) -> Path:
    """image2text items in MAC's CSV columns (the stories as `option_X`), a row each."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["journal", "id", "question", "cover_image", "answer"] + [f"option_{L}" for L in "ABCD"])
        for it in items:
            w.writerow([it.journal, it.id, "Which story?", it.images[0], it.gold] + [o.text for o in it.options])
    return path


def sft_main(argv: list[str]) -> dict:
    """`distill sft ARGV` as the command runs it, without the CLI around it."""
    from distill.pipeline import run_sft
    from distill.recipe import training_from_argv

    return run_sft(training_from_argv("sft", argv))


# validated and saved every second step
EVERY_2 = ["--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2"]


def tiny_sft_args(model, db, out, *extra) -> list[str]:
    """`distill sft` flags for a short full fine-tuning run of the tiny model on a store (`extra` last: it wins)."""
    return [
        "--model_name_or_path", str(model), "--db", str(db), "--output_dir", str(out), "--max_pixels", "3136",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--report_to", "none",
        "--disable_tqdm", "True", "--seed", "0", "--use_peft", "false", "--max_steps", "12", "--logging_steps", "2",
        *extra,
    ]  # fmt: skip


def add_to_trainers(monkeypatch, callback) -> None:
    """Every trainer `distill sft`/`dpo` builds in this test also gets `callback` (after its own)."""
    import distill.train.metrics as metrics

    console = metrics.console_callbacks

    def with_callback(trainer):
        console(trainer)
        trainer.add_callback(callback)

    monkeypatch.setattr(metrics, "console_callbacks", with_callback)


def dpo_main(argv: list[str]) -> dict:
    """`distill dpo ARGV` as the command runs it, without the CLI around it."""
    from distill.pipeline import run_dpo
    from distill.recipe import training_from_argv

    return run_dpo(training_from_argv("dpo", argv))
