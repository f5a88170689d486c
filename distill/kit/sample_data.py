"""A seeded generator of MAC-format sample data: covers drawn with PIL from a vocabulary of visual motifs, and
cover stories that explain the science those motifs stand for.

Each cover shows one motif (colour, shape, layout). Its story names the motif as a cover text would ("crimson
hexagons tiled in a lattice") and ties it to a scientific idea, so a model that reads the motif can beat chance.
Distractors are hard: they share the shape, the layout or both with the gold, never its colour, so the task is
learnable by design (colour decides) yet a shallow reader is misled.

Every item draws its own covers: position, size, count, rotation and shade of the figures, the background, noise
and JPEG artefacts vary from cover to cover, so no two covers are alike and a student cannot pass by memorising
pictures, only by reading them.

Motifs are split three ways: validation and test items take their gold motif from pools of their own that no
training item uses, as gold or as distractor; so validation accuracy measures what test accuracy measures
(reading motifs never seen in training), and no held-out cover or story is reachable from training data (what
`distill audit` checks). `covers.json` records each cover's motif: the truth, for scoring a student's captions
only; no stage of the pipeline reads it.
"""

from __future__ import annotations

import io
import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pydantic import BaseModel, ConfigDict, Field

from distill.data.items import LETTERS
from distill.data.options import render_options
from distill.data.records import DEFAULT_SYSTEM

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
BACKGROUNDS = [(12, 18, 40), (28, 28, 28), (235, 235, 225), (60, 20, 30), (20, 45, 35), (90, 90, 100)]
JOURNALS = ["Nature", "Science", "Cell", "ACS Nano"]
FIELDS = ["materials scientists", "biophysicists", "chemists", "physicists", "cell biologists", "engineers"]
OPENERS = ["Cover:", "On the cover:", "Featured:", "This week:"]
# A story names its motif first ("crimson hexagons tiled in a regular lattice"), then what the motif stands for.
STORIES = [  # {cs}: "crimson hexagons", {c}: "crimson", {lw}: the layout's words; the senses follow the motif
    "{opener} {cs} {lw} stand for {shape_sense}; their {c} hue signals {colour_sense}.",
    "{opener} {cs} {lw}, as {who} depict {shape_sense}, the {c} evoking {colour_sense}.",
    "{opener} {cs}, {lw}, show {layout_sense} in {shape_sense}; {c} stands for {colour_sense}.",
]
SIZE = (224, 280)
BAND = 30  # the title band across the top
TEST_MOTIFS, VAL_MOTIFS = 25, 15  # of the 150 motifs, the ones only test (and dev) or validation items are about


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
    """(x, y, radius) of each figure: the layout's pattern, with its spacing, count, size and place jittered."""
    w, h = SIZE
    s = rng.uniform(0.85, 1.15)  # size of the figures on this cover
    if layout == "lattice":  # spaced so that the figures never cover more of the cover than its background does
        step = rng.uniform(41, 46)
        x0, y0 = rng.uniform(30, 40), rng.uniform(48, 56)
        return [(x, y, 14 * s) for y in _range(y0, h - 22, step) for x in _range(x0, w - 22, step)]
    if layout == "ring":
        n, rad = rng.randint(8, 12), rng.uniform(68, 82)
        cx, cy, a0 = w / 2 + rng.uniform(-8, 8), h / 2 + 10 + rng.uniform(-8, 8), rng.uniform(0, 2 * math.pi)
        return [(cx + rad * math.cos(a0 + 2 * math.pi * k / n), cy + rad * math.sin(a0 + 2 * math.pi * k / n), 14 * s)
                for k in range(n)]  # fmt: skip
    if layout == "scatter":
        n = rng.randint(10, 16)
        return [(rng.uniform(25, w - 25), rng.uniform(50, h - 25), rng.uniform(8, 20)) for _ in range(n)]
    if layout == "single":
        return [(w / 2 + rng.uniform(-12, 12), h / 2 + 12 + rng.uniform(-12, 12), rng.uniform(68, 84))]
    col, row = rng.uniform(28, 32), rng.uniform(52, 62)  # stripe: rows lie farther apart than their members
    y0 = rng.uniform(70, 85)
    return [(x, y, 10.5 * s) for y in _range(y0, h - 20, row) for x in _range(rng.uniform(20, 28), w - 12, col)]


def _range(start: float, stop: float, step: float) -> list[float]:
    return [start + k * step for k in range(int((stop - start) // step) + 1)]


def draw_cover(m: Motif, journal: str, rng: random.Random) -> Image.Image:
    """One cover of motif `m`. The background carries a shade of the motif colour, as real covers carry their
    palette throughout."""
    tint, mix = COLOURS[m.colour][0], rng.uniform(0.35, 0.5)
    tinted = [tuple(int((1 - mix) * b + mix * t) for b, t in zip(base, tint)) for base in BACKGROUNDS]
    visible = [bg for bg in tinted if math.dist(bg, tint) > 90]  # never a fill the background all but hides
    img = Image.new("RGB", SIZE, rng.choice(visible))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, SIZE[0], BAND], fill=(250, 250, 250))
    d.text((8, 9), journal.upper(), fill=(10, 10, 10))
    rgb = tuple(max(0, min(255, v + rng.randint(-8, 8))) for v in COLOURS[m.colour][0])  # the fill's shade
    angle = rng.uniform(-0.1, 0.1)  # radians: a tilt that keeps each shape recognisably itself
    for cx, cy, r in _centres(m.layout, rng):
        r *= rng.uniform(0.92, 1.08)
        if m.shape == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
        else:
            d.polygon(_polygon(m.shape, cx, cy, r * (1.2 if m.shape == "diamond" else 1.0), angle), fill=rgb)
    return img


def finish(img: Image.Image, rng: random.Random) -> bytes:
    """Noise and JPEG artefacts of a scanned or re-encoded cover; the encoded bytes."""
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.6)))
    # drawn from the cover's own seed: PIL's effect_noise uses the C library's unseeded rand()
    grain = np.random.default_rng(rng.getrandbits(64)).normal(128, rng.uniform(2, 10), (SIZE[1], SIZE[0]))
    noise = Image.fromarray(grain.clip(0, 255).astype(np.uint8), "L").convert("RGB")
    img = Image.blend(img, noise, rng.uniform(0.0, 0.05))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(75, 92))
    return buf.getvalue()


def write_story(m: Motif, rng: random.Random) -> str:
    who = rng.choice(FIELDS)
    return rng.choice(STORIES).format(
        opener=rng.choice(OPENERS),
        cs=f"{m.colour} {m.shape}s",
        c=m.colour,
        lw=LAYOUTS[m.layout][0],
        shape_sense=SHAPES[m.shape],
        colour_sense=COLOURS[m.colour][1],
        layout_sense=LAYOUTS[m.layout][1],
        who=who,
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


def motif_pools(seed: int = 0) -> dict[str, list[Motif]]:
    """The gold motifs of each split: test (and dev), validation and training pools share no motif."""
    pool = [Motif(c, s, lay) for c in COLOURS for s in SHAPES for lay in LAYOUTS]
    random.Random(f"{seed}:held-out").shuffle(pool)
    return {
        "test": pool[:TEST_MOTIFS],
        "val": pool[TEST_MOTIFS : TEST_MOTIFS + VAL_MOTIFS],
        "train": pool[TEST_MOTIFS + VAL_MOTIFS :],
    }


class SampleDataConfig(BaseModel):
    """How much sample data to draw (`generate`'s settings, `distill sample-data`'s flags, the demo's `kit:`)."""

    model_config = ConfigDict(extra="forbid")

    n_train: int = Field(64, ge=1, description="Training items per task.")
    n_val: int = Field(0, ge=0, description="Validation items per task (on motifs of their own).")
    n_dev: int = Field(10, ge=1, description="Dev items per task.")
    n_test: int = Field(24, ge=1, description="Test items per task (their gold letters in *_test_gold.json).")
    seed: int = Field(0, description="Generator seed.")


def generate(out_dir: str | Path, cfg: SampleDataConfig | None = None, **settings) -> Path:
    """Write image2text/text2image train/dev/test (and, with `n_val`, val) JSON, covers under images/, a
    dataset_info.json and covers.json (each cover's motif). `cfg` (`distill sample-data`'s flags, the demo's
    `kit:`) and `settings` (fields of SampleDataConfig, laid over `cfg`) say how much to draw."""
    cfg = SampleDataConfig(**{**(cfg.model_dump() if cfg else {}), **settings})
    n_train, n_val, n_dev, n_test, seed = cfg.n_train, cfg.n_val, cfg.n_dev, cfg.n_test, cfg.seed
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    pools = motif_pools(seed)
    gold_pool = {"train": pools["train"], "val": pools["val"], "dev": pools["test"], "test": pools["test"]}
    distractor_pool = {"train": pools["train"], "val": pools["train"] + pools["val"]}
    truth: dict[str, dict] = {}

    def cover(m: Motif, journal: str, name: str) -> str:
        crng = random.Random(f"{seed}:{name}")
        path = f"images/{name}.jpg"
        (out / path).write_bytes(finish(draw_cover(m, journal, crng), crng))
        truth[path] = asdict(m)
        return path

    registry = {}
    sizes = {"train": n_train, "val": n_val, "dev": n_dev, "test": n_test}
    for task in ("image2text", "text2image"):
        for split, n in sizes.items():
            if not n:
                continue
            records = []
            for i in range(n):
                gold = rng.choice(gold_pool[split])
                journal = rng.choice(JOURNALS)
                pool = distractor_pool.get(split, pools["train"] + pools["test"])
                options = _distractors(gold, pool, rng, 3) + [gold]
                rng.shuffle(options)
                answer = LETTERS[options.index(gold)]
                stem = f"{task}-{split}-{i:05d}"
                if task == "image2text":
                    stories = [write_story(m, rng) for m in options]
                    text = (
                        f"<image>\nWhich of the following cover stories matches this {journal} cover?\n"
                        f"{render_options(stories)}"
                    )
                    images = [cover(gold, journal, stem)]
                else:
                    story = write_story(gold, rng)
                    text = (
                        f"Which {journal} cover matches this cover story?\n{story}\n{render_options(['<image>'] * 4)}"
                    )
                    images = [cover(m, journal, f"{stem}-{k}") for k, m in enumerate(options)]
                record = {"system": DEFAULT_SYSTEM[task], "input": text, "output": answer, "images": images}
                if split != "train":  # train files may lack ids, as the users' do
                    record["id"] = f"{task[:3]}-{split}-{i:04d}"
                records.append(record | {"journal": journal})
            if split == "test":  # gold letters are hidden in test files; kept aside for scoring
                (out / f"{task}_test_gold.json").write_text(
                    json.dumps([{"id": r["id"], "output": r["output"]} for r in records], indent=1)
                )
                records = [r | {"output": ""} for r in records]
            name = f"{task}_{split}.json"
            (out / name).write_text(json.dumps(records, indent=1, ensure_ascii=False))
            registry[f"{task}_{split}"] = {
                "file_name": name,
                "columns": {"prompt": "system", "query": "input", "response": "output", "images": "images"},
            }
    (out / "dataset_info.json").write_text(json.dumps(registry, indent=2))
    (out / "covers.json").write_text(json.dumps(truth, indent=0, sort_keys=True))
    return out
