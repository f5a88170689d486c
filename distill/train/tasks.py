"""Per-task loss weights for `distill sft`: the weighted sum of each task's mean loss over its own tokens.

TRL averages one loss over every completion token of a batch, so a rationale of a hundred tokens outweighs a
one-token letter a hundred to one. Distilling step-by-step weighs the tasks instead: loss = sum over the tasks in
the batch of weight x (the task's mean token loss), divided by the weights present. The batch says which example
belongs to which task (`task_ids`, added by `TaskCollator`); the loss reads TRL's fused per-token log-probs."""

from __future__ import annotations

import torch

from distill.patches import count_tokens, log_metric, per_micro_batch
from distill.train.examples import KINDS


def weighted_task_loss(
    token_loss: torch.Tensor, mask: torch.Tensor, task_ids: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`token_loss` and `mask` (batch, tokens); `task_ids` (batch,) index `weights` (tasks,). Returns the loss and
    each task's mean loss and token count (tasks absent from the batch: 0 and 0)."""
    mask = mask.to(token_loss.dtype)
    row_sum, row_n = (token_loss * mask).sum(dim=1), mask.sum(dim=1)
    sums = torch.zeros_like(weights, dtype=token_loss.dtype).index_add(0, task_ids, row_sum)
    counts = torch.zeros_like(weights, dtype=token_loss.dtype).index_add(0, task_ids, row_n)
    means = sums / counts.clamp(min=1)
    present = weights.to(token_loss.dtype) * (counts > 0)
    loss = (present * means).sum() / present.sum().clamp(min=1e-12)
    return loss, means.detach(), counts.detach()


class TaskCollator:
    """Wraps TRL's collator: the batch also carries each example's task index (`task_ids`)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples: list[dict]) -> dict:
        ids = [KINDS.index(e.get("kind") or "answer") for e in examples]
        batch = self.inner(examples)
        batch["task_ids"] = torch.tensor(ids, dtype=torch.long)
        return batch


def label_log_probs(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Each next-token label's log-probability (zero where there is none) and the label mask, both (batch,
    tokens - 1). TRL's fused head on a GPU; on the CPU the labelled positions alone through the LM head and one
    cross-entropy, some 3x faster than the fused head's tiles there (it also computes entropies); several CPU
    processes keep the fused head, through the DDP wrapper."""
    wrapped = isinstance(model, torch.nn.parallel.DistributedDataParallel)  # its forward syncs the gradients
    if wrapped or next(model.parameters()).device.type != "cpu":
        out = model(**inputs, fused_lm_head=True)
        return out.log_probs, out.label_mask
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under PEFT
    labels = inputs["labels"][:, 1:]
    hidden = base.model(**{k: v for k, v in inputs.items() if k != "labels"}).last_hidden_state[:, :-1]
    mask = labels != -100
    logits = base.lm_head(hidden[mask]).float()
    picked = -torch.nn.functional.cross_entropy(logits, labels[mask], reduction="none")
    return hidden.new_zeros(mask.shape, dtype=picked.dtype).masked_scatter(mask, picked), mask


class TaskWeightedLoss:
    """Mixed into TRL's SFTTrainer: the loss weighs each task's mean loss by the recipe's weights (`task_loss:
    task`) or is one mean over every completion token (`token`, TRL's own rule, per micro-batch), and the log shows
    each task's loss. `task_weights`: one per KINDS entry."""

    def __init__(self, *args, task_weights: tuple[float, ...] = (1.0,) * len(KINDS), task_loss: str = "token", **kw):
        self.task_weights, self.task_loss = tuple(task_weights), task_loss
        super().__init__(*args, **kw)

    def _wrap_collator(self) -> None:
        if not isinstance(self.data_collator, TaskCollator):
            self.data_collator = TaskCollator(self.data_collator)

    def get_train_dataloader(self):
        self._wrap_collator()
        return super().get_train_dataloader()

    def get_eval_dataloader(self, eval_dataset=None):
        self._wrap_collator()
        return super().get_eval_dataloader(eval_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        task_ids = inputs.pop("task_ids", None)
        if task_ids is None or return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if model.training else "eval"
        inputs["use_cache"] = False
        log_probs, mask = label_log_probs(model, inputs)
        weights = torch.tensor(self.task_weights, device=log_probs.device)
        loss, means, counts = weighted_task_loss(-log_probs, mask, task_ids, weights)
        if self.task_loss == "token":
            loss = -log_probs.sum() / mask.sum().clamp(min=1)
        for k, name in enumerate(KINDS):
            if counts[k] > 0:
                log_metric(self, mode, f"loss_{name}", float(means[k]))
        if mode == "train":
            count_tokens(self, int(inputs["attention_mask"].sum()))
        return per_micro_batch(self, loss, num_items_in_batch, model.training)
