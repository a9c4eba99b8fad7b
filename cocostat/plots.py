"""The plots only ``cocostat report`` draws: box sizes and categories (``info``), anchors
(``anchor-audit``), the COCO summary and per-class AP@0.5 (``eval``), dAP per error type (``errors``).

Where a plot lives: a plot that its own command draws (``--plot``: overlap histograms in
:mod:`cocostat.pairs`, the kmeans density in :mod:`cocostat.anchors`, the mismatch 2-D histograms in
:mod:`cocostat.mismatch`) sits beside its analysis; the ones drawn only for the report are here, one
module, because they share one look (figure size, dpi, colours) and one atomic save, and so that the
analysis modules neither import matplotlib nor carry code their commands never run. Each function
takes an analysis result (or the dataset) and a path, writes one PNG atomically and returns the path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cocostat.atomic import atomic_path

if TYPE_CHECKING:  # the CLI imports this module for KMEANS_PLOT; it need not pay for cocostat.data
    from cocostat.data import Dataset

__all__ = [
    "KMEANS_PLOT",
    "plot_audit",
    "plot_box_sizes",
    "plot_categories",
    "plot_errors",
    "plot_eval_classes",
    "plot_eval_summary",
]

#: file name of kmeans' plot inside a plot folder: ``cocostat kmeans --plot DIR`` writes
#: ``DIR/kmeans_anchors.png`` (:func:`cocostat.anchors.plot_anchors`), and ``cocostat report`` links it.
KMEANS_PLOT = "kmeans_anchors.png"

_BLUE, _RED, _GREY, _ORANGE, _GREEN = "#4c72b0", "#c44e52", "#8c8c8c", "#dd8452", "#55a868"
_IOU_NAMES = {"iou": "IoU", "giou": "GIoU", "diou": "DIoU", "ciou": "CIoU"}


def _figure(width: float, height: float):
    # matplotlib's object API with its Agg canvas: no pyplot global state, no backend switch
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_box_sizes(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Histogram of ``sqrt(area)`` of every annotation (log x) with COCO's size buckets marked.

    ``area`` is the annotation's ``area`` field, as ``cocostat info`` buckets it (small below 32², large
    from 96²); annotations with area 0 cannot sit on a log axis and are counted in the title.
    """
    from cocostat.summary import LARGE_AREA, SMALL_AREA

    path = Path(path)
    side = np.sqrt(np.maximum(dataset.area, 0.0))  # (G,) pixels
    pos = side[side > 0]
    fig = _figure(8, 4.6)
    ax = fig.add_subplot()
    n = int(side.size)
    if pos.size:
        lo, hi = min(float(pos.min()), 1.0), max(float(pos.max()), 1000.0)
        edges = np.geomspace(lo, hi * 1.0001, 61)
        ax.hist(pos, bins=edges, color=_BLUE, alpha=0.9, zorder=2)
        ax.set_xscale("log")
        ax.set_xlim(edges[0], edges[-1])
    else:
        ax.text(0.5, 0.5, "no annotation with area > 0", transform=ax.transAxes, ha="center", va="center")
    small = int((dataset.area < SMALL_AREA).sum())
    large = int((dataset.area >= LARGE_AREA).sum())
    medium = n - small - large

    def share(k: int) -> str:
        return f"{100.0 * k / n:.1f}%" if n else "-"

    lo_x, hi_x = ax.get_xlim() if pos.size else (1.0, 1000.0)
    s_side, l_side = math.sqrt(SMALL_AREA), math.sqrt(LARGE_AREA)
    for a, b, colour, label in (
        (lo_x, s_side, _RED, f"small, area < 32²: {small:,} ({share(small)})"),
        (s_side, l_side, _GREY, f"medium: {medium:,} ({share(medium)})"),
        (l_side, hi_x, _ORANGE, f"large, area >= 96²: {large:,} ({share(large)})"),
    ):
        ax.axvspan(a, b, color=colour, alpha=0.15, lw=0, label=label, zorder=0)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.2)  # room for the legend
    ax.set_xlabel("sqrt(annotation area) (px, log scale)")
    ax.set_ylabel("annotations per bin")
    ax.set_title(
        f"{dataset.name}: object size of {n:,} annotations (iscrowd included)\n"
        f"not drawn: {n - int(pos.size):,} with area 0",
        fontsize=10,
    )
    ax.legend(loc="upper right", fontsize=8.5, title="COCO size bucket", title_fontsize=8.5)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_categories(report, path: str | os.PathLike) -> Path:
    """Horizontal bars of annotations per category (``cocostat info``'s per-category table), most first."""
    path = Path(path)
    pc = report.per_category.sort_values(["annotations", "category_id"], ascending=[False, True], kind="stable")
    n = len(pc)
    fig = _figure(8, max(2.6, 0.16 * n + 1.3))
    ax = fig.add_subplot()
    if n:
        y = np.arange(n)
        counts = pc["annotations"].to_numpy()
        ax.barh(y, counts, color=_BLUE, height=0.75)
        ax.set_yticks(y, [str(v) for v in pc["name"]], fontsize=7.5)
        ax.invert_yaxis()
        ax.set_ylim(n - 0.4, -0.6)
        top = max(int(counts.max()), 1)
        for yi, c in zip(y, counts, strict=True):
            ax.text(c + top * 0.01, yi, f"{int(c):,}", va="center", fontsize=7)
        ax.set_xlim(0, top * 1.12)
    else:
        ax.text(0.5, 0.5, "no categories", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("annotations (iscrowd included)")
    ax.set_ylabel("category")
    ax.set_title(
        f"{report.name}: annotations per category ({n} categories, {report.annotations:,} annotations)", fontsize=10
    )
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def plot_audit(audit, path: str | os.PathLike) -> Path:
    """Per anchor: objects the assigner matches, and mean IoUs (wh-IoU at matching; with predictions the
    mean IoU of the matched predictions and of all centre-cell predictions), from ``anchor-audit``."""
    path = Path(path)
    pa = audit.per_anchor
    a = len(pa)
    fig = _figure(max(8, 0.75 * a + 3), 6.4)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    x = np.arange(a)
    labels = [f"{w:g}x{h:g}\nlevel {int(lv)}" for w, h, lv in zip(pa["w"], pa["h"], pa["level"], strict=True)]
    matched = pa["matched"].to_numpy()
    ax1.bar(x, matched, color=_BLUE, width=0.7)
    top = max(int(matched.max()) if a else 1, 1)
    for xi, m in zip(x, matched, strict=True):
        ax1.text(xi, m + top * 0.02, f"{int(m):,}", ha="center", fontsize=8)
    ax1.set_ylim(0, top * 1.15)
    ax1.set_ylabel("objects matched")
    ax1.set_title(
        f"anchor audit: anchors {audit.anchors}, assigner {audit.assigner}, input {audit.size} px\n"
        f"{audit.source}; {audit.objects:,} objects, {audit.unmatched_objects:,} matched to no anchor",
        fontsize=10,
    )
    ax1.grid(True, axis="y", alpha=0.3)
    series = [("match_wh_iou", "mean wh-IoU of anchor and matched objects", _GREY)]
    if audit.has_predictions:
        iou = _IOU_NAMES.get(audit.iou, audit.iou)
        series += [
            ("pred_iou_matched", f"mean {iou} of its matched predictions", _GREEN),
            ("pred_iou_all", f"mean {iou} of its centre-cell prediction, all objects", _ORANGE),
        ]
    width = 0.8 / len(series)
    for k, (col, label, colour) in enumerate(series):
        v = pd.to_numeric(pa[col], errors="coerce").to_numpy(dtype=np.float64)
        ax2.bar(x - 0.4 + width * (k + 0.5), np.nan_to_num(v), width=width, color=colour, label=label)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("mean IoU")
    ax2.set_xticks(x, labels, fontsize=8)
    ax2.set_xlabel("anchor (w x h, input pixels) and output level")
    ax2.legend(loc="upper left", fontsize=8, ncol=len(series) if len(series) < 3 else 1)
    ax2.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def plot_eval_summary(report, path: str | os.PathLike) -> Path:
    """The 12 COCO numbers of ``cocostat eval`` as bars (AP on the left, AR on the right)."""
    from cocostat.evaluate import STAT_NAMES

    path = Path(path)
    fig = _figure(8.5, 4.4)
    ax = fig.add_subplot()
    names = list(STAT_NAMES)
    vals = np.asarray(report.stats, dtype=np.float64)
    x = np.arange(len(names))
    colours = [_BLUE if n.startswith("AP") else _ORANGE for n in names]
    shown = np.where(vals < 0, 0.0, vals)  # pycocotools gives -1 where a statistic has no object
    ax.bar(x, shown, color=colours, width=0.7)
    for xi, v in zip(x, vals, strict=True):
        ax.text(xi, max(v, 0) + 0.015, "n/a" if v < 0 else f"{v:.3f}", ha="center", fontsize=8)
    ax.set_xticks(x, names, fontsize=9)
    ax.set_ylim(0, min(1.0, max(float(shown.max(initial=0)), 0.05) * 1.25))
    ax.set_xlabel("COCO statistic (AP: average precision, AR: average recall; s/m/l: object size)")
    ax.set_ylabel("value (0 to 1)")
    kind = "class-agnostic " if report.class_agnostic else ""
    ax.set_title(f"COCO {kind}bbox evaluation on {report.dataset}: {report.detections:,} detections", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def plot_eval_classes(report, path: str | os.PathLike) -> Path:
    """Per-class AP@0.5 (COCOeval's, as ``cocostat eval --per-class`` lists it), highest first."""
    path = Path(path)
    t = report.table.iloc[1:]
    t = t[t["Targets"] > 0].sort_values(["mAP@0.5", "Class"], ascending=[False, True], kind="stable")
    n = len(t)
    fig = _figure(8, max(2.6, 0.16 * n + 1.3))
    ax = fig.add_subplot()
    if n:
        y = np.arange(n)
        ap = t["mAP@0.5"].to_numpy(dtype=np.float64)
        ax.barh(y, np.nan_to_num(ap), color=_BLUE, height=0.75)
        ax.set_yticks(y, [f"{c} ({int(g)})" for c, g in zip(t["Class"], t["Targets"], strict=True)], fontsize=7.5)
        ax.set_ylim(n - 0.4, -0.6)
        for yi, v in zip(y, ap, strict=True):
            ax.text(
                (0 if math.isnan(v) else v) + 0.01, yi, "-" if math.isnan(v) else f"{v:.2f}", va="center", fontsize=7
            )
        mean = float(report.table.iloc[0]["mAP@0.5"])
        ax.axvline(mean, color=_RED, ls="--", lw=1.2, label=f"mean over classes: {mean:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no class with targets", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("AP at IoU 0.5 (COCOeval, area all, 100 detections)")
    ax.set_ylabel("class (targets)")
    ax.set_title(f"{report.dataset}: AP@0.5 per class ({n} classes with targets)", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def plot_errors(report, path: str | os.PathLike) -> Path:
    """dAP of each TIDE error type and of the two special errors (``cocostat errors``), with counts."""
    path = Path(path)
    e, s = report.errors, report.special
    names = [*e["type"], *s["type"]]
    vals = np.concatenate([e["dAP"].to_numpy(np.float64), s["dAP"].to_numpy(np.float64)])
    counts = [*e["count"], *s["count"]]
    colours = [_BLUE] * len(e) + [_GREY] * len(s)
    fig = _figure(8.5, 4.4)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x, np.nan_to_num(vals), color=colours, width=0.7)
    top = max(float(np.nan_to_num(vals).max(initial=0)), 1.0)
    for xi, v, c in zip(x, vals, counts, strict=True):
        ax.text(xi, (0 if math.isnan(v) else v) + top * 0.02, f"{v:.2f}\n({int(c):,})", ha="center", fontsize=8)
    ax.set_ylim(0, top * 1.25)
    ax.set_xticks(x, names, fontsize=9)
    ax.set_xlabel("error type (blue: main, grey: special; count in brackets)")
    ax.set_ylabel(f"dAP (AP@{report.iou:g} points gained by fixing it)")
    ax.set_title(
        f"errors of {report.detections:,} detections on {report.dataset}: AP@{report.iou:g} = {report.ap:.2f}",
        fontsize=10,
    )
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)
