"""Boxes drawn on images (Pillow): ``cocostat predict --draw K`` and ``cocostat errors --draw-dir DIR``.

Both pictures are made of the same mark, drawn by :func:`draw_box`: a rectangle outline, optionally
over a wider dark halo (so a light outline shows on any background), optionally with a label on a
filled tab in the box's colour. The tab sits just above the box when there is room, else inside its
top edge; its text is black on light colours and white on dark ones (ITU-R BT.601 luma of the colour
>= 150), so every label stays readable. Coordinates are xyxy in the pixels of the image drawn on.

- :func:`draw_detections` (``predict --draw``): detections coloured by class, labelled
  ``name score``, over the annotations as thin white boxes on a black halo;
- :func:`draw_examples` (``errors --draw-dir``): objects green when found, orange when missed, grey for
  crowd; detections blue when matched, red when not, labelled ``name score``.

Each picture is written atomically as PNG; a loop over the few drawn images is fine here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cocostat.atomic import atomic_path
from cocostat.data import Dataset
from cocostat.errors import DatasetNotFoundError

if TYPE_CHECKING:
    from cocostat.evaluate import Detections, Matching

__all__ = ["draw_box", "draw_detections", "draw_examples", "load_font", "text_colour"]

#: class colours of ``predict --draw`` (class index modulo 20).
PALETTE = [
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
    "#008080",
    "#e6beff",
    "#9a6324",
    "#fffac8",
    "#800000",
    "#aaffc3",
    "#808000",
    "#ffd8b1",
    "#000075",
    "#808080",
]
#: ``errors --draw-dir``: objects found / missed / crowd, detections matched / not.
GT_FOUND, GT_MISSED, GT_CROWD = (40, 200, 40), (255, 150, 0), (160, 160, 160)
DET_TP, DET_FP = (30, 144, 255), (230, 30, 60)


def load_font(size: int):
    """Pillow's default font at ``size`` pixels (a fixed-size bitmap font on Pillow < 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def text_colour(colour) -> str:
    """``"black"`` on a light ``colour`` (``"#rrggbb"`` or an (r, g, b) tuple), ``"white"`` on a dark one."""
    if isinstance(colour, str):
        r, g, b = (int(colour.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
    else:
        r, g, b = colour[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b >= 150 else "white"


def draw_box(
    draw, box: Sequence[float], colour, *, width: int = 3, label: str | None = None, font=None, halo=None
) -> None:
    """Draw one box, and its label, with a ``PIL.ImageDraw.ImageDraw``.

    Args:
        draw: the ``ImageDraw`` of the image.
        box: ``[x1, y1, x2, y2]`` in that image's pixels (x2 < x1 or y2 < y1 are drawn as x1 or y1).
        colour: outline and tab colour (``"#rrggbb"``, a name, or an (r, g, b) tuple).
        width: outline width in pixels.
        label: text on a filled tab at the top-left corner; None for none.
        font: the label's font (default :func:`load_font` (14)).
        halo: colour of an outline 2 pixels wider drawn under the box (None: no halo).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    bb = [x1, y1, max(x1, x2), max(y1, y2)]
    if halo is not None:
        draw.rectangle(bb, outline=halo, width=width + 2)
    draw.rectangle(bb, outline=colour, width=width)
    if label is None:
        return
    font = load_font(14) if font is None else font
    pad = 2
    _, top, _, bottom = draw.textbbox((0, 0), label, font=font)
    text_h = bottom - top
    ty = y1 - text_h - 2 * pad if y1 >= text_h + 2 * pad else y1  # above the box, else inside its top edge
    tb = draw.textbbox((x1 + pad, ty), label, font=font)
    draw.rectangle([tb[0] - pad, tb[1] - pad, tb[2] + pad, tb[3] + pad], fill=colour)
    draw.text((x1 + pad, ty), label, fill=text_colour(colour), font=font)


def _save(image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def draw_detections(
    dataset: Dataset,
    detections: list[dict],
    image_ids: Sequence[int] | np.ndarray,
    folder: str | os.PathLike,
    *,
    min_score: float,
) -> list[Path]:
    """Save each image with its detections (score >= ``min_score``) and annotations drawn, as PNG.

    Args:
        dataset: names the images (``image_dir``, ``file_name``) and holds the annotations.
        detections: COCO result dicts (``image_id``, ``category_id``, ``bbox`` xywh in original image
            pixels, ``score``), as ``cocostat predict`` writes them.
        image_ids: the COCO image ids to draw.
        folder: where ``<image_id>.png`` files go.
        min_score: detections below this score are not drawn.

    Detections: boxes coloured by class (:data:`PALETTE`), labelled ``name score``, strongest on top;
    annotations: thin white boxes on a black halo. Boxes are scaled to the image file's size when it
    differs from the dataset's ``width``/``height``.
    """
    from PIL import Image, ImageDraw

    folder = Path(folder)
    names = dataset.categories["name"].tolist()
    cat_pos = {int(c): i for i, c in enumerate(dataset.categories["category_id"].tolist())}
    by_image: dict[int, list[dict]] = {}
    for d in detections:
        if d["score"] >= min_score:
            by_image.setdefault(int(d["image_id"]), []).append(d)
    pos_of = {int(v): i for i, v in enumerate(dataset.image_id.tolist())}
    font = load_font(14)
    written: list[Path] = []
    boxes = dataset.boxes_xyxy()  # (G, 4) float, xyxy, original pixels
    image_dir = dataset.image_dir
    if image_dir is None:
        if len(image_ids):
            raise DatasetNotFoundError(f"drawing needs the images of {dataset.name}: pass --images DIR (or --root)")
        return written
    for image_id in image_ids:
        i = pos_of[int(image_id)]
        with Image.open(image_dir / str(dataset.file_name[i])) as src:
            im = src.convert("RGB")
        sx, sy = im.width / dataset.width[i], im.height / dataset.height[i]
        draw = ImageDraw.Draw(im)
        for x1, y1, x2, y2 in boxes[dataset.offsets[i] : dataset.offsets[i + 1]].tolist():
            draw_box(draw, [x1 * sx, y1 * sy, x2 * sx, y2 * sy], "white", width=1, halo="black")
        for d in sorted(by_image.get(int(image_id), []), key=lambda d: d["score"]):
            x, y, w, h = d["bbox"]
            ci = cat_pos.get(int(d["category_id"]), 0)
            draw_box(
                draw,
                [x * sx, y * sy, (x + w) * sx, (y + h) * sy],
                PALETTE[ci % len(PALETTE)],
                width=3,
                label=f"{names[ci]} {d['score']:.2f}",
                font=font,
            )
        written.append(_save(im, folder / f"{int(image_id)}.png"))
    return written


def draw_examples(
    dataset: Dataset,
    detections: Detections,
    matching: Matching,
    found: np.ndarray,
    images: np.ndarray,
    folder: str | os.PathLike,
    conf: float = 0.25,
) -> list[Path]:
    """Draw ground truth and detections (score >= conf) on the given images; write PNGs atomically.

    Args:
        dataset: the images and their objects.
        detections, matching: the detections and their matching (:mod:`cocostat.evaluate`).
        found: (G,) bool, objects found at ``conf`` (:func:`cocostat.diagnose.found_objects`).
        images: (I,) int64 COCO image ids, in rank order.
        folder: where ``NN_<image stem>.png`` files go (NN the rank, from 01).
        conf: detections below this score are not drawn.

    Objects: green when found, orange when not, grey for crowd. Detections: blue when matched, red
    when not, labelled ``name score``, strongest on top. Line width and font grow with the image.

    Raises:
        DatasetNotFoundError: the image folder is unknown or an image file is missing (checked
            before anything is written).
    """
    from PIL import Image, ImageDraw

    images = np.asarray(images, np.int64)
    image_dir = dataset.image_dir
    if images.size and image_dir is None:
        raise DatasetNotFoundError(f"drawing needs the images of {dataset.name}: pass --images DIR (or --root)")
    idx = np.searchsorted(dataset.image_id, images)
    paths = [Path(image_dir) / str(dataset.file_name[k]) for k in idx] if image_dir is not None else []
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise DatasetNotFoundError(f"drawing: {len(absent)} image file(s) not found, e.g. {absent[0]}")
    names = dataset.categories["name"].to_numpy(dtype=object)
    folder = Path(folder)
    gt_boxes, det_boxes = dataset.boxes_xyxy(), detections.boxes_xyxy()  # (G, 4), (P, 4) xyxy pixels
    out = []
    for rank, (k, path) in enumerate(zip(idx, paths, strict=True), start=1):
        with Image.open(path) as src:
            img = src.convert("RGB")
        draw = ImageDraw.Draw(img)
        width = max(2, round(max(img.size) / 300))
        font = load_font(max(12, max(img.size) // 45))
        for j in range(dataset.offsets[k], dataset.offsets[k + 1]):
            colour = GT_CROWD if dataset.iscrowd[j] else (GT_FOUND if found[j] else GT_MISSED)
            draw_box(draw, gt_boxes[j].tolist(), colour, width=width)
        d = np.flatnonzero((detections.image_index == k) & matching.kept & (detections.score >= conf))
        for j in d[np.argsort(detections.score[d], kind="stable")]:  # strongest drawn last, on top
            draw_box(
                draw,
                det_boxes[j].tolist(),
                DET_TP if matching.tp[j] else DET_FP,
                width=width,
                label=f"{names[detections.class_idx[j]]} {detections.score[j]:.2f}",
                font=font,
            )
        out.append(_save(img, folder / f"{rank:02d}_{Path(str(dataset.file_name[k])).stem}.png"))
    return out
