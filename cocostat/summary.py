"""``cocostat info``: what a COCO dataset holds.

Definitions (all annotations count, iscrowd included, unless a line says otherwise):

- ``images``: images listed in the file; ``images_with_annotations``: those with at least one annotation.
- ``annotations``: all annotations; ``crowd``: those with ``iscrowd = 1``.
- per category: ``annotations`` of that category and ``images`` holding at least one of them.
- size buckets, by the annotation's ``area`` field as COCOeval uses it: small ``area < 32**2``,
  medium ``32**2 <= area < 96**2``, large ``area >= 96**2``. (COCOeval's own ranges are closed at
  both ends, so a box of area exactly 32**2 is in both of its small and medium ranges; we count it
  once, as medium.)
- box percentiles (0, 5, 25, 50, 75, 95, 100) of bbox width and height in pixels, and of aspect ratio
  ``w / h`` over boxes with ``w > 0`` and ``h > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cocostat.data import Dataset

PERCENTILES = (0, 5, 25, 50, 75, 95, 100)
SMALL_AREA = 32**2
LARGE_AREA = 96**2


@dataclass(frozen=True, eq=False)
class DatasetInfo:
    """Counts and distributions of one dataset; see the module docstring for definitions."""

    name: str
    images: int
    images_with_annotations: int
    annotations: int
    crowd: int
    categories: int
    per_category: pd.DataFrame  # columns: category_id, name, annotations, images
    size_buckets: dict[str, int]
    box_percentiles: pd.DataFrame  # index: width, height, aspect; columns: p0 .. p100

    def to_dict(self) -> dict:
        return {
            "dataset": self.name,
            "images": self.images,
            "images_with_annotations": self.images_with_annotations,
            "annotations": self.annotations,
            "crowd": self.crowd,
            "categories": self.categories,
            "size_buckets": dict(self.size_buckets),
            "box_percentiles": {
                stat: {col: float(v) for col, v in row.items()} for stat, row in self.box_percentiles.iterrows()
            },
            "per_category": [
                {
                    "category_id": int(r.category_id),
                    "name": r.name,
                    "annotations": int(r.annotations),
                    "images": int(r.images),
                }
                for r in self.per_category.itertuples(index=False)
            ],
        }

    def to_frame(self) -> pd.DataFrame:
        """One ``dataset`` row with the headline counts, then one ``category`` row per category.

        Columns: ``scope``, ``category_id``, ``name``, ``images``, ``images_with_annotations``,
        ``annotations``, ``crowd``, ``categories``, ``small``, ``medium``, ``large``. A category's
        ``images`` are the images holding one of its annotations; columns a category row has no
        value for are empty.
        """
        head = {
            "scope": "dataset",
            "category_id": pd.NA,
            "name": self.name,
            "images": self.images,
            "images_with_annotations": self.images_with_annotations,
            "annotations": self.annotations,
            "crowd": self.crowd,
            "categories": self.categories,
            **self.size_buckets,
        }
        cats = self.per_category.assign(scope="category")
        frame = pd.concat([pd.DataFrame([head]), cats], ignore_index=True)[list(head)]
        ints = [c for c in head if c not in ("scope", "name")]
        return frame.astype({c: "Int64" for c in ints})

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        overview = pd.DataFrame(
            {
                "statistic": [
                    "images",
                    "images with annotations",
                    "annotations",
                    "crowd annotations",
                    "categories",
                    "small (area < 32²)",
                    "medium",
                    "large (area >= 96²)",
                ],
                "value": [
                    self.images,
                    self.images_with_annotations,
                    self.annotations,
                    self.crowd,
                    self.categories,
                    *self.size_buckets.values(),
                ],
            }
        )
        pct = self.box_percentiles.reset_index().rename(columns={"index": "box"})
        return [
            (f"dataset {self.name}", overview),
            ("box size percentiles (pixels; aspect = w/h)", pct),
            ("per category", self.per_category),
        ]


def info(ds: Dataset) -> DatasetInfo:
    """Summarise a dataset. Vectorised over annotations; see the module docstring for definitions."""
    counts = ds.counts
    cls = ds.class_idx
    per_cls_anns = np.bincount(cls, minlength=ds.num_classes)
    # images per class: unique (image, class) pairs
    pair = np.unique(ds.image_index * max(ds.num_classes, 1) + cls)
    per_cls_imgs = np.bincount(pair % max(ds.num_classes, 1), minlength=ds.num_classes)
    per_category = pd.DataFrame(
        {
            "category_id": ds.categories["category_id"].to_numpy(),
            "name": ds.categories["name"].to_numpy(),
            "annotations": per_cls_anns[: ds.num_classes],
            "images": per_cls_imgs[: ds.num_classes],
        }
    )
    area = ds.area
    buckets = {
        "small": int((area < SMALL_AREA).sum()),
        "medium": int(((area >= SMALL_AREA) & (area < LARGE_AREA)).sum()),
        "large": int((area >= LARGE_AREA).sum()),
    }
    w, h = ds.bbox[:, 2], ds.bbox[:, 3]
    pos = (w > 0) & (h > 0)
    with np.errstate(over="ignore"):  # a 1e-300 px high box has an aspect beyond float64: the largest float
        aspect = np.minimum(w[pos] / h[pos], np.finfo(np.float64).max)
    rows = {"width": w, "height": h, "aspect": aspect}
    box_pct = pd.DataFrame(
        {
            name: (np.percentile(v, PERCENTILES) if v.size else np.full(len(PERCENTILES), np.nan))
            for name, v in rows.items()
        },
        index=[f"p{p}" for p in PERCENTILES],
    ).T
    return DatasetInfo(
        name=ds.name,
        images=ds.num_images,
        images_with_annotations=int((counts > 0).sum()),
        annotations=ds.num_annotations,
        crowd=int(ds.iscrowd.sum()),
        categories=ds.num_classes,
        per_category=per_category,
        size_buckets=buckets,
        box_percentiles=box_pct,
    )
