"""Reordering an item's options with the gold letter remapped (image2text: the stories;
text2image: the images). Used by the critic's consistency check, augmentation and debiased scoring."""

from __future__ import annotations

from distill.data.items import LETTERS, Item, Option
from distill.data.options import replace_spans


def permute(item: Item, order: list[int], new_id: str | None = None) -> Item:
    """The item whose k-th option is the original option `order[k]`."""
    n = len(item.options)
    if sorted(order) != list(range(n)):
        raise ValueError(f"item {item.id}: {order} is not a permutation of {n} options")
    old = item.options
    if item.task == "image2text":
        if any(o.span is None for o in old):
            raise ValueError(f"item {item.id}: option spans unknown, cannot rewrite the question")
        text = replace_spans(item.input, [o.span for o in old], [old[j].text for j in order])
        # recompute spans: each option's text length may change
        options, shift = [], 0
        for k, o in enumerate(old):
            start = o.span[0] + shift
            new_text = old[order[k]].text
            options.append(Option(letter=o.letter, text=new_text, span=(start, start + len(new_text))))
            shift += len(new_text) - (o.span[1] - o.span[0])
        images = list(item.images)
    else:
        text = item.input
        # each option holds one placeholder, in order (a cover shown twice is still two placeholders)
        positions = list(range(n)) if len(item.images) == n else [item.images.index(o.image) for o in old]
        images = list(item.images)
        for k, pos in enumerate(positions):
            images[pos] = old[order[k]].image
        options = [
            Option(letter=o.letter, text=o.text, image=old[order[k]].image, span=o.span) for k, o in enumerate(old)
        ]
    gold = None
    if item.gold:
        gold = LETTERS[order.index(LETTERS.index(item.gold))]
    return item.model_copy(
        update={"id": new_id or item.id, "input": text, "options": options, "images": images, "gold": gold}
    )


def rotation(n: int, k: int) -> list[int]:
    """The k-th cyclic rotation of n options: option i moves to position (i + k) mod n."""
    return [(j - k) % n for j in range(n)]
