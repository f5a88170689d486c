"""What a student trained on the sample covers says in its own words, scored against the generator's truth:
does its caption of a held-out cover name the cover's colour and shape, and does its own rationale end on the
letter its letter scoring picks? Valid only on the sample covers (`covers.json` holds their motifs)."""

from __future__ import annotations

import json
from pathlib import Path


def grounding(
    model_dir: str | Path, data_dir: str | Path, letters: dict[str, str], items: list, max_pixels: int
) -> dict:
    """`items`: held-out items whose covers are captioned and which are reasoned about; `letters`: item id ->
    the letter the student's letter scoring chose (a details file's `letter`)."""
    from distill.backends.base import ChatRequest
    from distill.backends.captions import caption_requests
    from distill.backends.config import BackendConfig
    from distill.backends.transformers_backend import Model
    from distill.data.student import CAPTION_TOKENS, parse_completion, prompt_messages
    from distill.data.student_card import StudentCard, read_card
    from distill.kit.sample_teacher.reasoning import motif_in_text

    data_dir = Path(data_dir)
    truth = json.loads((data_dir / "covers.json").read_text())
    card = read_card(model_dir) or StudentCard()
    layout, captioned = card.layout, card.captions  # a captioned student reasons with its own captions in view
    model = Model(BackendConfig(model=str(model_dir), max_pixels=max_pixels, dtype="float32"))
    # a captioned student's prompts get what predict would give them; otherwise the first covers, briefly
    covers, requests = caption_requests(items, CAPTION_TOKENS if captioned else 32)
    if not captioned:
        covers, requests = covers[: len(items)], requests[: len(items)]
    captions = [r.text for r in model.generate(requests)]
    caps = dict(zip(covers, captions)) if captioned else None
    covers, captions = covers[: len(items)], captions[: len(items)]  # the covers scored
    named = [motif_in_text(c) for c in captions]
    true = [truth[Path(p).resolve().relative_to(data_dir.resolve()).as_posix()] for p in covers]
    cot = model.generate(
        [ChatRequest(prompt_messages(it, "cot", layout=layout, captions=caps), max_tokens=72) for it in items]
    )
    said = [parse_completion(r.text, it.letters) for r, it in zip(cot, items)]
    return {
        "caption_colour": sum(n.colour == t["colour"] for n, t in zip(named, true)) / len(covers),
        "caption_shape": sum(n.shape == t["shape"] for n, t in zip(named, true)) / len(covers),
        "rationale_correct": sum(s == it.gold for s, it in zip(said, items) if it.gold)
        / max(1, sum(1 for it in items if it.gold)),
        "rationale_agrees": sum(s == letters.get(it.id) for s, it in zip(said, items)) / len(items),
        "examples": {"caption": captions[0], "rationale": cot[0].text},
    }


def scored_letters(answers_dir: str | Path) -> dict[str, str]:
    """Item id -> letter, from the details files `distill predict` wrote."""
    out = {}
    for path in sorted(Path(answers_dir).glob("*_details.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            out[row["id"]] = row["letter"]
    return out
