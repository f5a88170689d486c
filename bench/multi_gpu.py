"""Training on several GPUs: FSDP (configs/accelerate/fsdp.yaml) against DDP (configs/accelerate/ddp.yaml),
LoRA and full fine-tuning of the 7B architecture at random weights, through `bench.train_throughput` under
`accelerate launch`. Prints tokens/s per GPU and peak memory per GPU for each run; a run that fails or runs
out of memory is reported with the end of its output.

    python -m bench.multi_gpu --gpus 2 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ["fsdp:ckpt", "ddp:ckpt", "fsdp:ckpt-full", "ddp:ckpt-full"]


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--runs", default=",".join(RUNS), help="comma-separated strategy:variant pairs")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=4, help="examples per GPU a step (image2text)")
    p.add_argument("--timeout", type=int, default=300, help="seconds per run")
    p.add_argument("--model", choices=["7b", "tiny"], default="7b")
    p.add_argument("--cpu", action="store_true", help="smoke run: processes on the CPU (gloo), tiny model")
    p.add_argument("--out", default=None)
    return p


def main(argv=None) -> dict:
    args = make_parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="multi-gpu-"))
    env = dict(
        os.environ,
        NCCL_NVLS_ENABLE="0",
        TORCH_SYMM_MEM_DISABLE_MULTICAST="1",
        NVSHMEM_DISABLE_NVLS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    results = {"gpus": args.gpus, "batch_per_gpu": args.batch, "runs": {}}
    for run in args.runs.split(","):
        strategy, variant = run.split(":")
        out = work / f"{strategy}-{variant}.json"
        launch = ["--cpu"] if args.cpu else ["--config_file", str(ROOT / f"configs/accelerate/{strategy}.yaml")]
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            *launch,
            "--num_processes",
            str(args.gpus),
            "-m",
            "bench.train_throughput",
            "--model",
            args.model,
            "--device",
            "cpu" if args.cpu else "cuda",
            "--variants",
            variant,
            "--tasks",
            "image2text",
            "--skip-dpo",
            "--batch-i2t",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--out",
            str(out),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout, cwd=ROOT)
            rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-2500:]
        except subprocess.TimeoutExpired as e:
            rc, tail = "timeout", str(e.stdout or "")[-1500:] + str(e.stderr or "")[-1500:]
        r = {"rc": rc}
        if out.exists():
            measured = json.loads(out.read_text())
            r.update(measured["tasks"]["image2text"][variant])
            r["device"] = measured["device"]
        if rc != 0 or "tokens_per_s" not in r:
            r["output_tail"] = tail
        results["runs"][run] = r
        print(json.dumps({run: r}, indent=1), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\n{'run':<20} {'tok/s/GPU':>9} {'peak GB/GPU':>11}")
    for run, r in results["runs"].items():
        print(
            f"{run:<20} {r.get('tokens_per_s_per_gpu', 0):>9.0f} {r.get('peak_gb') or 0:>11.1f} "
            f"{r.get('error', '') or ('' if r['rc'] == 0 else 'failed')}"
        )
    return results


if __name__ == "__main__":
    main()
