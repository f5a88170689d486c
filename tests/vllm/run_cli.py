"""Run several `distill` commands in one process (one vLLM engine for all of them):
python tests/vllm/run_cli.py predict ... --- predict ..."""

import sys

from distill.cli import main


def run(argv: list[str]) -> None:
    sys.argv = ["distill", *argv]
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise


if __name__ == "__main__":
    args = sys.argv[1:]
    while args:
        cut = args.index("---") if "---" in args else len(args)
        run(args[:cut])
        args = args[cut + 1 :]
