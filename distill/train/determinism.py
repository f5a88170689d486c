"""`full_determinism: true` makes a training run repeat on the same card (transformers' deterministic kernels) and
stays that run's setting. transformers also sets CUDA_LAUNCH_BLOCKING=1, which serialises every kernel launch
without changing a result and would reach every process started after it (a vLLM engine among them), and it leaves
deterministic mode on for whatever the process does next (the demo's DPO and predictions). So the CUDA runtime is
started before transformers sets the variable (the runtime reads it when it starts), and the process's settings
come back when the run ends."""

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
        torch.cuda.init()
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
