import torch

from distill.train.examples import KINDS
from distill.train.tasks import TaskCollator, weighted_task_loss


def test_each_task_is_averaged_over_its_own_tokens_then_weighted():
    # row 0: answer, one token of loss 2; rows 1-2: reason, 10 + 4 tokens of loss 1 and 3
    token_loss = torch.zeros(3, 10)
    mask = torch.zeros(3, 10, dtype=torch.bool)
    token_loss[0, 0], mask[0, 0] = 2.0, True
    token_loss[1, :], mask[1, :] = 1.0, True
    token_loss[2, :4], mask[2, :4] = 3.0, True
    token_loss[2, 4:] = 99.0  # ignored positions never count
    task_ids = torch.tensor([KINDS.index("answer"), KINDS.index("reason"), KINDS.index("reason")])
    weights = torch.tensor([1.0, 0.5, 0.5])
    loss, means, counts = weighted_task_loss(token_loss, mask, task_ids, weights)
    reason_mean = (10 * 1.0 + 4 * 3.0) / 14
    assert torch.isclose(means[0], torch.tensor(2.0)) and torch.isclose(means[1], torch.tensor(reason_mean))
    assert counts.tolist() == [1, 14, 0]
    # describe is absent from the batch: only the weights present share the loss
    assert torch.isclose(loss, torch.tensor((1.0 * 2.0 + 0.5 * reason_mean) / 1.5))
    # TRL's token mean would let the rationale's 14 tokens drown the letter
    token_mean = token_loss[mask].mean()
    assert not torch.isclose(loss, token_mean)


def test_gradients_follow_the_weights():
    logits = torch.zeros(2, 3, requires_grad=True)
    token_loss = logits.clone()
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss, _, _ = weighted_task_loss(token_loss, mask, torch.tensor([0, 2]), torch.tensor([3.0, 0.0, 1.0]))
    loss.backward()
    assert torch.allclose(logits.grad[0], torch.full((3,), 0.75 / 3)) and torch.allclose(
        logits.grad[1], torch.full((3,), 0.25 / 3)
    )


def test_collator_adds_each_examples_task():
    seen = []
    collate = TaskCollator(lambda examples: seen.append(len(examples)) or {"input_ids": torch.zeros(len(examples), 2)})
    batch = collate([{"kind": "describe"}, {"kind": "answer"}, {}])
    assert batch["task_ids"].tolist() == [KINDS.index("describe"), KINDS.index("answer"), KINDS.index("answer")]
    assert seen == [3]


def test_cpu_label_log_probs_equal_trls_fused_head(tiny_model_dir):
    from transformers import AutoModelForImageTextToText
    from trl.trainer.utils import add_fused_lm_head

    from distill.train.tasks import label_log_probs

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    ids = torch.randint(0, 150_000, (3, 12))
    labels = ids.clone()
    labels[:, :7] = -100
    labels[2, 10:] = -100  # a shorter completion
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    ours, mask = label_log_probs(model, dict(inputs))
    add_fused_lm_head(model, outputs=("log_probs",))
    theirs = model(**inputs, fused_lm_head=True)
    assert torch.equal(mask, theirs.label_mask) and int(mask.sum()) == 3 * 5 - 2
    assert torch.allclose(ours, theirs.log_probs, atol=1e-4)
