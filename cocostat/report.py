"""``cocostat report``: every analysis the inputs allow, on one markdown page and one HTML page.

:func:`build_report` runs what the inputs allow (in page order here; the analyses that read
predictions run first, so predictions of another dataset stop the report before anything is drawn):

- ``predict`` (with ``cfg`` and ``weights``): the model runs once over the images into
  ``OUT/predictions/`` and every later analysis reads that folder;
- ``info``, ``overlap``, ``kmeans`` (compared with the yolov3, yolov3-spp and yolov3-tiny presets;
  ``k`` and the levels follow the model's anchors when there are predictions, else 9 anchors on
  3 levels), ``anchor-audit`` (box sizes only when there are no predictions): always;
- ``mismatch``: with predictions; ``eval`` and ``errors``: with predictions holding detections.

Each analysis is the library function its command calls, with that command's defaults except
where the reproducing command written beside it says otherwise (``--plot``, ``--examples 5``,
``--size``, ``-k``). It writes:

- ``OUT/plots/*.png``: the plots of the analyses that draw them (overlap histograms, kmeans density,
  mismatch 2-D histograms) and the ones drawn here for the others: box sizes and categories
  (info), anchors (anchor-audit), COCO summary and per-class AP@0.5 (eval), dAP (errors);
- ``OUT/report.md``: one markdown page, each analysis as markdown tables with its plots after them
  and the exact ``cocostat ...`` command that reproduces its numbers (the dataset written as the
  user gave it);
- ``OUT/report.html``: the same page, self-contained (plots embedded as base64 ``data:`` URIs,
  CSS inline, no script, no external reference).

Every file is written atomically. Tables longer than :data:`FOLD_ROWS` rows are folded into a
``<details>`` block. Data-quality warnings of each analysis are listed under it and re-issued.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import io
import math
import os
import re
import shlex
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cocostat import __version__
from cocostat.atomic import atomic_path, write_bytes, write_text
from cocostat.data import SAMPLE_NAME, Dataset, resolve_dataset, sample_path
from cocostat.errors import CocostatWarning, OptionError, check_int
from cocostat.render import format_value

__all__ = [
    "ANALYSES",
    "FOLD_ROWS",
    "KMEANS_COMPARE",
    "ReportResult",
    "ReportSection",
    "build_report",
    "dataset_args",
    "html_table",
    "markdown_table",
    "render_html",
    "render_markdown",
]

#: The analyses of a report, in page order.
ANALYSES = ("predict", "info", "overlap", "kmeans", "anchor-audit", "mismatch", "eval", "errors")
#: Preset anchor sets kmeans is compared with.
KMEANS_COMPARE = ("yolov3", "yolov3-spp", "yolov3-tiny")
#: Worst images listed by anchor-audit and mismatch.
EXAMPLES = 5
#: Tables with more rows than this are folded (``<details>``) on both pages.
FOLD_ROWS = 20
PLOTS = "plots"
#: Every plot file a report may write into ``OUT/plots`` (others there are left alone).
PLOT_FILES = frozenset({
    "info_box_sizes.png", "info_categories.png", "overlap_iou.png", "overlap_ioa.png", "overlap_gap.png",
    "overlap_center.png", "overlap_aspect.png", "kmeans_anchors.png", "anchor_audit.png", "iou_vs_obj.png",
    "iou_vs_score.png", "eval_summary.png", "eval_ap50_per_class.png", "errors_dap.png"})
PREDICTIONS = "predictions"
DEFAULT_SIZE = 416


# --------------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ReportSection:
    """One analysis of a report.

    Attributes:
        name: one of :data:`ANALYSES`.
        status: ``done`` or ``skipped``.
        reason: why it was skipped ("" when done).
        argv: the ``cocostat`` arguments (without the program name) that reproduce its numbers;
            empty when skipped.
        plots: the PNG files written for it.
        result: the analysis' report object (``to_dict``/``to_frame``/``sections``), None when skipped.
        warnings: the data-quality warnings (CocostatWarning) it raised.
        seconds: wall time it took.
    """

    name: str
    status: str
    reason: str = ""
    argv: tuple[str, ...] = ()
    plots: tuple[Path, ...] = ()
    result: object | None = field(default=None, repr=False)
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def command(self) -> str:
        """The reproducing command as one shell line (``""`` when skipped)."""
        return shlex.join(["cocostat", *self.argv]) if self.argv else ""


@dataclass(frozen=True, eq=False)
class ReportResult:
    """What :func:`build_report` ran and wrote.

    Attributes:
        dataset: the dataset's name.
        out_dir: the report folder.
        markdown, html: ``OUT/report.md`` and ``OUT/report.html``.
        analyses: one :class:`ReportSection` per entry of :data:`ANALYSES`, in that order.
        predictions: the predictions folder the analyses read, or None.
        command: the ``cocostat report`` command that builds this report.
        files: every file written (pages, plots, and the predictions folder's files when the model ran).
    """

    dataset: str
    out_dir: Path
    markdown: Path
    html: Path
    analyses: tuple[ReportSection, ...]
    predictions: Path | None
    command: str
    files: tuple[Path, ...]

    def section(self, name: str) -> ReportSection:
        """The :class:`ReportSection` of analysis ``name``."""
        for s in self.analyses:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "out_dir": str(self.out_dir),
            "markdown": str(self.markdown),
            "html": str(self.html),
            "predictions": str(self.predictions) if self.predictions else None,
            "command": self.command,
            "analyses": [
                {"name": s.name, "status": s.status, "reason": s.reason or None,
                 "command": s.command or None, "plots": [str(p) for p in s.plots],
                 "warnings": list(s.warnings), "seconds": round(s.seconds, 3),
                 "result": s.result.to_dict() if s.result is not None else None}
                for s in self.analyses
            ],
            "files": [str(p) for p in self.files],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per analysis: ``analysis``, ``status``, ``reason``, ``plots`` (count), ``seconds``, ``command``."""
        return pd.DataFrame({
            "analysis": [s.name for s in self.analyses],
            "status": [s.status for s in self.analyses],
            "reason": [s.reason for s in self.analyses],
            "plots": [len(s.plots) for s in self.analyses],
            "seconds": [round(s.seconds, 2) for s in self.analyses],
            "command": [s.command for s in self.analyses],
        })

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        frame = self.to_frame()
        frame["status"] = [s.status if s.status == "done" else f"skipped: {s.reason}" for s in self.analyses]
        sizes = [p.stat().st_size if p.is_file() else 0 for p in self.files]
        files = pd.DataFrame({"file": [str(p) for p in self.files], "KiB": [round(b / 1024, 1) for b in sizes]})
        return [(f"report on {self.dataset}: {self.markdown} and {self.html}",
                 frame.drop(columns=["reason", "command"])),
                ("commands that reproduce each analysis",
                 "\n".join(s.command for s in self.analyses if s.command)),
                (f"files written ({len(self.files)}, {sum(sizes) / 1024:.0f} KiB)", files)]


# --------------------------------------------------------------------------------------------------
# Tables for the pages
# --------------------------------------------------------------------------------------------------
def _cell(v) -> str:
    """:func:`cocostat.render.format_value`, with pandas' NA and numpy NaN shown as '-' too."""
    if v is None or v is pd.NA or v is pd.NaT:
        return "-"
    if isinstance(v, (float, np.floating)) and math.isnan(float(v)):
        return "-"
    return format_value(v)


def _numeric(col: pd.Series) -> bool:
    """A column is right-aligned when every present value is a number (not a bool)."""
    if pd.api.types.is_bool_dtype(col):
        return False
    if pd.api.types.is_numeric_dtype(col):
        return True
    vals = [v for v in col if not (v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)))]
    return bool(vals) and all(isinstance(v, (int, float, np.integer, np.floating))
                              and not isinstance(v, (bool, np.bool_)) for v in vals)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
#: every line break ``str.splitlines`` knows (a table row must stay on one line for every reader)
_LINE_BREAKS = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _md_escape(text: str) -> str:
    """Text safe inside a markdown paragraph or table cell: HTML characters as entities, markdown
    punctuation backslash-escaped, line breaks as ``<br>``."""
    return _LINE_BREAKS.sub("<br>", _MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False)))


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``frame`` (its index is not shown).

    Cells are formatted by :func:`cocostat.render.format_value` (NA and NaN as ``-``) and escaped
    (``|``, markdown punctuation, ``<``, ``>``, ``&``; a newline becomes ``<br>``), so a category name
    or file name can never break the table. Numeric columns are right-aligned. Hand-written because
    ``DataFrame.to_markdown`` needs ``tabulate``, which cocostat does not depend on.

    Returns:
        The table, lines joined by ``\\n``, without a trailing newline; a frame without columns
        gives ``""``.
    """
    if frame.shape[1] == 0:
        return ""
    cols = list(frame.columns)
    right = [_numeric(frame[c]) for c in cols]
    lines = ["| " + " | ".join(_md_escape(c) for c in cols) + " |",
             "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_md_escape(_cell(v)) for v in row) + " |")
    return "\n".join(lines)


def html_table(frame: pd.DataFrame) -> str:
    """An HTML ``<table>`` of ``frame``: cells as :func:`markdown_table` formats them, HTML-escaped;
    numeric columns get ``class="num"`` (right-aligned by the page's CSS)."""
    cols = list(frame.columns)
    right = [_numeric(frame[c]) for c in cols]

    def td(tag, text, num):
        attr = ' class="num"' if num else ""
        return f"<{tag}{attr}>{html.escape(str(text))}</{tag}>"

    head = "".join(td("th", c, r) for c, r in zip(cols, right))
    body = "\n".join("<tr>" + "".join(td("td", _cell(v), r) for v, r in zip(row, right)) + "</tr>"
                     for row in frame.itertuples(index=False))
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


# --------------------------------------------------------------------------------------------------
# Plots drawn here (for the analyses that draw none themselves)
# --------------------------------------------------------------------------------------------------
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


def compact_png(path: str | os.PathLike) -> Path:
    """Re-save a PNG as a 256-colour palette PNG (Pillow) when that is smaller, atomically.

    matplotlib writes 32-bit RGBA; a plot holds a few hundred colours, most of them antialiasing, so the
    palette file is about a third of the bytes with no visible change (a colour bar may show steps).
    This keeps the HTML page, which embeds every plot, small.
    """
    from PIL import Image

    path = Path(path)
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    pal = rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", optimize=True)
    if len(buf.getvalue()) < path.stat().st_size:
        write_bytes(path, buf.getvalue())
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
    share = (lambda k: f"{100.0 * k / n:.1f}%" if n else "-")
    lo_x, hi_x = ax.get_xlim() if pos.size else (1.0, 1000.0)
    s_side, l_side = math.sqrt(SMALL_AREA), math.sqrt(LARGE_AREA)
    for a, b, colour, label in ((lo_x, s_side, _RED, f"small, area < 32²: {small:,} ({share(small)})"),
                                (s_side, l_side, _GREY, f"medium: {medium:,} ({share(medium)})"),
                                (l_side, hi_x, _ORANGE, f"large, area >= 96²: {large:,} ({share(large)})")):
        ax.axvspan(a, b, color=colour, alpha=0.15, lw=0, label=label, zorder=0)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.2)  # room for the legend
    ax.set_xlabel("sqrt(annotation area) (px, log scale)")
    ax.set_ylabel("annotations per bin")
    ax.set_title(f"{dataset.name}: object size of {n:,} annotations (iscrowd included)\n"
                 f"not drawn: {n - int(pos.size):,} with area 0", fontsize=10)
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
        for yi, c in zip(y, counts):
            ax.text(c + top * 0.01, yi, f"{int(c):,}", va="center", fontsize=7)
        ax.set_xlim(0, top * 1.12)
    else:
        ax.text(0.5, 0.5, "no categories", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("annotations (iscrowd included)")
    ax.set_ylabel("category")
    ax.set_title(f"{report.name}: annotations per category ({n} categories, {report.annotations:,} annotations)",
                 fontsize=10)
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
    labels = [f"{w:g}x{h:g}\nlevel {int(lv)}" for w, h, lv in zip(pa["w"], pa["h"], pa["level"])]
    matched = pa["matched"].to_numpy()
    ax1.bar(x, matched, color=_BLUE, width=0.7)
    top = max(int(matched.max()) if a else 1, 1)
    for xi, m in zip(x, matched):
        ax1.text(xi, m + top * 0.02, f"{int(m):,}", ha="center", fontsize=8)
    ax1.set_ylim(0, top * 1.15)
    ax1.set_ylabel("objects matched")
    ax1.set_title(f"anchor audit: anchors {audit.anchors}, assigner {audit.assigner}, input {audit.size} px\n"
                  f"{audit.source}; {audit.objects:,} objects, {audit.unmatched_objects:,} matched to no anchor",
                  fontsize=10)
    ax1.grid(True, axis="y", alpha=0.3)
    series = [("match_wh_iou", "mean wh-IoU of anchor and matched objects", _GREY)]
    if audit.has_predictions:
        iou = _IOU_NAMES.get(audit.iou, audit.iou)
        series += [("pred_iou_matched", f"mean {iou} of its matched predictions", _GREEN),
                   ("pred_iou_all", f"mean {iou} of its centre-cell prediction, all objects", _ORANGE)]
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
    for xi, v in zip(x, vals):
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
        ax.set_yticks(y, [f"{c} ({int(g)})" for c, g in zip(t["Class"], t["Targets"])], fontsize=7.5)
        ax.set_ylim(n - 0.4, -0.6)
        for yi, v in zip(y, ap):
            ax.text((0 if math.isnan(v) else v) + 0.01, yi, "-" if math.isnan(v) else f"{v:.2f}", va="center",
                    fontsize=7)
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
    for xi, v, c in zip(x, vals, counts):
        ax.text(xi, (0 if math.isnan(v) else v) + top * 0.02, f"{v:.2f}\n({int(c):,})", ha="center", fontsize=8)
    ax.set_ylim(0, top * 1.25)
    ax.set_xticks(x, names, fontsize=9)
    ax.set_xlabel("error type (blue: main, grey: special; count in brackets)")
    ax.set_ylabel(f"dAP (AP@{report.iou:g} points gained by fixing it)")
    ax.set_title(f"errors of {report.detections:,} detections on {report.dataset}: "
                 f"AP@{report.iou:g} = {report.ap:.2f}", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# Building the report
# --------------------------------------------------------------------------------------------------
def dataset_args(dataset: str | None = None, root: str | os.PathLike | None = None,
                 images: str | os.PathLike | None = None) -> list[str]:
    """The DATASET argument and options as a user typed them: ``[DATASET] [--root R] [--images I]``."""
    out = [str(dataset)] if dataset else []
    if root is not None:
        out += ["--root", str(root)]
    if images is not None:
        out += ["--images", str(images)]
    return out


def _default_dataset_args(ds: Dataset) -> list[str]:
    """What to type to load ``ds`` again: nothing for the built-in sample, else its annotation file
    (and ``--images`` when its image folder is not the one found from that file)."""
    if ds.path is None:
        return [ds.name]
    if ds.name == SAMPLE_NAME and Path(ds.path) == sample_path():
        return [] if ds.image_dir is None else ["--images", str(ds.image_dir)]
    out = [str(ds.path)]
    if ds.image_dir is not None and resolve_dataset(str(ds.path)).image_dir != ds.image_dir:
        out += ["--images", str(ds.image_dir)]
    return out


@contextlib.contextmanager
def _recorded() -> Iterator[list]:
    """Record the warnings raised inside; on exit issue them again (the CLI shows them on stderr)."""
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CocostatWarning)
            yield caught
    finally:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


class _Runner:
    """Runs one analysis at a time and keeps its :class:`ReportSection`."""

    def __init__(self):
        self.sections: dict[str, ReportSection] = {}

    def skip(self, name: str, reason: str) -> None:
        self.sections[name] = ReportSection(name, "skipped", reason)

    @contextlib.contextmanager
    def run(self, name: str, argv: list[str]):
        """``with runner.run(name, argv) as slot: slot["result"] = ...; slot["plots"] = [...]``."""
        slot: dict = {"result": None, "plots": [], "argv": argv}
        t0 = time.perf_counter()
        with _recorded() as caught:
            yield slot
        if slot.get("skip"):
            self.skip(name, slot["skip"])
            return
        msgs = tuple(str(w.message) for w in caught if issubclass(w.category, CocostatWarning))
        self.sections[name] = ReportSection(name, "done", "", tuple(str(a) for a in slot["argv"]),
                                            tuple(Path(p) for p in slot["plots"]), slot["result"], msgs,
                                            time.perf_counter() - t0)


def build_report(dataset: Dataset, *, out_dir: str | os.PathLike, predictions: str | os.PathLike | None = None,
                 cfg: str | os.PathLike | None = None, weights: str | os.PathLike | None = None,
                 size: int | None = None, device=None, dataset_argv: Sequence[str] | None = None,
                 batch_size: int = 16, progress: bool = True, compact_plots: bool = True) -> ReportResult:
    """Run every analysis the inputs allow and write ``OUT/report.md``, ``OUT/report.html`` and the plots.

    Args:
        dataset: the dataset (the images are needed only with ``cfg``/``weights``).
        out_dir: the report folder (created; files of an earlier report there are replaced).
        predictions: a predictions folder written by ``cocostat predict``: mismatch, eval and errors
            run on it and anchor-audit reads its raw predictions.
        cfg, weights: a Darknet model (``.weights`` or ultralytics ``.pt``); it runs once over the
            images into ``OUT/predictions/``, which is then used as ``predictions``.
        size: network input side in pixels for kmeans, the boxes-only anchor audit and predict;
            default: the predictions' size, else 416. With predictions it must equal theirs.
        device: torch device of predict, kmeans and the audits (default CPU).
        dataset_argv: how the user named the dataset on the command line (see :func:`dataset_args`),
            written into every reproducing command; default: the sample, or the annotation file's path.
        batch_size: images per forward pass of predict.
        progress: predict's progress bar on stderr.
        compact_plots: re-save every plot as a palette PNG (:func:`compact_png`), about 3x smaller.

    Returns:
        A :class:`ReportResult`.

    Raises:
        OptionError: ``predictions`` together with ``cfg``/``weights``, only one of ``cfg`` and
            ``weights``, a bad ``size``, ``size`` unlike the predictions', ``out_dir`` a file.
        DatasetFormatError, ModelFormatError: a bad predictions folder, model or missing images
            (raised by the analyses; ``report.md`` and ``report.html`` are then not written).
    """
    import torch

    from cocostat.audit import check_model_source

    check_model_source(predictions, cfg, weights)
    if size is not None:
        size = check_int("--size", size, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OptionError(f"-o/--out must be a folder, but {out} is a file")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    ds_args = list(_default_dataset_args(dataset) if dataset_argv is None else dataset_argv)
    plots = out / PLOTS
    run = _Runner()

    from cocostat.candidates import read_predictions

    pred_dir: Path | None = Path(predictions) if predictions is not None else None
    pred = read_predictions(pred_dir) if pred_dir is not None else None
    if pred is not None:
        pred_size = int(pred.manifest.get("size") or DEFAULT_SIZE)
        if size is not None and size != pred_size:
            raise OptionError(f"--size {size} differs from the predictions' input size {pred_size}; "
                              f"leave --size out or predict again at that size")
    out.mkdir(parents=True, exist_ok=True)
    plots.mkdir(exist_ok=True)

    # ---- predict: the model runs once, every later analysis reads its folder
    if cfg is not None:
        from cocostat.models import load_model
        from cocostat.predict import predict

        pred_dir = out / PREDICTIONS
        s = DEFAULT_SIZE if size is None else size
        argv = ["predict", *ds_args, "--cfg", str(cfg), "--weights", str(weights), "-o", str(pred_dir),
                "--size", str(s)]
        with run.run("predict", argv) as slot:
            model = load_model(cfg, weights, device=dev)
            slot["result"] = predict(dataset, model, size=s, batch_size=batch_size, device=dev, progress=progress,
                                     out_dir=pred_dir)
        pred = read_predictions(pred_dir)
    else:
        run.skip("predict", "no model: give --cfg FILE --weights FILE to run one"
                 + (f" (predictions read from {pred_dir})" if pred_dir is not None else ""))
    if pred is not None:
        size = int(pred.manifest.get("size") or DEFAULT_SIZE)
    size = DEFAULT_SIZE if size is None else size
    pred_arg = ["--predictions", str(pred_dir)] if pred_dir is not None else []

    # ---- the analyses that read predictions first: predictions of another dataset fail before anything
    # else is drawn (the pages keep the order of ANALYSES)
    from cocostat.audit import anchor_audit

    argv = ["anchor-audit", *ds_args, *(pred_arg or ["--size", str(size)]), "--examples", str(EXAMPLES)]
    with run.run("anchor-audit", argv) as slot:
        slot["result"] = rep = anchor_audit(dataset, pred, size=None if pred is not None else size,
                                            examples=EXAMPLES, device=dev)
        slot["plots"] = [plot_audit(rep, plots / "anchor_audit.png")]

    if pred is None:
        need = "needs predictions: give --predictions DIR or --cfg FILE --weights FILE"
        for name in ("mismatch", "eval", "errors"):
            run.skip(name, need)
    else:
        from cocostat.mismatch import mismatch

        argv = ["mismatch", *ds_args, *pred_arg, "--examples", str(EXAMPLES), "--plot", str(plots)]
        with run.run("mismatch", argv) as slot:
            slot["result"] = rep = mismatch(dataset, pred, examples=EXAMPLES, plot=plots, device=dev)
            slot["plots"] = [Path(p) for p in rep.plots]

        if not pred.num_detections:
            for name in ("eval", "errors"):
                run.skip(name, f"the predictions in {pred_dir} hold no detections")
        else:
            from cocostat.diagnose import diagnose
            from cocostat.evaluate import evaluate

            # eval reads the folder's columnar detections; its detections.json holds the same ones
            det_file = pred_dir / "detections.json"
            with run.run("eval", ["eval", *ds_args, "-d", str(det_file if det_file.is_file() else pred_dir)]) as slot:
                slot["result"] = rep = evaluate(dataset, pred)
                slot["plots"] = [plot_eval_summary(rep, plots / "eval_summary.png"),
                                 plot_eval_classes(rep, plots / "eval_ap50_per_class.png")]
            with run.run("errors", ["errors", *ds_args, *pred_arg]) as slot:
                slot["result"] = rep = diagnose(dataset, predictions=pred)
                slot["plots"] = [plot_errors(rep, plots / "errors_dap.png")]

    # ---- dataset statistics
    from cocostat.summary import info

    with run.run("info", ["info", *ds_args]) as slot:
        slot["result"] = rep = info(dataset)
        slot["plots"] = [plot_box_sizes(dataset, plots / "info_box_sizes.png"),
                         plot_categories(rep, plots / "info_categories.png")]

    from cocostat.pairs import overlap, plot_overlap

    with run.run("overlap", ["overlap", *ds_args, "--plot", str(plots)]) as slot:
        slot["result"] = rep = overlap(dataset)
        slot["plots"] = plot_overlap(rep, plots)

    # ---- anchors
    from cocostat.anchors import default_levels, kmeans

    k, levels = 9, None
    if pred is not None:
        k = len(pred.manifest.get("anchors") or []) or 9
        n_levels = len(pred.manifest.get("levels") or [])
        levels = n_levels if n_levels and n_levels != default_levels(k) else None
    argv = ["kmeans", *ds_args, "--size", str(size)]
    argv += ["-k", str(k)] if k != 9 else []
    argv += ["--levels", str(levels)] if levels is not None else []
    for name in KMEANS_COMPARE:
        argv += ["--compare", name]
    kmeans_png = plots / "kmeans_anchors.png"
    argv += ["--plot", str(kmeans_png)]
    with run.run("kmeans", argv) as slot:
        try:
            slot["result"] = rep = kmeans(dataset, size=size, k=k, levels=levels, compare=KMEANS_COMPARE,
                                          device=dev, plot=kmeans_png)
            slot["plots"] = [rep.plot] if rep.plot else []
        except OptionError as exc:  # too few distinct box sizes for k anchors: the data does not allow it
            if "distinct box size" not in str(exc):
                raise
            slot["skip"] = str(exc)

    analyses = tuple(run.sections[name] for name in ANALYSES)
    written = {p.name for s in analyses for p in s.plots}
    for name in PLOT_FILES - written:  # an earlier report's plot of an analysis that did not run now
        (plots / name).unlink(missing_ok=True)
    if compact_plots:
        for p in {p for s in analyses for p in s.plots}:
            compact_png(p)
    report_argv = ["report", *ds_args]
    if cfg is not None:
        report_argv += ["--cfg", str(cfg), "--weights", str(weights)]
    elif predictions is not None:
        report_argv += ["--predictions", str(predictions)]
    report_argv += ["-o", str(out)]
    md_path, html_path = out / "report.md", out / "report.html"
    base = ReportResult(dataset=dataset.name, out_dir=out, markdown=md_path, html=html_path, analyses=analyses,
                        predictions=pred_dir, command=shlex.join(["cocostat", *report_argv]), files=())
    header = _header(dataset, base, pred)
    write_text(md_path, render_markdown(base, header))
    write_text(html_path, render_html(base, header))
    files = [md_path, html_path, *(p for s in analyses for p in s.plots)]
    if cfg is not None and pred_dir is not None:
        files += sorted(p for p in pred_dir.iterdir() if p.is_file())
    return ReportResult(dataset=dataset.name, out_dir=out, markdown=md_path, html=html_path, analyses=analyses,
                        predictions=pred_dir, command=base.command, files=tuple(files))


# --------------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------------
_ABOUT = {
    "predict": "The model ran once over the images; every analysis below that needs predictions reads "
               "this folder.",
    "info": "What the dataset holds: counts, COCO size buckets, box-size percentiles, categories.",
    "overlap": "How often objects of one image sit close, overlap, share a centre, or are elongated.",
    "kmeans": "Anchors designed for these boxes (IoU k-means + evolution), compared with the preset anchor sets.",
    "anchor-audit": "Do the anchors the label assigner picks predict each object best? (box sizes only without "
                    "predictions)",
    "mismatch": "Is the most confident prediction of each object also its best localised one?",
    "eval": "COCO bbox evaluation (pycocotools) and the YOLOv3 P/R/mAP@0.5/F1 table. The per-class plot shows "
            "the rows that --per-class adds to the table.",
    "errors": "TIDE-style errors (what each error type costs in AP), merged and suppressed objects, hard images.",
}


_REPRODUCE = ("Every section gives the command that reproduces its numbers, run from the folder the report was "
              "built in (relative paths are relative to it).")


def _header(ds: Dataset, res: ReportResult, pred) -> list[tuple[str, str]]:
    """(label, value) rows describing the inputs, shown at the top of both pages."""
    rows = [("dataset", (f"{ds.name}: {ds.num_images:,} images, {ds.num_annotations:,} annotations, "
                         f"{ds.num_classes} categories")),
            ("annotations", "built-in sample" if ds.path is not None and Path(ds.path) == sample_path()
             else str(ds.path or "in memory"))]
    if pred is not None:
        m = pred.manifest
        dets = (m.get("detections") or {}).get("count", "?")
        model = f"model {m.get('cfg')}, input {m.get('size')} px"
        rows.append(("predictions", f"{res.predictions} ({model}, {dets} detections)"))
    rows.append(("generated", f"{_dt.date.today().isoformat()} by cocostat {__version__}"))
    return rows


def _blocks(section: ReportSection):
    """The (title, block) pairs of a section's result, without text blocks that only list its plots."""
    plot_names = {str(p) for p in section.plots}
    for title, block in section.result.sections():
        if isinstance(block, str) and block.strip() and set(block.strip().splitlines()) <= plot_names:
            continue
        yield title, block


def _fence(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return fence


def render_markdown(res: ReportResult, header: Sequence[tuple[str, str]] = ()) -> str:
    """The markdown page of a report (plots linked relative to ``res.out_dir``)."""
    out: list[str] = [f"# cocostat report: {_md_escape(res.dataset)}", ""]
    for label, value in header:
        out.append(f"- **{_md_escape(label)}**: {_md_escape(value)}")
    out += ["", "Built with:", "", "```bash", res.command, "```", "",
            _md_escape(_REPRODUCE), "",
            "## Contents", ""]
    for s in res.analyses:
        note = "" if s.status == "done" else f" (skipped: {_md_escape(s.reason)})"
        out.append(f"- [{s.name}](#{s.name}){note}")
    for s in res.analyses:
        out += ["", f"## {s.name}", "", _md_escape(_ABOUT[s.name]), ""]
        if s.status != "done":
            out += [f"*Skipped: {_md_escape(s.reason)}.*"]
            continue
        out += ["```bash", s.command, "```", ""]
        for title, block in _blocks(s):
            if isinstance(block, pd.DataFrame):
                table = markdown_table(block)
                if len(block) > FOLD_ROWS:
                    out += ["<details>", f"<summary>{html.escape(title)} ({len(block)} rows)</summary>", "",
                            table, "", "</details>", ""]
                else:
                    out += ([f"**{_md_escape(title)}**", ""] if title else []) + [table, ""]
            else:
                if title:
                    out += [f"**{_md_escape(title)}**", ""]
                if "\n" in block.strip():  # cfg lines, YAML, COCO's summary: kept as they are
                    fence = _fence(block)
                    out += [fence, block, fence, ""]
                else:  # a sentence
                    out += [_md_escape(block.strip()), ""]
        for p in s.plots:
            rel = Path(os.path.relpath(p, res.out_dir)).as_posix()
            out += [f"![{s.name}: {p.stem}]({rel})", ""]
        if s.warnings:
            out += ["Warnings:", ""] + [f"- {_md_escape(w)}" for w in s.warnings] + [""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1f2328;background:#fff;margin:0}
main{max-width:1200px;margin:0 auto;padding:1.5rem 2rem 4rem}
h1{font-size:1.7rem;border-bottom:1px solid #d0d7de;padding-bottom:.4rem}
h2{font-size:1.35rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.4rem}
h3{font-size:.98rem;margin:1.2rem 0 .4rem}
p.about{color:#57606a;margin:.2rem 0 .8rem}
p.skipped{font-style:italic;color:#9a6700}
table{border-collapse:collapse;font-size:.82rem;margin:.3rem 0 1rem;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d0d7de;padding:.22rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr:nth-child(even) td{background:#fbfcfd}
.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.6rem .8rem;overflow-x:auto;font-size:.8rem}
pre.cmd{background:#0d1117;color:#e6edf3;border-color:#0d1117;white-space:pre-wrap;overflow-wrap:anywhere}
.plots{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
figure{margin:0;flex:1 1 480px;max-width:100%}
figure.wide{flex-basis:100%}
figure img{max-width:100%;height:auto;border:1px solid #d0d7de}
figcaption{font-size:.75rem;color:#57606a}
details{margin:.3rem 0 1rem}
summary{cursor:pointer;font-weight:600;font-size:.95rem}
ul.warnings{color:#9a6700;font-size:.85rem}
dl.header{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.9rem}
dl.header dt{font-weight:600}
dl.header dd{margin:0}
"""


def render_html(res: ReportResult, header: Sequence[tuple[str, str]] = ()) -> str:
    """The self-contained HTML page of a report: CSS inline, plots as base64 ``data:`` URIs, every
    text HTML-escaped, no script and no external reference."""
    e = html.escape
    out: list[str] = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>cocostat report: {e(res.dataset)}</title>", f"<style>{_CSS}</style>", "</head>",
                      "<body><main>", f"<h1>cocostat report: {e(res.dataset)}</h1>", '<dl class="header">']
    for label, value in header:
        out.append(f"<dt>{e(label)}</dt><dd>{e(value)}</dd>")
    out += ["</dl>", "<p>Built with:</p>", f'<pre class="cmd"><code>{e(res.command)}</code></pre>',
            f"<p>{e(_REPRODUCE)}</p>",
            "<nav><h2>Contents</h2><ul>"]
    for s in res.analyses:
        note = "" if s.status == "done" else f" <em>(skipped: {e(s.reason)})</em>"
        out.append(f'<li><a href="#{e(s.name)}">{e(s.name)}</a>{note}</li>')
    out.append("</ul></nav>")
    for s in res.analyses:
        out += [f'<section id="{e(s.name)}">', f"<h2>{e(s.name)}</h2>", f'<p class="about">{e(_ABOUT[s.name])}</p>']
        if s.status != "done":
            out += [f'<p class="skipped">Skipped: {e(s.reason)}.</p>', "</section>"]
            continue
        out.append(f'<pre class="cmd"><code>{e(s.command)}</code></pre>')
        for title, block in _blocks(s):
            if isinstance(block, pd.DataFrame):
                if len(block) > FOLD_ROWS:
                    out += ["<details>", f"<summary>{e(title)} ({len(block)} rows)</summary>", html_table(block),
                            "</details>"]
                else:
                    out += ([f"<h3>{e(title)}</h3>"] if title else []) + [html_table(block)]
            else:
                out += [f"<h3>{e(title)}</h3>"] if title else []
                out += [f"<pre>{e(block)}</pre>" if "\n" in block.strip() else f"<p>{e(block.strip())}</p>"]
        if s.plots:
            out.append('<div class="plots">')
            for p in s.plots:
                raw = Path(p).read_bytes()
                width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")  # IHDR
                wide = ' class="wide"' if width > 1.9 * max(height, 1) else ""  # several panels: a whole row
                data = base64.b64encode(raw).decode("ascii")
                out.append(f'<figure{wide}><img src="data:image/png;base64,{data}" alt="{e(s.name)}: {e(p.stem)}">'
                           f"<figcaption>{e(p.name)}</figcaption></figure>")
            out.append("</div>")
        if s.warnings:
            out += ['<ul class="warnings">'] + [f"<li>warning: {e(w)}</li>" for w in s.warnings] + ["</ul>"]
        out.append("</section>")
    out += ["</main></body>", "</html>"]
    return "\n".join(out) + "\n"
