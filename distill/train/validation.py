"""Validation accuracy by letter scoring (one forward pass per item) on the held-out split, at every evaluation.

This extends the trainer's `evaluate` rather than using `compute_metrics`: the score is the next-token letter
distribution after the prompt alone, over items rather than training examples, and TRL's fused LM head builds no
logits for `compute_metrics` (it recomputes them in an extra pass, deprecated since TRL 1.x)."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.backends.base import ChatRequest
from distill.backends.captions import caption_requests
from distill.backends.config import BackendConfig
from distill.backends.transformers_backend import Model
from distill.data.items import Item
from distill.data.student import prompt_messages


def own_captions(scorer: Model, items: list[Item], batch_size: int) -> dict[str, str]:
    """Every cover of `items` -> the model's own caption of it (greedy), for a describe-then-answer student."""
    covers, requests = caption_requests(items)
    texts = [r.text for k in range(0, len(requests), batch_size) for r in scorer.generate(requests[k : k + batch_size])]
    return dict(zip(covers, texts))


def letter_accuracy(
    model,
    processor,
    items: list[Item],
    max_pixels: int,
    batch_size: int = 8,
    layout: str = "system",
    captions: bool = False,
) -> dict[str, float]:
    """Accuracy and mean gold probability of `model` (in memory, possibly a PEFT model) on labelled items;
    `captions`: the model captions the covers first and answers with its captions in the prompt."""
    import torch

    if not items:
        return {"accuracy": float("nan"), "gold_prob": float("nan")}
    scorer = Model(BackendConfig(model="<in memory>", max_pixels=max_pixels), model=model, processor=processor)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            caps = own_captions(scorer, items, batch_size) if captions else None
            probs = scorer.score_sorted(
                [ChatRequest(prompt_messages(it, "direct", layout=layout, captions=caps)) for it in items],
                [it.letters for it in items],
                batch_size,
            )
    finally:
        model.train(was_training)
    hits = sum(max(p, key=p.get) == it.gold for it, p in zip(items, probs))
    return {"accuracy": hits / len(items), "gold_prob": sum(p[it.gold] for it, p in zip(items, probs)) / len(items)}


@dataclass
class Validation:
    """What every evaluation scores: the held-out items, at the run's image cap, in its prompt layout, with the
    student's own captions first for a describe-then-answer run."""

    items: list[Item] = field(default_factory=list)
    max_pixels: int | None = None
    layout: str = "llamafactory"
    captions: bool = False


class ScoredEvaluation:
    """Mixed into a TRL trainer: every evaluation also scores the validation items by letter probability,
    so `metric_for_best_model="accuracy"` keeps the best checkpoint and early stopping can watch it."""

    def __init__(self, *args, validation: Validation | None = None, **kwargs):
        self.validation = validation or Validation()  # before the Trainer's own checks, which read it
        super().__init__(*args, **kwargs)

    @property
    def val_items(self) -> list[Item]:
        return self.validation.items

    def scored_metrics(self, prefix: str = "eval") -> dict:
        v = self.validation
        scores = letter_accuracy(
            self.model,
            self.processing_class,
            v.items,
            v.max_pixels,
            self.args.per_device_eval_batch_size,
            v.layout,
            v.captions,
        )
        return {f"{prefix}_accuracy": scores["accuracy"], f"{prefix}_gold_prob": scores["gold_prob"]}

    def evaluation_loop(self, *args, metric_key_prefix: str = "eval", **kwargs):
        # Added here, inside the loop, so that the trainer's log and its `on_evaluate` callbacks (early stopping,
        # best checkpoint) see the score: metrics added after `evaluate` returns reach neither.
        output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        if self.val_items and metric_key_prefix == "eval":
            output.metrics.update(self.scored_metrics(metric_key_prefix))
        return output

    def evaluate(self, *args, **kwargs):
        if self.eval_dataset is not None or not self.val_items:
            return super().evaluate(*args, **kwargs)
        metrics = self.scored_metrics()  # validation items but no loss examples: the score alone
        training = self.model.training
        self.model.eval()  # TRL's `log` files a call made in training mode under the training metrics
        try:
            self.log(dict(metrics))
        finally:
            self.model.train(training)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
