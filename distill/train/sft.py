"""`distill sft`: TRL's SFTTrainer on the agents' outputs (letters and rationales by default; captions with
`describe_weight`), LoRA or full.

    distill sft --config configs/sft-demo.yaml [--learning_rate 2e-4 --max_steps 50 ...]
    accelerate launch -m distill.cli sft --config configs/sft-7b.yaml

The recipe's keys are the fields of DistillArguments, trl.SFTConfig and trl.ModelConfig (and `pipeline:`, the
pipeline recipe whose store and workdir it uses); flags override them."""

from __future__ import annotations

from distill.errors import UserError
from distill.train.settings import TrainingSettings

WHAT_TASKS_NEED = {
    "answer": "training items with a gold letter",
    "reason": "accepted rationales",
    "describe": "captions of training covers",
}


def make_parser():
    from distill.train.settings import make_parser

    return make_parser("sft")


def build_examples(store, train_items, val_items, settings: TrainingSettings):
    from distill.train.examples import ExampleOptions, sft_examples

    d = settings.distill
    opts = ExampleOptions.of(d)
    if opts.captions and opts.describe_weight <= 0:
        raise UserError(
            "captions: true has the student caption the covers itself at validation and prediction: train the "
            "describe task too (describe_weight > 0)"
        )
    built = sft_examples(store, train_items, opts, seed=settings.trainer.seed)
    require_every_task(built.counts(), opts, d.db)
    counts = {"examples": len(built.examples), **built.counts(), "skipped": dict(built.skipped)}
    # eval loss on the validation items' answers; accuracy comes from letter scoring
    val_opts = ExampleOptions(reason_weight=0, describe_weight=0, templates=False, layout=d.layout, captions=d.captions)
    return built.examples, sft_examples(store, val_items, val_opts).examples, counts


def require_every_task(counts: dict[str, int], opts, db) -> None:
    """A task the recipe trains must have examples: otherwise the run would train silently as another recipe (a
    store whose teacher failed every item trains letters alone under a rationale recipe's name)."""
    for task, weight in opts.weights().items():
        if weight > 0 and not counts.get(task):
            raise UserError(
                f"0 {WHAT_TASKS_NEED[task]} in {db} for the {task} task ({task}_weight: {weight}): run `distill "
                f"graph` first (and check that its items did not fail), or set {task}_weight: 0"
            )


def train_sft(settings: TrainingSettings) -> dict:
    from trl import SFTTrainer

    from distill.train.run import run_training

    return run_training(settings, SFTTrainer, build_examples)
