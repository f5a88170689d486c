"""DDP check: `distill sft` under `accelerate launch` on N GPUs with the tiny model, against a one-process run.

    python bench/ddp_check.py --gpus 2

Builds sample data, the tiny model and a store, then runs the same SFT recipe with 1 and N processes and
prints the world size each run saw, its steps and its wall time."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args(argv)
    from distill.ingest import DataConfig, ingest
    from distill.kit.sample_data import generate
    from distill.kit.tiny_model import build_tiny_model
    from store import open_store

    work = Path(tempfile.mkdtemp(prefix="ddp-"))
    data = generate(work / "data", n_train=128, n_dev=2, n_test=2)
    model = build_tiny_model(work / "model")
    ingest(
        open_store(work / "t.db"),
        DataConfig(train=[str(data / "image2text_train.json"), str(data / "text2image_train.json")]),
    )
    root = Path(__file__).resolve().parent.parent
    results = {}
    for n in (1, args.gpus):
        out = work / f"sft-{n}"
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(root / "configs/accelerate/ddp.yaml"),
            "--num_processes",
            str(n),
            "-m",
            "distill.train.sft",
            "--model_name_or_path",
            str(model),
            "--db",
            str(work / "t.db"),
            "--output_dir",
            str(out),
            "--use_peft",
            "false",
            "--reason_weight",
            "0",
            "--describe_weight",
            "0",
            "--max_pixels",
            "50176",
            "--max_steps",
            str(args.steps),
            "--per_device_train_batch_size",
            "8",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--logging_steps",
            "5",
            "--report_to",
            "none",
            "--disable_tqdm",
            "True",
            "--bf16",
            "True",
        ]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, NCCL_NVLS_ENABLE="0"))
        dt = time.perf_counter() - t0
        if res.returncode:
            print(res.stdout[-3000:], res.stderr[-6000:])
            raise SystemExit(f"{n} process(es) failed")
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        run = next(r for r in open_store(work / "t.db").train_runs() if r["output_dir"] == str(out))
        results[n] = {
            "seconds": dt,
            "world_size": json.loads(run["dataset"])["world_size"],
            "epochs_after_steps": rows[-1].get("epoch"),
            "examples_per_step": 8 * n,
            "last_loss": next(r["loss"] for r in reversed(rows) if "loss" in r),
        }
        print(n, json.dumps(results[n]), flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
