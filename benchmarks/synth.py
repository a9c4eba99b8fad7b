"""Synthetic COCO instance-annotation files at real scale, for benchmarks.

Usage::

    python -m benchmarks.synth --like train2017 -o /tmp/train2017_synth.json [--seed 0] [--scale 1.0]

or, from Python, ``generate(like, seed, scale) -> dict`` (the whole file as plain Python objects) and
``write(path, like, seed, scale) -> Path`` (streams the annotations to disk in chunks with orjson,
through a temporary file in the target folder that is then moved into place with ``os.replace``).
The output is a pure function of ``(like, seed, scale)``: every number is drawn up front from one
``numpy.random.default_rng(seed)``, so ``json.load(write(...)) == generate(...)``.

Presets (``--scale`` multiplies the image, annotation and crowd counts, each rounded)::

    preset      images    annotations   iscrowd
    train2017   118,287   860,001       10,050
    val2017       5,000    36,781          446

What is mimicked, and how (all of it drawn with vectorised numpy; the constants below are in
``_Stats`` / the module-level tables):

* **Top level**: ``info``, ``licenses`` (COCO's 8), ``images``, ``annotations``, ``categories`` in
  COCO's key order. ``categories`` are COCO's 80 with their real sparse ids 1..90 (12, 26, 29, 30,
  45, 66, 68, 69, 71, 83 missing), names and supercategories.
* **Images**: sparse unique ids in ``1..581929`` (COCO's id range) in random order, ``file_name``
  ``%012d.jpg``, ``coco_url``, ``flickr_url``, ``license`` 1..8, ``date_captured`` in Nov-Dec
  2013. Sizes: 640 on the long side almost always, from a weighted table of COCO's common sizes
  (640x480 38%, 640x427 16%, 480x640 9%, 640x426 6%, 427x640 5%, 640x428, 640x425, 426x640,
  640x424, 640x360, 612x612, 500x375, 640x640, ...), 5% landscape 640 x U(200, 640), 2% portrait,
  and 1% small images (long side 100..500).
* **Objects per image**: about 1% of the images have no annotation. The others get
  ``1 + Poisson-lognormal`` objects (a multinomial split of the remaining annotations with
  lognormal(0, 1.1) weights), so the mean is ~7.3, the median ~4 and the tail long (the largest
  train2017 images get a few hundred objects); capped at 900, the excess re-spread. Exactly the
  preset's annotation count is produced. Annotations are shuffled (not grouped by image).
* **Categories**: drawn from COCO train2017's per-category instance counts (person ~30% of the
  boxes, car 5%, chair 4.5%, ..., toaster and hair drier ~0.02%); half of an image's objects share
  one "dominant" category of that image (itself drawn from the same frequencies, so the marginal
  frequencies are unchanged) to get COCO-like co-occurrence.
* **Boxes**: sqrt(area) is log-normal (median ~42 px, sigma ~1.2 in log space), so that about 41%
  of the objects are small (area < 32^2), 34% medium and 24-25% large (COCOeval's ranges, on the
  ``area`` field); aspect ratio w/h is log-normal (median 0.86, sigma 0.75); boxes are clipped to
  the image (at least 1 px), placed uniformly inside it, on a 0.01 px grid, and about 0.01% of
  them are given zero width or height.
* **Segmentation (non-crowd)**: one polygon of n ~ U{10..40} points on a jittered star/ellipse
  inside the box (rounded to 2 decimals, clipped to the box); ``bbox`` is then the polygon's tight
  bounds (as in COCO) and ``area`` its shoelace area (so ~0.55-0.6 of the box area).
* **Crowd (``iscrowd=1``)**: at most one per image, on a random non-empty image; larger boxes
  (sqrt(area) log-normal, median ~180 px); ``segmentation`` is an uncompressed, column-major RLE
  ``{"counts": [...], "size": [h, w]}`` of a blob-shaped mask spanning the image, valid for
  pycocotools; ``area`` is the mask's pixel count and ``bbox`` its tight bounds. Crowd ids are
  ``900100000000 + image_id`` like COCO's; the others are sorted sparse ids.

Size: the full train2017 preset comes out at about the real file's 448 MB, mostly polygon text.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

__all__ = ["CATEGORIES", "PRESETS", "Preset", "expected_counts", "generate", "main", "write"]


@dataclass(frozen=True)
class Preset:
    """Counts of one real COCO split."""

    name: str
    n_images: int
    n_annotations: int
    n_crowd: int


PRESETS: dict[str, Preset] = {
    "train2017": Preset("train2017", 118_287, 860_001, 10_050),
    "val2017": Preset("val2017", 5_000, 36_781, 446),
}

# (id, name, supercategory, approximate train2017 instance count): the counts are only weights.
CATEGORIES: tuple[tuple[int, str, str, int], ...] = (
    (1, "person", "person", 262_465),
    (2, "bicycle", "vehicle", 7_113),
    (3, "car", "vehicle", 43_867),
    (4, "motorcycle", "vehicle", 8_725),
    (5, "airplane", "vehicle", 5_135),
    (6, "bus", "vehicle", 6_069),
    (7, "train", "vehicle", 4_571),
    (8, "truck", "vehicle", 9_973),
    (9, "boat", "vehicle", 10_759),
    (10, "traffic light", "outdoor", 12_884),
    (11, "fire hydrant", "outdoor", 1_865),
    (13, "stop sign", "outdoor", 1_983),
    (14, "parking meter", "outdoor", 1_285),
    (15, "bench", "outdoor", 9_838),
    (16, "bird", "animal", 10_806),
    (17, "cat", "animal", 4_768),
    (18, "dog", "animal", 5_508),
    (19, "horse", "animal", 6_587),
    (20, "sheep", "animal", 9_509),
    (21, "cow", "animal", 8_147),
    (22, "elephant", "animal", 5_513),
    (23, "bear", "animal", 1_294),
    (24, "zebra", "animal", 5_303),
    (25, "giraffe", "animal", 5_131),
    (27, "backpack", "accessory", 8_720),
    (28, "umbrella", "accessory", 11_431),
    (31, "handbag", "accessory", 12_354),
    (32, "tie", "accessory", 6_496),
    (33, "suitcase", "accessory", 6_192),
    (34, "frisbee", "sports", 2_682),
    (35, "skis", "sports", 6_646),
    (36, "snowboard", "sports", 2_685),
    (37, "sports ball", "sports", 6_347),
    (38, "kite", "sports", 9_076),
    (39, "baseball bat", "sports", 3_276),
    (40, "baseball glove", "sports", 3_747),
    (41, "skateboard", "sports", 5_543),
    (42, "surfboard", "sports", 6_126),
    (43, "tennis racket", "sports", 4_812),
    (44, "bottle", "kitchen", 24_342),
    (46, "wine glass", "kitchen", 7_913),
    (47, "cup", "kitchen", 20_650),
    (48, "fork", "kitchen", 5_479),
    (49, "knife", "kitchen", 7_770),
    (50, "spoon", "kitchen", 6_165),
    (51, "bowl", "kitchen", 14_358),
    (52, "banana", "food", 9_458),
    (53, "apple", "food", 5_851),
    (54, "sandwich", "food", 4_373),
    (55, "orange", "food", 6_399),
    (56, "broccoli", "food", 7_308),
    (57, "carrot", "food", 7_852),
    (58, "hot dog", "food", 2_918),
    (59, "pizza", "food", 5_821),
    (60, "donut", "food", 7_179),
    (61, "cake", "food", 6_353),
    (62, "chair", "furniture", 38_491),
    (63, "couch", "furniture", 5_779),
    (64, "potted plant", "furniture", 8_652),
    (65, "bed", "furniture", 4_192),
    (67, "dining table", "furniture", 15_714),
    (70, "toilet", "furniture", 4_157),
    (72, "tv", "electronic", 5_805),
    (73, "laptop", "electronic", 4_970),
    (74, "mouse", "electronic", 2_262),
    (75, "remote", "electronic", 5_703),
    (76, "keyboard", "electronic", 2_855),
    (77, "cell phone", "electronic", 6_434),
    (78, "microwave", "appliance", 1_673),
    (79, "oven", "appliance", 3_334),
    (80, "toaster", "appliance", 225),
    (81, "sink", "appliance", 5_610),
    (82, "refrigerator", "appliance", 2_637),
    (84, "book", "indoor", 24_715),
    (85, "clock", "indoor", 6_334),
    (86, "vase", "indoor", 6_613),
    (87, "scissors", "indoor", 1_481),
    (88, "teddy bear", "indoor", 4_729),
    (89, "hair drier", "indoor", 198),
    (90, "toothbrush", "indoor", 1_954),
)

LICENSES: tuple[dict[str, Any], ...] = (
    {
        "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/",
        "id": 1,
        "name": "Attribution-NonCommercial-ShareAlike License",
    },
    {"url": "http://creativecommons.org/licenses/by-nc/2.0/", "id": 2, "name": "Attribution-NonCommercial License"},
    {
        "url": "http://creativecommons.org/licenses/by-nc-nd/2.0/",
        "id": 3,
        "name": "Attribution-NonCommercial-NoDerivs License",
    },
    {"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"},
    {"url": "http://creativecommons.org/licenses/by-sa/2.0/", "id": 5, "name": "Attribution-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nd/2.0/", "id": 6, "name": "Attribution-NoDerivs License"},
    {"url": "http://flickr.com/commons/usage/", "id": 7, "name": "No known copyright restrictions"},
    {"url": "http://www.usa.gov/copyright.shtml", "id": 8, "name": "United States Government Work"},
)
_LICENSE_WEIGHTS = (0.19, 0.20, 0.21, 0.16, 0.10, 0.10, 0.035, 0.005)

# ((width, height), weight) of COCO's common image sizes; the remaining weight goes to _Stats'
# "other" landscape / portrait / small kinds.
_IMAGE_SIZES: tuple[tuple[tuple[int, int], float], ...] = (
    ((640, 480), 0.38),
    ((640, 427), 0.16),
    ((480, 640), 0.09),
    ((640, 426), 0.06),
    ((427, 640), 0.05),
    ((640, 428), 0.03),
    ((640, 425), 0.025),
    ((426, 640), 0.02),
    ((640, 424), 0.015),
    ((640, 360), 0.02),
    ((612, 612), 0.01),
    ((500, 375), 0.01),
    ((640, 640), 0.01),
    ((640, 429), 0.01),
    ((375, 500), 0.005),
    ((428, 640), 0.01),
    ((640, 512), 0.005),
)


class _Stats:
    """Distribution constants (see the module docstring)."""

    other_landscape = 0.05  # 640 x U{200..640}
    other_portrait = 0.02  # U{200..640} x 640
    small_images = 0.01  # long side U{100..500}, short side 0.5..1 of it
    max_image_id = 581_929
    empty_image_fraction = 0.01
    objects_sigma = 1.1  # lognormal sigma of the per-image object-count weights
    max_objects = 900
    dominant_category_p = 0.5
    sqrt_area_mu = math.log(42.0)  # of the polygon area
    sqrt_area_sigma = 1.19
    polygon_fill = 0.55  # polygon area / drawn box area, before tightening the box
    aspect_mu = math.log(0.86)  # w / h
    aspect_sigma = 0.75
    zero_box_fraction = 1e-4
    poly_points = (10, 40)
    poly_radius = (0.7, 1.0)
    crowd_sqrt_area_mu = math.log(180.0)
    crowd_sqrt_area_sigma = 0.7
    crowd_aspect_sigma = 0.5
    crowd_id_base = 900_100_000_000
    date_start = np.datetime64("2013-11-14T00:00:00", "s")
    date_span_s = 40 * 24 * 3600


def expected_counts(like: str = "train2017", scale: float = 1.0) -> tuple[int, int, int]:
    """(images, annotations, crowd annotations) that ``generate(like, scale=scale)`` produces."""
    preset = _preset(like)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    n_img = max(1, round(preset.n_images * scale))
    n_ann = round(preset.n_annotations * scale)
    n_nonempty = min(n_img - round(n_img * _Stats.empty_image_fraction), n_ann)
    n_crowd = min(round(preset.n_crowd * scale), n_nonempty)
    return n_img, n_ann, n_crowd


def _preset(like: str) -> Preset:
    try:
        return PRESETS[like]
    except KeyError:
        raise ValueError(f"unknown preset {like!r}; expected one of {sorted(PRESETS)}") from None


@dataclass
class _Plan:
    """Every drawn number, as arrays; dicts are built from it lazily (per chunk)."""

    preset: Preset
    img_ids: np.ndarray  # (I,) int64
    img_w: np.ndarray  # (I,) int64
    img_h: np.ndarray  # (I,) int64
    img_license: np.ndarray  # (I,) int64
    img_dates: list[str]
    img_flickr: list[str]
    ann_ids: np.ndarray  # (G,) int64
    ann_img: np.ndarray  # (G,) int64, index into the image arrays
    ann_cat: np.ndarray  # (G,) int64, category id
    ann_crowd: np.ndarray  # (G,) bool
    ann_bbox_c: np.ndarray  # (G, 4) int64, xywh in 1/100 px
    ann_area: np.ndarray  # (G,) float64, px^2
    pt_start: np.ndarray  # (G + 1,) int64, offsets of each polygon's points (crowd: empty)
    coords_c: np.ndarray  # (2 * P,) int32, interleaved x, y in 1/100 px
    rle: dict[int, list[int]]  # annotation index -> uncompressed RLE counts


def _plan(like: str, seed: int, scale: float) -> _Plan:
    preset = _preset(like)
    n_img, n_ann, n_crowd = expected_counts(like, scale)
    rng = np.random.default_rng(seed)
    st = _Stats

    # ---- images ------------------------------------------------------------------------------
    id_space = max(st.max_image_id, 2 * n_img)
    img_ids = rng.choice(id_space, size=n_img, replace=False).astype(np.int64) + 1
    table_wh = np.array([wh for wh, _ in _IMAGE_SIZES], dtype=np.int64)
    weights = np.array([w for _, w in _IMAGE_SIZES] + [st.other_landscape, st.other_portrait, st.small_images])
    kind = rng.choice(len(weights), size=n_img, p=weights / weights.sum())
    n_tab = len(_IMAGE_SIZES)
    img_w = np.zeros(n_img, np.int64)
    img_h = np.zeros(n_img, np.int64)
    tab = kind < n_tab
    img_w[tab] = table_wh[kind[tab], 0]
    img_h[tab] = table_wh[kind[tab], 1]
    free = rng.integers(200, 641, size=n_img)
    small_long = rng.integers(100, 501, size=n_img)
    small_short = np.maximum(1, np.rint(small_long * rng.uniform(0.5, 1.0, size=n_img))).astype(np.int64)
    small_landscape = rng.random(n_img) < 0.6
    m = kind == n_tab
    img_w[m], img_h[m] = 640, free[m]
    m = kind == n_tab + 1
    img_w[m], img_h[m] = free[m], 640
    m = kind == n_tab + 2
    img_w[m] = np.where(small_landscape, small_long, small_short)[m]
    img_h[m] = np.where(small_landscape, small_short, small_long)[m]
    lw = np.array(_LICENSE_WEIGHTS)
    img_license = rng.choice(len(LICENSES), size=n_img, p=lw / lw.sum()).astype(np.int64) + 1
    secs = rng.integers(0, st.date_span_s, size=n_img).astype("timedelta64[s]")
    img_dates = [s.replace("T", " ") for s in np.datetime_as_string(st.date_start + secs).tolist()]
    farm = rng.integers(1, 10, size=n_img).tolist()
    server = rng.integers(1000, 9000, size=n_img).tolist()
    photo = rng.integers(1_000_000_000, 9_999_999_999, size=n_img).tolist()
    secret = rng.integers(0, 16**10, size=n_img).tolist()
    img_flickr = [
        f"http://farm{f}.staticflickr.com/{s}/{p}_{q:010x}_z.jpg"
        for f, s, p, q in zip(farm, server, photo, secret, strict=True)
    ]

    # ---- objects per image -------------------------------------------------------------------
    n_nonempty = min(n_img - round(n_img * st.empty_image_fraction), n_ann)
    if n_ann > st.max_objects * n_img:
        raise ValueError(f"{n_ann} annotations do not fit {n_img} images x {st.max_objects}")
    counts = np.zeros(n_img, np.int64)
    nonempty = rng.permutation(n_img)[:n_nonempty]
    if n_nonempty:
        w = rng.lognormal(0.0, st.objects_sigma, size=n_nonempty)
        counts[nonempty] = 1 + rng.multinomial(n_ann - n_nonempty, w / w.sum())
        while (over := counts > st.max_objects).any():
            excess = int((counts[over] - st.max_objects).sum())
            counts[over] = st.max_objects
            room = np.flatnonzero((counts > 0) & (counts < st.max_objects))
            counts[room] += rng.multinomial(excess, np.full(len(room), 1.0 / len(room)))
    ann_img = np.repeat(np.arange(n_img), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ann_crowd = np.zeros(n_ann, bool)
    ann_crowd[first[rng.permutation(nonempty)[:n_crowd]]] = True
    perm = rng.permutation(n_ann)
    ann_img, ann_crowd = ann_img[perm], ann_crowd[perm]

    # ---- categories --------------------------------------------------------------------------
    cat_ids = np.array([c[0] for c in CATEGORIES], np.int64)
    pc = np.array([c[3] for c in CATEGORIES], np.float64)
    pc /= pc.sum()
    dominant = rng.choice(len(pc), size=n_img, p=pc)
    independent = rng.choice(len(pc), size=n_ann, p=pc)
    use_dom = rng.random(n_ann) < st.dominant_category_p
    ann_cat = cat_ids[np.where(use_dom, dominant[ann_img], independent)]

    # ---- boxes (in 1/100 px) -----------------------------------------------------------------
    W = img_w[ann_img].astype(np.float64)
    H = img_h[ann_img].astype(np.float64)
    s = np.where(
        ann_crowd,
        rng.lognormal(st.crowd_sqrt_area_mu, st.crowd_sqrt_area_sigma, size=n_ann),
        rng.lognormal(st.sqrt_area_mu, st.sqrt_area_sigma, size=n_ann),
    )
    box_area = np.where(ann_crowd, s * s, s * s / st.polygon_fill)
    aspect = np.where(
        ann_crowd,
        rng.lognormal(0.0, st.crowd_aspect_sigma, size=n_ann),
        rng.lognormal(st.aspect_mu, st.aspect_sigma, size=n_ann),
    )
    min_side = np.where(ann_crowd, 4.0, 1.0)
    bw = np.clip(np.sqrt(box_area * aspect), min_side, W)
    bh = np.clip(np.sqrt(box_area / aspect), min_side, H)
    wc = np.floor(bw * 100).astype(np.int64)
    hc = np.floor(bh * 100).astype(np.int64)
    xc = np.floor(rng.random(n_ann) * (W * 100 - wc + 1)).astype(np.int64)
    yc = np.floor(rng.random(n_ann) * (H * 100 - hc + 1)).astype(np.int64)
    zero = ~ann_crowd & (rng.random(n_ann) < st.zero_box_fraction)
    zero_w = rng.random(n_ann) < 0.5
    wc[zero & zero_w] = 0
    hc[zero & ~zero_w] = 0

    # ---- polygons (non-crowd) ----------------------------------------------------------------
    lo, hi = st.poly_points
    npts = np.where(ann_crowd, 0, rng.integers(lo, hi + 1, size=n_ann))
    pt_start = np.concatenate([[0], np.cumsum(npts)]).astype(np.int64)
    n_pts = int(pt_start[-1])
    owner = np.repeat(np.arange(n_ann), npts)
    j = np.arange(n_pts) - pt_start[:-1][owner]
    phase = rng.uniform(0.0, 2 * np.pi, size=n_ann)
    theta = 2 * np.pi * (j + rng.uniform(-0.35, 0.35, size=n_pts)) / npts[owner] + phase[owner]
    rad = rng.uniform(*st.poly_radius, size=n_pts)
    del j
    hw = wc[owner] / 2.0
    hh = hc[owner] / 2.0
    x0 = xc[owner]
    y0 = yc[owner]
    px = np.clip(np.rint(x0 + hw + rad * np.cos(theta) * hw).astype(np.int64), x0, x0 + wc[owner])
    py = np.clip(np.rint(y0 + hh + rad * np.sin(theta) * hh).astype(np.int64), y0, y0 + hc[owner])
    del theta, rad, hw, hh, x0, y0, owner
    coords_c = np.empty(2 * n_pts, np.int32)
    coords_c[0::2] = px
    coords_c[1::2] = py

    ann_bbox_c = np.stack([xc, yc, wc, hc], axis=1)
    ann_area = np.zeros(n_ann, np.float64)
    poly = np.flatnonzero(~ann_crowd)
    if len(poly):
        starts = pt_start[poly]
        minx = np.minimum.reduceat(px, starts)
        miny = np.minimum.reduceat(py, starts)
        ann_bbox_c[poly, 0] = minx
        ann_bbox_c[poly, 1] = miny
        ann_bbox_c[poly, 2] = np.maximum.reduceat(px, starts) - minx
        ann_bbox_c[poly, 3] = np.maximum.reduceat(py, starts) - miny
        nxt = np.arange(1, n_pts + 1)
        nxt[pt_start[poly + 1] - 1] = starts
        cross = px * py[nxt] - px[nxt] * py
        ann_area[poly] = np.abs(np.add.reduceat(cross, starts)) / 20_000.0  # (1/100 px)^2 / 2
        del nxt, cross
    del px, py

    # ---- crowd RLE ---------------------------------------------------------------------------
    rle: dict[int, list[int]] = {}
    for k in np.flatnonzero(ann_crowd).tolist():
        iw, ih = int(img_w[ann_img[k]]), int(img_h[ann_img[k]])
        bx0 = min(int(xc[k]) // 100, iw - 1)
        bx1 = max(bx0 + 1, min(iw, -(-int(xc[k] + wc[k]) // 100)))
        by0 = min(int(yc[k]) // 100, ih - 1)
        by1 = max(by0 + 1, min(ih, -(-int(yc[k] + hc[k]) // 100)))
        ncols, bh_px = bx1 - bx0, by1 - by0
        # blob: the top edge dips towards the sides, both edges are jagged
        shape = 1.0 - np.sin(np.pi * (np.arange(ncols) + 0.5) / ncols)
        top = by0 + np.rint(bh_px * 0.4 * shape * rng.uniform(0.3, 1.0, ncols)).astype(np.int64)
        bot = by1 - np.rint(bh_px * 0.1 * rng.random(ncols)).astype(np.int64)
        bot = np.maximum(bot, top + 1)
        fg = bot - top
        runs = np.empty(2 * ncols + 1, np.int64)
        runs[1::2] = fg
        runs[0] = bx0 * ih + top[0]
        runs[2:-1:2] = (ih - bot[:-1]) + top[1:]
        runs[-1] = (ih - bot[-1]) + (iw - bx1) * ih
        rle[k] = runs.tolist()
        ann_bbox_c[k] = (bx0 * 100, int(top.min()) * 100, ncols * 100, int(bot.max() - top.min()) * 100)
        ann_area[k] = float(fg.sum())

    # ---- ids ---------------------------------------------------------------------------------
    ann_ids = np.empty(n_ann, np.int64)
    n_poly = n_ann - n_crowd
    ann_ids[~ann_crowd] = np.sort(rng.choice(max(int(n_poly * 1.06), n_poly) + 1, size=n_poly, replace=False) + 1)
    ann_ids[ann_crowd] = st.crowd_id_base + img_ids[ann_img[ann_crowd]]

    return _Plan(
        preset=preset,
        img_ids=img_ids,
        img_w=img_w,
        img_h=img_h,
        img_license=img_license,
        img_dates=img_dates,
        img_flickr=img_flickr,
        ann_ids=ann_ids,
        ann_img=ann_img,
        ann_cat=ann_cat,
        ann_crowd=ann_crowd,
        ann_bbox_c=ann_bbox_c,
        ann_area=ann_area,
        pt_start=pt_start,
        coords_c=coords_c,
        rle=rle,
    )


def _info(plan: _Plan, seed: int, scale: float) -> dict[str, Any]:
    return {
        "description": f"Synthetic COCO {plan.preset.name}-like dataset (cocostat benchmarks.synth, "
        f"seed={seed}, scale={scale:g})",
        "url": "http://cocodataset.org",
        "version": "1.0",
        "year": 2017,
        "contributor": "cocostat benchmarks.synth",
        "date_created": "2017/09/01",
    }


def _categories() -> list[dict[str, Any]]:
    return [{"supercategory": sc, "id": cid, "name": name} for cid, name, sc, _ in CATEGORIES]


def _images(plan: _Plan) -> list[dict[str, Any]]:
    split = plan.preset.name
    return [
        {
            "license": lic,
            "file_name": f"{iid:012d}.jpg",
            "coco_url": f"http://images.cocodataset.org/{split}/{iid:012d}.jpg",
            "height": h,
            "width": w,
            "date_captured": date,
            "flickr_url": flickr,
            "id": iid,
        }
        for iid, w, h, lic, date, flickr in zip(
            plan.img_ids.tolist(),
            plan.img_w.tolist(),
            plan.img_h.tolist(),
            plan.img_license.tolist(),
            plan.img_dates,
            plan.img_flickr,
            strict=True,
        )
    ]


def _annotations(plan: _Plan, lo: int, hi: int) -> list[dict[str, Any]]:
    """Annotation dicts ``lo:hi`` (plain Python objects)."""
    p0, p1 = int(plan.pt_start[lo]), int(plan.pt_start[hi])
    flat = (plan.coords_c[2 * p0 : 2 * p1] / 100.0).tolist()
    bounds = ((plan.pt_start[lo : hi + 1] - p0) * 2).tolist()
    img_idx = plan.ann_img[lo:hi]
    out = []
    for k, s, e, crowd, area, iid, ih, iw, bbox, cat, aid in zip(
        range(lo, hi),
        bounds[:-1],
        bounds[1:],
        plan.ann_crowd[lo:hi].tolist(),
        plan.ann_area[lo:hi].tolist(),
        plan.img_ids[img_idx].tolist(),
        plan.img_h[img_idx].tolist(),
        plan.img_w[img_idx].tolist(),
        (plan.ann_bbox_c[lo:hi] / 100.0).tolist(),
        plan.ann_cat[lo:hi].tolist(),
        plan.ann_ids[lo:hi].tolist(),
        strict=True,
    ):
        seg: Any = {"counts": plan.rle[k], "size": [ih, iw]} if crowd else [flat[s:e]]
        out.append(
            {
                "segmentation": seg,
                "area": area,
                "iscrowd": 1 if crowd else 0,
                "image_id": iid,
                "bbox": bbox,
                "category_id": cat,
                "id": aid,
            }
        )
    return out


def generate(like: str = "train2017", seed: int = 0, scale: float = 1.0) -> dict[str, Any]:
    """The whole synthetic annotation file as a dict of plain Python objects."""
    plan = _plan(like, seed, scale)
    return {
        "info": _info(plan, seed, scale),
        "licenses": [dict(lic) for lic in LICENSES],
        "images": _images(plan),
        "annotations": _annotations(plan, 0, len(plan.ann_ids)),
        "categories": _categories(),
    }


def write(
    path: str | os.PathLike[str],
    like: str = "train2017",
    seed: int = 0,
    scale: float = 1.0,
    *,
    chunk_size: int = 100_000,
) -> Path:
    """Write ``generate(like, seed, scale)`` as compact JSON to ``path``; return the path.

    Annotations are built and serialised ``chunk_size`` at a time (orjson) and streamed into a
    temporary file next to ``path``, which then replaces ``path`` atomically.
    """
    path = Path(path)
    plan = _plan(like, seed, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 24) as f:
            f.write(b'{"info":')
            f.write(orjson.dumps(_info(plan, seed, scale)))
            f.write(b',"licenses":')
            f.write(orjson.dumps(list(LICENSES)))
            f.write(b',"images":')
            f.write(orjson.dumps(_images(plan)))
            f.write(b',"annotations":[')
            n_ann = len(plan.ann_ids)
            for lo in range(0, n_ann, chunk_size):
                if lo:
                    f.write(b",")
                chunk = orjson.dumps(_annotations(plan, lo, min(lo + chunk_size, n_ann)))
                f.write(memoryview(chunk)[1:-1])
                del chunk
            f.write(b'],"categories":')
            f.write(orjson.dumps(_categories()))
            f.write(b"}")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def write_for_benchmark(
    folder: str | os.PathLike[str], like: str = "train2017", scale: float = 1.0, seed: int = 0
) -> Path:
    """Write ``FOLDER/instances_LIKE_synth.json`` and say on stderr how large it is and how long it took."""
    path = Path(folder) / f"instances_{like}_synth.json"
    t = time.perf_counter()
    write(path, like=like, seed=seed, scale=scale)
    print(
        f"generated {path} ({path.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - t:.1f} s", file=sys.stderr
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.synth",
        description="Write a synthetic COCO instances JSON file with real-scale statistics.",
    )
    parser.add_argument(
        "--like", choices=sorted(PRESETS), default="train2017", help="preset whose counts to mimic (default: train2017)"
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="output .json path")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplier of image and annotation counts (default: 1.0)"
    )
    args = parser.parse_args(argv)
    try:
        expected_counts(args.like, args.scale)
    except ValueError as exc:
        parser.error(str(exc))
    t0 = time.perf_counter()
    out = write(args.output, like=args.like, seed=args.seed, scale=args.scale)
    dt = time.perf_counter() - t0
    n_img, n_ann, n_crowd = expected_counts(args.like, args.scale)
    size = out.stat().st_size
    print(
        f"wrote {out}: {n_img:,} images, {n_ann:,} annotations ({n_crowd:,} crowd), {size / 1e6:,.1f} MB in {dt:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
