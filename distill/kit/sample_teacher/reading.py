"""Reading a sample cover's motif (colour, shape, layout) from its pixels.

Valid only on the covers `distill.kit.sample_data` draws: a white title band across the top, a flat background
that blends a base colour with the motif colour, and one motif, a named fill colour drawn as many copies of one
shape in one arrangement. The reader looks at pixels only, never at file names: it finds the background (the
most common colour below the band), the named colour whose fill pixels best explain what is not background,
the connected figures of that colour, and from the figures the shape (best-fitting outline) and the layout
(how many figures, how alike in size, where). Images may come downscaled by the image policy; they are first
brought back to the covers' own frame so that every measure below is in the same pixel units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from distill.kit.sample_data import COLOURS, JOURNALS, LAYOUTS, SHAPES, SIZE

BAND = 32  # rows of the title band (30 px) and its edge, in the covers' frame: never part of the motif
MIN_AREA = 12  # px: smaller specks are resampling noise, not figures


@dataclass
class Figure:
    """One connected patch of the motif colour."""

    area: int
    x0: int
    y0: int
    x1: int  # inclusive
    y1: int
    cx: float
    cy: float
    mask: np.ndarray  # boolean, the bounding box's pixels
    clipped: bool  # touches the edge of the picture or the title band: its outline is cut

    @property
    def width(self) -> int:
        return self.x1 - self.x0 + 1

    @property
    def height(self) -> int:
        return self.y1 - self.y0 + 1


@dataclass
class Reading:
    colour: str
    shape: str
    layout: str
    confidence: dict[str, float] = field(default_factory=dict)  # per attribute, in [0, 1]
    background: tuple[int, int, int] = (0, 0, 0)
    figures: int = 0
    title: str | None = None  # the journal name in the band, when it is legible

    @property
    def words(self) -> str:
        """The motif as a cover story words it: "crimson hexagons tiled in a regular lattice"."""
        return f"{self.colour} {self.shape}s {LAYOUTS[self.layout][0]}"


def read_cover(img: Image.Image) -> Reading:
    full = _canonical(img)
    px = full[BAND:]
    bg = _background(px)
    colour, colour_conf = _colour(px, bg)
    mask = _motif_mask(px, bg, np.array(COLOURS[colour][0], dtype=np.float32))
    figures = _figures(mask)
    shape, shape_conf = _shape(figures)
    layout, layout_conf = _layout(_figures(_erode(mask)))  # copies that touch at a corner count apart
    return Reading(
        colour,
        shape,
        layout,
        {"colour": colour_conf, "shape": shape_conf, "layout": layout_conf},
        tuple(int(v) for v in bg),
        len(figures),
        _title(full, img.size),
    )


def _canonical(img: Image.Image) -> np.ndarray:
    img = img.convert("RGB")
    if img.size != SIZE:  # the image policy may shrink the cover and change its aspect a little
        img = img.resize(SIZE, Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


@lru_cache(maxsize=32)
def _printed_titles(size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Each journal name as the sample covers print it, blurred as a cover of `size` is."""
    out = {}
    for journal in JOURNALS:
        img = Image.new("RGB", SIZE, (250, 250, 250))
        ImageDraw.Draw(img).text((8, 9), journal.upper(), fill=(10, 10, 10))
        if size != SIZE:
            img = img.resize(size, Image.Resampling.BICUBIC).resize(SIZE, Image.Resampling.BICUBIC)
        out[journal] = np.asarray(img.convert("L"), dtype=np.float32)[2:27]
    return out


def _title(full: np.ndarray, size: tuple[int, int]) -> str | None:
    band = full[2:27] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # PIL's grey
    gaps = {j: float(np.abs(band - t).mean()) for j, t in _printed_titles(size).items()}
    first, second = sorted(gaps, key=gaps.get)[:2]
    return first if gaps[first] * 2 < gaps[second] else None


def _background(px: np.ndarray) -> np.ndarray:
    """The most common colour: the flat background covers more of every sample cover than its motif does."""
    flat = px.reshape(-1, 3)
    q = (flat // 8).astype(np.int32)
    keys = q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2]
    mode = np.bincount(keys).argmax()
    return flat[keys == mode].mean(axis=0)


def _along(px: np.ndarray, bg: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel as bg + t * (rgb - bg) + residual: (t, |residual|). Edge pixels blend the two, so they sit on
    the segment between background and fill; pixels of another colour sit off it."""
    axis = rgb - bg
    d = px - bg
    t = d @ axis / max(float(axis @ axis), 1e-6)
    resid = np.linalg.norm(d - t[..., None] * axis, axis=-1)
    return t, resid


def _colour(px: np.ndarray, bg: np.ndarray) -> tuple[str, float]:
    """The named colour whose fill pixels are most numerous among the pixels that are not background."""
    fore = px[np.linalg.norm(px - bg, axis=-1) > 6]
    counts = {}
    for name, (rgb, _) in COLOURS.items():
        rgb = np.array(rgb, dtype=np.float32)
        gap = float(np.linalg.norm(rgb - bg))
        if gap < 8:  # as close to the background as the background's own noise: cannot be seen
            counts[name] = 0
            continue
        t, resid = _along(fore, bg, rgb)
        counts[name] = int(((np.abs(t - 1) < 0.25) & (resid < max(6.0, 0.15 * gap))).sum())
    best = max(counts, key=counts.get)
    return best, min(1.0, counts[best] / max(len(fore), 1))


def _motif_mask(px: np.ndarray, bg: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    t, resid = _along(px, bg, rgb)
    return (t > 0.5) & (resid < max(12.0, 0.4 * float(np.linalg.norm(rgb - bg))))


def _erode(mask: np.ndarray) -> np.ndarray:
    """A pixel stays if it and its four neighbours are set: cuts the one-pixel necks between touching copies."""
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    return out


def _figures(mask: np.ndarray) -> list[Figure]:
    """Connected components (4-connectivity) of the mask, by runs of pixels and union-find."""
    h, w = mask.shape
    edges = np.diff(np.pad(mask.view(np.int8), ((0, 0), (1, 1))), axis=1)
    starts, ends = np.argwhere(edges == 1), np.argwhere(edges == -1)  # both in row order, so they pair up
    runs = [(int(y), int(s), int(e)) for (y, s), (_, e) in zip(starts, ends)]  # (row, start, end exclusive)
    parent = list(range(len(runs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev: list[int] = []
    cur: list[int] = []
    for k, (y, s, e) in enumerate(runs):
        if cur and runs[cur[-1]][0] != y:
            prev, cur = (cur if runs[cur[-1]][0] == y - 1 else []), []
        cur.append(k)
        for j in prev:
            _, ps, pe = runs[j]
            if ps < e and s < pe:  # columns overlap: the runs touch
                a, b = find(j), find(k)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for k in range(len(runs)):
        groups.setdefault(find(k), []).append(k)
    figures = []
    for members in groups.values():
        rows = [runs[k] for k in members]
        area = sum(e - s for _, s, e in rows)
        if area < MIN_AREA:
            continue
        x0, x1 = min(s for _, s, _ in rows), max(e for _, _, e in rows) - 1
        y0, y1 = min(y for y, _, _ in rows), max(y for y, _, _ in rows)
        sub = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=bool)
        cx = cy = 0.0
        for y, s, e in rows:
            sub[y - y0, s - x0 : e - x0] = True
            cx += (s + e - 1) / 2 * (e - s)
            cy += y * (e - s)
        clipped = x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1
        figures.append(Figure(area, x0, y0, x1, y1, cx / area, cy / area, sub, clipped))
    return figures


# Each shape's outline as a function of its size: (width, height) of its bounding box per unit radius, and
# whether a pixel at offset (dx, dy) from the box centre, in radii, lies inside it.
def _inside_polygon(corners: list[tuple[float, float]], dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    inside = np.ones(dx.shape, dtype=bool)
    for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]):
        inside &= (bx - ax) * (dy - ay) - (by - ay) * (dx - ax) >= 0
    return inside


def _regular(sides: int, start: float) -> list[tuple[float, float]]:
    return [
        (math.cos(start + 2 * math.pi * k / sides), math.sin(start + 2 * math.pi * k / sides)) for k in range(sides)
    ]


_TRIANGLE = [(x, y + 0.25) for x, y in _regular(3, -math.pi / 2)]  # point up, centred in its box
OUTLINES = {
    "circle": ((2.0, 2.0), lambda dx, dy: dx * dx + dy * dy <= 1.0),
    "triangle": ((math.sqrt(3), 1.5), lambda dx, dy: _inside_polygon(_TRIANGLE, dx, dy)),
    "square": ((math.sqrt(2), math.sqrt(2)), lambda dx, dy: (abs(dx) <= math.sqrt(0.5)) & (abs(dy) <= math.sqrt(0.5))),
    "hexagon": ((2.0, math.sqrt(3)), lambda dx, dy: _inside_polygon(_regular(6, 0.0), dx, dy)),
    "diamond": ((2.0, 2.0), lambda dx, dy: abs(dx) + abs(dy) <= 1.0),
}
assert set(OUTLINES) == set(SHAPES)


def _fit(fig: Figure, shape: str) -> float:
    """Intersection over union of the figure with the shape's outline, sized to the figure's box."""
    (bw, bh), inside = OUTLINES[shape]
    r = (fig.width / bw + fig.height / bh) / 2
    ys, xs = np.mgrid[0 : fig.height, 0 : fig.width]
    dx = (xs + 0.5 - fig.width / 2) / r
    dy = (ys + 0.5 - fig.height / 2) / r
    ideal = inside(dx, dy)
    union = int((ideal | fig.mask).sum())
    return int((ideal & fig.mask).sum()) / union if union else 0.0


def _shape(figures: list[Figure]) -> tuple[str, float]:
    """Each whole figure votes for its best-fitting outline; figures that fit no outline well (two shapes that
    overlap, a shape cut by the edge) are left out while whole ones remain."""
    whole = [f for f in figures if not f.clipped] or figures
    if not whole:
        return next(iter(SHAPES)), 0.0
    fits = np.array([[_fit(f, s) for s in SHAPES] for f in whole])
    best = fits.max(axis=1)
    good = fits[best >= np.quantile(best, 0.5)]  # the better-fitting half: single, uncut figures
    scores = good.mean(axis=0)
    order = np.argsort(scores)[::-1]
    names = list(SHAPES)
    votes = np.bincount(good.argmax(axis=1), minlength=len(names))
    conf = float(votes[order[0]] / len(good)) * float(min(1.0, (scores[order[0]] - scores[order[1]]) * 10))
    return names[order[0]], round(conf, 3)


def _rows(ys: list[float], gap: float = 8.0) -> list[list[int]]:
    """Indices of figures grouped by height: a new row starts where the sorted heights jump by more than gap."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    rows: list[list[int]] = []
    for i in order:
        if rows and ys[i] - ys[rows[-1][-1]] <= gap:
            rows[-1].append(i)
        else:
            rows.append([i])
    return rows


def _layout(figures: list[Figure]) -> tuple[str, float]:
    if not figures:
        return "single", 0.0
    areas = np.array([f.area for f in figures], dtype=float)
    total = areas.sum()
    if len(figures) <= 3 and areas.max() >= 0.75 * total and areas.max() >= 2500:
        return "single", round(float(areas.max() / total), 3)
    whole = np.array([f.area for f in figures if not f.clipped] or areas, dtype=float)
    q25, q50, q75 = np.quantile(whole, [0.25, 0.5, 0.75])
    spread = (q75 - q25) / q50  # copies of one size: about 0.2; random sizes, or merged copies: far more
    xs = np.array([f.cx for f in figures])
    ys = np.array([f.cy for f in figures])
    radial = np.hypot(xs - xs.mean(), ys - ys.mean())
    ring = float(radial.std() / max(radial.mean(), 1e-6))
    if 6 <= len(figures) <= 14 and ring < 0.12 and radial.mean() > 40:
        return "ring", round(1 - ring / 0.12, 3)
    rows = [r for r in _rows(list(ys)) if len(r) >= 2]
    in_rows = sum(len(r) for r in rows) / len(figures)
    if spread > 0.45 or in_rows < 0.8 or len(rows) < 3:
        return "scatter", round(min(1.0, max(spread - 0.45, 0.8 - in_rows) * 5 + 0.5), 3)
    row_y = sorted(float(np.mean(ys[r])) for r in rows)
    row_gap = float(np.median(np.diff(row_y)))
    col_gap = float(np.median([d for r in rows for d in np.diff(np.sort(xs[r]))]))
    ratio = row_gap / max(col_gap, 1e-6)  # a lattice is spaced alike both ways; rows lie farther apart than
    if ratio > 1.35:  # their members do
        return "stripe", round(min(1.0, (ratio - 1.35) * 4), 3)
    return "lattice", round(min(1.0, (1.35 - ratio) * 4), 3)
