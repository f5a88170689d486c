"""Per-task loss weights for `distill sft`: the weighted sum of each task's mean loss over its own tokens.

TRL averages one loss over every completion token of a batch, so a rationale of a hundred tokens outweighs a
one-token letter a hundred to one. Distilling step-by-step weighs the tasks instead: loss = sum over the tasks in
the batch of weight x (the task's mean token loss), divided by the weights present. The batch says which example
belongs to which task (`task_ids`, added by `TaskCollator`); the loss reads TRL's fused per-token log-probs."""

from __future__ import annotations

import torch

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
    cross-entropy, some 3x faster than the fused head's tiles there (it also computes entropies)."""
    if next(model.parameters()).device.type != "cpu":
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
    each task's loss. `task_weights` (one per KINDS entry) and `task_loss` are set on the class before it is
    built."""

    task_weights: tuple[float, ...] = (1.0,) * len(KINDS)
    task_loss: str = "token"

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
                self._metrics[mode][f"loss_{name}"].append(float(means[k]))
        if mode == "train":
            self._total_train_tokens += int(inputs["attention_mask"].sum())
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        # The Trainer leaves gradient accumulation to a loss it passed the batch's token count to (it takes that loss
        # for a sum over the accumulated batch); this one is a per-micro-batch mean, so it is averaged here.
        scaled = getattr(self, "loss_is_scaled_for_ga", None)
        if scaled is None:
            scaled = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        if scaled and model.training:
            loss = loss / self.current_gradient_accumulation_steps
        return loss
