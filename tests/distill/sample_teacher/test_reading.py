"""The reader gets the motif of generated sample covers from their pixels, at full size and as the image policy
shrinks them. The file names (images/{journal}_{colour}_{shape}_{layout}.png) give the truth to score against."""

from __future__ import annotations

import pytest
from PIL import Image

from distill.data.images import load_image
from distill.data.sample import JOURNALS
from distill.sample_teacher.reading import read_cover
from distill.sample_teacher.reasoning import caption, motif_in_text


def _truth(path) -> tuple[str, str, str, str]:
    journal, colour, shape, layout = path.stem.split("_")
    return journal, colour, shape, layout


@pytest.mark.parametrize("max_pixels, floor", [(262_144, 0.9), (12_544, 0.85)])
def test_reads_colour_shape_and_layout(covers_dir, max_pixels, floor):
    paths = sorted((covers_dir / "images").glob("*.png"))
    assert len(paths) >= 40
    hits = {"colour": 0, "shape": 0, "layout": 0}
    for p in paths:
        _, colour, shape, layout = _truth(p)
        r = read_cover(load_image(p, max_pixels))
        hits["colour"] += r.colour == colour
        hits["shape"] += r.shape == shape
        hits["layout"] += r.layout == layout
    rates = {k: v / len(paths) for k, v in hits.items()}
    assert rates["colour"] == 1.0, rates
    assert rates["shape"] >= floor and rates["layout"] >= floor, rates


def test_the_reading_follows_the_pixels_not_the_name(covers_dir, tmp_path):
    """The same pixels under another name read the same; a cover recoloured by hand reads as its new colour."""
    src = sorted((covers_dir / "images").glob("*crimson*.png"))[0]
    renamed = tmp_path / "nature_amber_circle_ring.png"
    renamed.write_bytes(src.read_bytes())
    _, _, shape, layout = _truth(src)
    first, second = read_cover(Image.open(src)), read_cover(Image.open(renamed))
    assert (
        (second.colour, second.shape, second.layout)
        == (first.colour, first.shape, first.layout)
        == ("crimson", shape, layout)
    )

    img = Image.open(src).convert("RGB")
    px = img.load()
    for x in range(img.width):
        for y in range(img.height):
            if px[x, y] == (200, 30, 45):  # crimson fill -> cobalt
                px[x, y] = (30, 70, 200)
    assert read_cover(img).colour == "cobalt"


def test_title_and_caption(covers_dir):
    p = sorted((covers_dir / "images").glob("*.png"))[0]
    journal, colour, shape, layout = _truth(p)
    r = read_cover(Image.open(p))
    assert r.title is not None and r.title.split()[0].lower() == journal and r.title in JOURNALS
    text = caption(r)
    assert r.title in text
    m = motif_in_text(text)  # what a text-only reasoner will find in the caption
    assert (m.colour, m.shape, m.layout) == (colour, shape, layout)
