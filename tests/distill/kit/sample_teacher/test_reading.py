"""The reader gets the motif of generated sample covers from their pixels, at full size and as the image policy
shrinks them; covers.json (the generator's record of each cover's motif) is the truth to score against."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from distill.data.images import load_image
from distill.kit.sample_data import COLOURS, JOURNALS, Motif, draw_cover
from distill.kit.sample_teacher.reading import read_cover
from distill.kit.sample_teacher.reasoning import caption, motif_in_text


@pytest.mark.parametrize("max_pixels", [262_144, 12_544])
def test_reads_colour_shape_and_layout_of_jittered_covers(covers_dir, max_pixels):
    truth = json.loads((covers_dir / "covers.json").read_text())
    assert len(truth) >= 100 and len({(m["colour"], m["shape"], m["layout"]) for m in truth.values()}) >= 40
    hits = {"colour": 0, "shape": 0, "layout": 0}
    for path, m in truth.items():
        r = read_cover(load_image(covers_dir / path, max_pixels))
        for attr in hits:
            hits[attr] += getattr(r, attr) == m[attr]
    rates = {k: v / len(truth) for k, v in hits.items()}
    # the colour decides every sample item; shape and layout only word the captions
    assert rates["colour"] >= 0.95 and rates["shape"] >= 0.85 and rates["layout"] >= 0.85, rates


def test_no_two_covers_are_alike(covers_dir):
    paths = sorted((covers_dir / "images").iterdir())
    assert len({p.read_bytes() for p in paths}) == len(paths)


def test_the_reading_follows_the_pixels():
    """A cover recoloured by hand reads as its new colour."""
    img = draw_cover(Motif("crimson", "hexagon", "lattice"), "Nature", random.Random(1))
    assert read_cover(img).colour == "crimson"
    px = np.asarray(img).astype(int).copy()
    fill = np.abs(px - np.array(COLOURS["crimson"][0])).sum(axis=-1) < 40
    px[fill] = COLOURS["cobalt"][0]
    assert read_cover(Image.fromarray(px.astype(np.uint8))).colour == "cobalt"


@pytest.mark.parametrize("journal", JOURNALS)
def test_title_and_caption(journal):
    m = Motif("violet", "triangle", "ring")
    r = read_cover(draw_cover(m, journal, random.Random(5)))
    assert r.title == journal
    text = caption(r)
    assert journal.upper() in text and text.startswith("The cover shows violet triangles")
    named = motif_in_text(text)  # what a text-only reasoner will find in the caption
    assert (named.colour, named.shape, named.layout) == (m.colour, m.shape, m.layout)
