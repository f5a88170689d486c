"""`distill sft`: TRL's SFTTrainer on accepted teacher rationales (and direct answers), LoRA or full.

    distill sft --config configs/sft-demo.yaml [--learning_rate 2e-4 --max_steps 50 ...]

The recipe's keys are the fields of DistillArguments, trl.SFTConfig and trl.ModelConfig; flags override."""

from __future__ import annotations

import sys


def make_parser():
    from trl import SFTConfig

    from distill.train.arguments import training_parser

    return training_parser(SFTConfig)


def build(store, train_items, val_items, dargs, training_args):
    from distill.train.examples import ExampleOptions, sft_examples

    opts = ExampleOptions(
        direct_share=dargs.direct_share,
        rationales=dargs.rationales,
        include_hinted=dargs.include_hinted,
        templates=dargs.templates,
        curriculum=dargs.curriculum,
        teacher_run=dargs.teacher_run,
        layout=dargs.layout,
        seed=training_args.seed,
    )
    built = sft_examples(store, train_items, opts)
    if not built.examples:
        raise ValueError(f"no SFT examples in {dargs.db}: run `distill graph` first, or set direct_share >= 1")
    counts = {
        "examples": len(built.examples),
        "rationale": sum(e["kind"] == "rationale" for e in built.examples),
        "direct": sum(e["kind"] == "direct" for e in built.examples),
        "skipped": dict(built.skipped),
    }
    # eval loss on the validation items' direct answers; accuracy comes from letter scoring
    val = sft_examples(
        store, val_items, ExampleOptions(direct_share=1.0, templates=False, layout=dargs.layout)
    ).examples
    return built.examples, val, counts


def train_sft(dargs, training_args, margs) -> dict:
    from trl import SFTTrainer

    from distill.train.run import run_training

    return run_training("sft", SFTTrainer, build, dargs, training_args, margs)


def main(argv: list[str] | None = None) -> dict:
    from distill.train.run import device_flags

    argv = device_flags(argv if argv is not None else sys.argv[1:])
    return train_sft(*make_parser().parse_args_and_config(argv))


if __name__ == "__main__":
    main()
