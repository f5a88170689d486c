"""A seeded generator of MAC-format sample data: covers drawn with PIL from a vocabulary of visual
motifs, and cover stories that explain the science those motifs stand for.

Each cover is (colour, shape, layout). Its story names the motifs as a cover text would ("crimson
hexagons tiled in a lattice") and ties them to a scientific idea, so a model that reads the motifs
can beat chance. Distractors are hard: they share the shape, the layout or both with the gold, never its
colour, so the task is learnable by design (colour decides) yet a shallow reader is misled.

Held-out items (dev, test) take their own motifs from a pool that no training item uses, as gold or as
distractor: no dev/test cover or story is reachable from training data (what `distill audit` checks).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from distill.data.items import LETTERS
from distill.data.loaders import DEFAULT_SYSTEM
from distill.data.options import render_options

COLOURS = {
    "crimson": ((200, 30, 45), "heat flowing through the material"),
    "cobalt": ((30, 70, 200), "water moving through confined channels"),
    "emerald": ((20, 160, 90), "photosynthetic energy capture"),
    "amber": ((235, 170, 20), "light emitted by excited electrons"),
    "violet": ((130, 50, 180), "quantum coherence at low temperature"),
    "white": ((245, 245, 245), "a pristine, defect-free surface"),
}
SHAPES = {
    "circle": "cells and vesicles",
    "triangle": "crystal facets",
    "square": "engineered pixels of a metamaterial",
    "hexagon": "a two-dimensional carbon lattice",
    "diamond": "point defects in a gemstone",
}
LAYOUTS = {
    "lattice": ("tiled in a regular lattice", "long-range order"),
    "ring": ("arranged in a ring", "self-assembly into closed loops"),
    "scatter": ("scattered at random", "diffusion and disorder"),
    "single": ("as one large central figure", "a single molecule studied in isolation"),
    "stripe": ("in parallel rows", "layered growth, one sheet at a time"),
}
BACKGROUNDS = [(12, 18, 40), (28, 28, 28), (235, 235, 225), (60, 20, 30)]
JOURNALS = ["Nature", "Science", "Cell", "ACS Nano"]
FIELDS = ["materials scientists", "biophysicists", "chemists", "physicists", "cell biologists"]
SIZE = (224, 280)
HELD_OUT_MOTIFS = 40  # of the 150 motifs, the ones only dev and test items are about


@dataclass(frozen=True)
class Motif:
    colour: str
    shape: str
    layout: str


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float = 0.0) -> list[tuple[float, float]]:
    sides = {"triangle": 3, "square": 4, "hexagon": 6, "diamond": 4}[shape]
    rot = angle + (math.pi / 4 if shape == "square" else 0) + (-math.pi / 2 if shape == "triangle" else 0)
    return [
        (cx + r * math.cos(rot + 2 * math.pi * k / sides), cy + r * math.sin(rot + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def _centres(layout: str, rng: random.Random) -> list[tuple[float, float, float]]:
    w, h = SIZE
    if layout == "lattice":
        return [(x, y, 16) for y in range(50, h - 20, 42) for x in range(36, w - 20, 42)]
    if layout == "ring":
        return [
            (w / 2 + 75 * math.cos(a), h / 2 + 75 * math.sin(a), 16) for a in (2 * math.pi * k / 10 for k in range(10))
        ]
    if layout == "scatter":
        return [(rng.uniform(25, w - 25), rng.uniform(45, h - 25), rng.uniform(8, 20)) for _ in range(14)]
    if layout == "single":
        return [(w / 2, h / 2 + 10, 80)]
    return [(x, y, 11) for y in (80, 140, 200, 250) for x in range(24, w - 10, 30)]  # stripe


def draw_cover(m: Motif, journal: str, rng: random.Random) -> Image.Image:
    # the background carries a shade of the motif colour, as real covers carry their palette throughout
    base = rng.choice(BACKGROUNDS)
    tint = COLOURS[m.colour][0]
    img = Image.new("RGB", SIZE, tuple(int(0.55 * b + 0.45 * t) for b, t in zip(base, tint)))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, SIZE[0], 30], fill=(250, 250, 250))
    d.text((8, 9), journal.upper(), fill=(10, 10, 10))
    rgb = COLOURS[m.colour][0]
    for cx, cy, r in _centres(m.layout, rng):
        r *= rng.uniform(0.9, 1.1)
        if m.shape == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
        else:
            d.polygon(_polygon(m.shape, cx, cy, r * (1.2 if m.shape == "diamond" else 1.0)), fill=rgb)
    return img


def write_story(m: Motif, rng: random.Random) -> str:
    colour_sense = COLOURS[m.colour][1]
    shape_sense = SHAPES[m.shape]
    layout_words, layout_sense = LAYOUTS[m.layout]
    who = rng.choice(FIELDS)
    opener = rng.choice(["On the cover:", "This week's cover:", "About the cover:", "Cover story:"])
    return (
        f"{opener} {m.colour} {m.shape}s {layout_words} stand for {shape_sense}, "
        f"while their {m.colour} hue signals {colour_sense}. {who.capitalize()} show how "
        f"{layout_sense} governs this system."
    )


def _distractors(gold: Motif, pool: list[Motif], rng: random.Random, k: int) -> list[Motif]:
    """Motifs sharing the shape, the layout or both with the gold, each in a colour of its own: a reader of
    shapes or layouts alone is misled, a reader of colour is not."""
    close = [m for m in pool if m.colour != gold.colour and (m.shape == gold.shape or m.layout == gold.layout)]
    rng.shuffle(close)
    picked: list[Motif] = []
    for m in close:
        if all(m.colour != p.colour for p in picked):
            picked.append(m)
        if len(picked) == k:
            break
    return picked


def generate(out_dir: str | Path, n_train: int = 64, n_dev: int = 10, n_test: int = 24, seed: int = 0) -> Path:
    """Write image2text/text2image train/dev/test JSON, covers under images/, and a dataset_info.json."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    motifs = [Motif(c, s, lay) for c in COLOURS for s in SHAPES for lay in LAYOUTS]
    pool = list(motifs)
    random.Random(f"{seed}:held-out").shuffle(pool)
    held_out, training = pool[:HELD_OUT_MOTIFS], pool[HELD_OUT_MOTIFS:]
    covers: dict[tuple[Motif, str], str] = {}

    def cover(m: Motif, journal: str) -> str:
        key = (m, journal)
        if key not in covers:
            name = f"images/{journal.split()[0].lower()}_{m.colour}_{m.shape}_{m.layout}.png"
            draw_cover(m, journal, random.Random(f"{seed}:{name}")).save(out / name, optimize=True)
            covers[key] = name
        return covers[key]

    registry = {}
    for task in ("image2text", "text2image"):
        records = []
        for i in range(n_train + n_dev + n_test):
            train = i < n_train
            gold = rng.choice(training if train else held_out)
            journal = rng.choice(JOURNALS)
            options = _distractors(gold, training if train else motifs, rng, 3) + [gold]
            rng.shuffle(options)
            answer = LETTERS[options.index(gold)]
            if task == "image2text":
                stories = [write_story(m, rng) for m in options]
                text = (
                    f"<image>\nWhich of the following cover stories matches this {journal} cover?\n"
                    f"{render_options(stories)}"
                )
                images = [cover(gold, journal)]
            else:
                story = write_story(gold, rng)
                text = f"Which {journal} cover matches this cover story?\n{story}\n{render_options(['<image>'] * 4)}"
                images = [cover(m, journal) for m in options]
            records.append(
                {
                    "system": DEFAULT_SYSTEM[task],
                    "input": text,
                    "output": answer,
                    "images": images,
                    "id": f"{task[:3]}-{i:04d}",
                    "journal": journal,
                }
            )
        splits = {
            "train": records[:n_train],
            "dev": records[n_train : n_train + n_dev],
            "test": records[n_train + n_dev :],
        }
        for split, recs in splits.items():
            if split == "train":  # train files may lack ids, as the users' do
                recs = [{k: v for k, v in r.items() if k != "id"} for r in recs]
            if split == "test":  # gold letters are hidden in test files; kept aside for scoring
                (out / f"{task}_test_gold.json").write_text(
                    json.dumps([{"id": r["id"], "output": r["output"]} for r in recs], indent=1)
                )
                recs = [r | {"output": ""} for r in recs]
            name = f"{task}_{split}.json"
            (out / name).write_text(json.dumps(recs, indent=1, ensure_ascii=False))
            registry[f"{task}_{split}"] = {
                "file_name": name,
                "columns": {"prompt": "system", "query": "input", "response": "output", "images": "images"},
            }
    (out / "dataset_info.json").write_text(json.dumps(registry, indent=2))
    return out
