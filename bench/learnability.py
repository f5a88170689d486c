"""Does a short `distill sft` of the tiny model learn the sample covers? Validation accuracy before and after.

The path a user runs: seeded sample data -> the store (train / validation split) -> TRL's SFTTrainer through
`distill.train.sft` (full fine-tuning on direct answers) -> letter-scored validation accuracy at every
evaluation. The tiny model starts at init std `--init-range`; at HF's 0.02 it sits on the chance plateau
for thousands of steps.

    python -m bench.learnability --steps 3000 --out bench/results/learnability.json   # on a GPU: minutes
    python -m bench.learnability --steps 4 --n-train 16 --eval-steps 2                # smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="image2text,text2image")
    p.add_argument("--n-train", type=int, default=2000, help="sample items per task (10%% become validation)")
    p.add_argument("--init-range", type=float, default=0.2)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-steps", type=int, default=250)
    p.add_argument("--max-pixels", type=int, default=12544)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None)
    p.add_argument("--out", default=None)
    return p


def accuracy_by_task(model_dir: Path, items, max_pixels: int) -> dict[str, float]:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from distill.train.validation import letter_accuracy

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    processor = AutoProcessor.from_pretrained(model_dir)
    out = {}
    for task in sorted({it.task for it in items}):
        subset = [it for it in items if it.task == task]
        out[task] = letter_accuracy(model, processor, subset, max_pixels, batch_size=32)["accuracy"]
    out["all"] = sum(out[t] * sum(it.task == t for it in items) for t in out) / len(items)
    return out


def main(argv=None) -> dict:
    import torch

    from distill.ingest import DataConfig, ingest
    from distill.kit.sample_data import generate
    from distill.kit.tiny_model import build_tiny_model
    from distill.train.sft import main as sft_main
    from store import open_store

    args = make_parser().parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="learnability-"))
    tasks = args.tasks.split(",")
    data = generate(work / "data", n_train=args.n_train, n_dev=2, n_test=2, seed=args.seed)
    model_dir = build_tiny_model(
        work / "model", seed=args.seed, max_pixels=args.max_pixels, text={"initializer_range": args.init_range}
    )
    db = work / "traces.db"
    store = open_store(db)
    ingest(
        store,
        DataConfig(
            train=[str(data / f"{t}_train.json") for t in tasks],
            validation_fraction=0.1,
            seed=args.seed,
            max_pixels=args.max_pixels,
        ),
    )
    val = store.items(split="val")
    store.close()
    before = accuracy_by_task(model_dir, val, args.max_pixels)
    print("untrained:", before, flush=True)
    out_dir = work / "sft"
    t0 = time.perf_counter()
    on_gpu = torch.cuda.is_available()
    sft_main(
        [
            "--model_name_or_path",
            str(model_dir),
            "--db",
            str(db),
            "--output_dir",
            str(out_dir),
            "--use_peft",
            "false",
            "--reason_weight",
            "0",
            "--describe_weight",
            "0",
            "--templates",
            "false",
            "--max_pixels",
            str(args.max_pixels),
            "--learning_rate",
            str(args.lr),
            "--lr_scheduler_type",
            "constant_with_warmup",
            "--warmup_steps",
            "20",
            "--max_steps",
            str(args.steps),
            "--per_device_train_batch_size",
            str(args.batch),
            "--per_device_eval_batch_size",
            "32",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            str(args.eval_steps),
            "--save_strategy",
            "steps",
            "--save_steps",
            str(args.eval_steps),
            "--save_total_limit",
            "1",
            "--val_max_items",
            str(len(val)),
            "--logging_steps",
            "50",
            "--report_to",
            "none",
            "--disable_tqdm",
            "True",
            "--seed",
            str(args.seed),
            "--dataloader_num_workers",
            str(args.workers if on_gpu else 0),
            "--bf16",
            "False",
        ]
    )
    seconds = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]
    after = accuracy_by_task(out_dir / "final", val, args.max_pixels)
    res = {
        "device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
        "args": vars(args),
        "val_items": {t: sum(it.task == t for it in val) for t in tasks},
        "untrained": before,
        "trained_best": after,
        "curve": curve,
        "train_seconds": seconds,
    }
    print(json.dumps(res), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
