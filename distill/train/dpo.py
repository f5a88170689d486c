"""`distill dpo`: TRL's DPOTrainer on accepted-vs-rejected rationales of the same prompt.

    distill dpo --config configs/dpo-demo.yaml [--beta 0.1 ...]
    accelerate launch -m distill.cli dpo --config configs/dpo-7b.yaml

Start from the SFT model (model_name_or_path: OUTPUT_DIR/final of `distill sft`, merged if LoRA); its image cap
comes with it. With LoRA, the reference model is the same weights with the adapter disabled; with full
fine-tuning TRL copies it."""

from __future__ import annotations

import logging

from distill.errors import UserError
from distill.train.settings import TrainingSettings

log = logging.getLogger(__name__)


def make_parser():
    from distill.train.settings import make_parser

    return make_parser("dpo")


def build_examples(store, train_items, val_items, settings: TrainingSettings):
    from distill.train.examples import ExampleOptions, dpo_pairs

    dargs = settings.distill
    built = dpo_pairs(store, train_items, ExampleOptions.of(dargs), seed=settings.trainer.seed)
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


def train_dpo(settings: TrainingSettings) -> dict:
    from trl import DPOTrainer

    from distill.train.run import run_training

    if settings.trainer.precompute_ref_log_probs:
        log.info("precompute_ref_log_probs: True -> False (not supported with images)")
        settings.trainer.precompute_ref_log_probs = False
    return run_training(settings, DPOTrainer, build_examples)
