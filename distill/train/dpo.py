"""`distill dpo`: TRL's DPOTrainer on accepted-vs-rejected rationales of the same prompt.

    distill dpo --config configs/dpo-demo.yaml [--beta 0.1 ...]

Start from the SFT model (model_name_or_path: OUTPUT_DIR/final of `distill sft`, merged if LoRA). With LoRA,
the reference model is the same weights with the adapter disabled; with full fine-tuning TRL copies it."""

from __future__ import annotations

import sys

from distill.errors import UserError


def make_parser():
    from trl import DPOConfig

    from distill.train.arguments import training_parser

    return training_parser(DPOConfig)


def build(store, train_items, val_items, dargs, training_args):
    from distill.train.examples import ExampleOptions, dpo_pairs

    built = dpo_pairs(store, train_items, ExampleOptions.of(dargs), seed=training_args.seed)
    if not built.examples:
        raise UserError(
            f"no DPO pairs in {dargs.db}: items need both an accepted and a wrong-answer rationale "
            f"(skipped: {dict(built.skipped)})"
        )
    counts = {
        "pairs": len(built.examples),
        "items": len({e["item_key"] for e in built.examples}),
        "skipped_items": dict(built.skipped),
    }
    # held-out covers have no teacher captions: a captioned run is validated by letter scoring alone
    return built.examples, [] if dargs.captions else letter_pairs(val_items, dargs.layout), counts


def letter_pairs(items, layout):
    """Evaluation pairs for held-out items, which never have teacher traces: the gold letter chosen over the
    next wrong one, as direct answers (DPO's eval loss and reward accuracy on them)."""
    from distill.data.student import completion, prompt_messages

    pairs = []
    for it in items:
        if not it.gold:
            continue
        wrong = it.letters[(it.letters.index(it.gold) + 1) % len(it.letters)]
        pairs.append(
            {
                "id": f"{it.key}:v",
                "item_key": it.key,
                "task": it.task,
                "messages": prompt_messages(it, layout=layout),
                "images": it.images,
                "chosen": completion(it.gold),
                "rejected": completion(wrong),
                "template": 0,
                "difficulty": 0.0,
            }
        )
    return pairs or None


def train_dpo(dargs, training_args, margs) -> dict:
    from trl import DPOTrainer

    from distill.train.run import run_training

    training_args.precompute_ref_log_probs = False  # not supported with images
    return run_training("dpo", DPOTrainer, build, dargs, training_args, margs)


def main(argv: list[str] | None = None) -> dict:
    from distill.train.run import device_flags

    argv = device_flags(argv if argv is not None else sys.argv[1:])
    return train_dpo(*make_parser().parse_args_and_config(argv))


if __name__ == "__main__":
    main()
