# Sourced by the opt-in suites' setup scripts (tests/vllm, tests/llamafactory), after they define `say`.

require_repo_root() {
    if [[ ! -f pyproject.toml ]] || ! grep -q '^name = "cover-distill"' pyproject.toml; then
        echo "run this from the cover-distill repo root" >&2
        exit 2
    fi
}

# make_venv DIR: reuse the venv at DIR or create it with $PYTHON (default: python3.11, else python3);
# sets PY and PIP for the caller.
make_venv() {
    local venv="$1" cand
    if [[ -x "$venv/bin/python" ]]; then
        say "reusing venv $venv ($("$venv/bin/python" -V))"
    else
        if [[ -z "${PYTHON:-}" ]]; then
            for cand in python3.11 python3; do
                if command -v "$cand" >/dev/null 2>&1; then PYTHON="$cand"; break; fi
            done
        fi
        say "creating venv $venv with $PYTHON ($("$PYTHON" -V))"
        "$PYTHON" -m venv "$venv"
    fi
    PY="$venv/bin/python"
    PIP=("$PY" -m pip --disable-pip-version-check)
}
