"""`full_determinism: true` makes a training run repeat on the same card (transformers' deterministic kernels) and
stays that run's setting. transformers also sets CUDA_LAUNCH_BLOCKING=1, which waits for every kernel launch
without changing a result and takes effect in a process whose CUDA context is made after it is set: any process
started after the run (a vLLM engine among them), and this one if nothing had touched the GPU yet. And it leaves
deterministic mode on for whatever the process does next (the demo's DPO and predictions). So this process's
context is made on the run's card first (TrainingArguments' device setup has usually made it already), and the
variables and modes come back as they were when the run ends. (torch reads CUBLAS_WORKSPACE_CONFIG once a process:
later stages keep the workspace of the first cuBLAS call; that changes speed, not results.)"""

from __future__ import annotations

import os
from contextlib import contextmanager

VARIABLES = (
    "CUDA_LAUNCH_BLOCKING",
    "CUBLAS_WORKSPACE_CONFIG",
    "FLASH_ATTENTION_DETERMINISTIC",
    "ASCEND_LAUNCH_BLOCKING",
    "HCCL_DETERMINISTIC",
)


@contextmanager
def determinism_of_this_run(args):
    if not args.full_determinism:
        yield
        return
    import torch

    if torch.cuda.is_available() and not args.use_cpu:
        torch.zeros(1, device=args.device)  # a real allocation: the context exists on this rank's card
    env = {k: os.environ.get(k) for k in VARIABLES}
    mode = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        torch.use_deterministic_algorithms(mode[0], warn_only=mode[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
