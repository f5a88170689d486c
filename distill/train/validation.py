"""Validation accuracy by letter scoring (one forward pass per item), on the held-out split."""

from __future__ import annotations

from distill.backends.base import BackendConfig, ChatRequest
from distill.backends.transformers_backend import Model
from distill.items import Item
from distill.student import prompt_messages


def letter_accuracy(model, processor, items: list[Item], max_pixels: int, batch_size: int = 8) -> dict[str, float]:
    """Accuracy and mean gold probability of `model` (in memory, possibly a PEFT model) on labelled items."""
    import torch

    if not items:
        return {"accuracy": float("nan"), "gold_prob": float("nan")}
    scorer = Model(BackendConfig(model="<in memory>", max_pixels=max_pixels), model=model, processor=processor)
    was_training = model.training
    model.eval()
    hits, gold_p = 0, 0.0
    try:
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            with torch.no_grad():
                probs = scorer.score([ChatRequest(prompt_messages(it, "direct")) for it in batch],
                                     [it.letters for it in batch])
            for it, p in zip(batch, probs):
                hits += max(p, key=p.get) == it.gold
                gold_p += p[it.gold]
    finally:
        model.train(was_training)
    return {"accuracy": hits / len(items), "gold_prob": gold_p / len(items)}
