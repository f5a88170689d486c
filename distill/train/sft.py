"""`distill sft`: TRL's SFTTrainer on the agents' outputs (letters and rationales by default; captions with
`describe_weight`), LoRA or full.

    distill sft --config configs/sft-demo.yaml [--learning_rate 2e-4 --max_steps 50 ...]

The recipe's keys are the fields of DistillArguments, trl.SFTConfig and trl.ModelConfig; flags override."""

from __future__ import annotations

import sys

from distill.errors import UserError


def make_parser():
    from trl import SFTConfig

    from distill.train.arguments import training_parser

    return training_parser(SFTConfig)


def build(store, train_items, val_items, dargs, training_args):
    from distill.train.examples import ExampleOptions, sft_examples

    opts = ExampleOptions.of(dargs)
    if opts.captions and opts.describe_weight <= 0:
        raise UserError(
            "captions: true has the student caption the covers itself at validation and prediction: train the "
            "describe task too (describe_weight > 0)"
        )
    built = sft_examples(store, train_items, opts, seed=training_args.seed)
    if not built.examples:
        raise UserError(
            f"no SFT examples in {dargs.db} (tasks {opts.weights()}, skipped {dict(built.skipped)}): run "
            "`distill graph` first, or train the answer task (answer_weight > 0)"
        )
    counts = {"examples": len(built.examples), **built.counts(), "skipped": dict(built.skipped)}
    # eval loss on the validation items' answers; accuracy comes from letter scoring
    val_opts = ExampleOptions(
        reason_weight=0, describe_weight=0, templates=False, layout=dargs.layout, captions=dargs.captions
    )
    return built.examples, sft_examples(store, val_items, val_opts).examples, counts


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
