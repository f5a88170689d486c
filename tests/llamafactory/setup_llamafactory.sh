#!/usr/bin/env bash
# Build a CPU venv with LLaMA-Factory 0.9.5 (the trainer/inference stack that MAC benchmark users run),
# so cover-distill's LLaMA-Factory export and prompt building can be checked against the real thing.
#
#   bash tests/llamafactory/setup_llamafactory.sh [VENV]     # from the repo root; VENV defaults to .venv-lf
#
# Idempotent: re-running reuses the venv; pip only installs what is missing or wrong.
# Why the pins:
#   * llamafactory==0.9.5 (PyPI) pins transformers>=4.55,<=5.6.0 (!=4.57.0), trl>=0.18,<=0.24.0,
#     peft>=0.18,<=0.18.1, datasets>=2.16,<=4.0.0, accelerate>=1.3,<=1.11.0, torchdata<=0.11.0,
#     and needs torch>=2.4, torchvision>=0.19, torchaudio>=2.4 (mm_plugin.py imports torchaudio at
#     module level, so it must import).  None of that fits the dev venv (transformers 5.20, trl 1.16).
#   * torch==2.14.1 + torchvision==0.29.1: both come from this machine kind's local disk (pip's
#     extra index /opt/pypi-more); torchvision 0.29.1 imports cleanly beside it (the PyPI torchvision
#     beside /opt/wheels' torch 2.13.0+cpu fails with "operator torchvision::nms does not exist").
#     torch 2.14.1 is the +cu130 build (pulls the nvidia-* / cuda-toolkit wheels from local disk);
#     it runs on CPU.
#   * torchaudio: PyPI's newest is 2.11.0; its wheel declares no torch requirement and its abi3
#     libraries load beside torch 2.14.1, so `import torchaudio` works.
set -euo pipefail

VENV="${1:-.venv-lf}"
PYTHON="${PYTHON:-}"
LF_VERSION="${LF_VERSION:-0.9.5}"
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"

say() { printf '\n[setup_llamafactory] %s\n' "$*"; }
t0=$(date +%s)

source "$(dirname "${BASH_SOURCE[0]}")/../venv_bootstrap.sh"
require_repo_root

# 1. The venv (Python 3.11: llamafactory 0.9.5 requires >=3.11).
make_venv "$VENV"

# 2. Pin torch/torchvision for the whole install so no later step swaps them for other builds.
CONSTRAINTS="$VENV/lf-constraints.txt"
cat > "$CONSTRAINTS" <<EOF
torch==$TORCH_VERSION
torchvision==$TORCHVISION_VERSION
EOF

say "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
"${PIP[@]}" install -c "$CONSTRAINTS" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

# 3. LLaMA-Factory with its own pins (transformers, trl, peft, datasets, accelerate, torchaudio, ...).
say "installing llamafactory==$LF_VERSION"
"${PIP[@]}" install -c "$CONSTRAINTS" "llamafactory==$LF_VERSION"

# 4. Check: the stack imports, torchvision's ops are registered, the CLI runs.
say "checking the install"
"$PY" - <<'EOF'
import importlib.metadata as md
import torch, torchvision, torchaudio  # noqa: F401  (mm_plugin imports torchaudio)
from torchvision.ops import nms
nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # fails if torchvision::nms is not registered
import llamafactory.data.mm_plugin  # noqa: F401
import llamafactory.train.tuner  # noqa: F401
for name in ("llamafactory", "transformers", "trl", "peft", "accelerate", "datasets",
             "torch", "torchvision", "torchaudio", "tokenizers"):
    print(f"{name}=={md.version(name)}")
EOF
"$VENV/bin/llamafactory-cli" version >/dev/null
"${PIP[@]}" check || true   # informational only

say "done in $(( $(date +%s) - t0 ))s: $VENV"
