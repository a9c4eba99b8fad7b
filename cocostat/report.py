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
  mismatch 2-D histograms) and the ones :mod:`cocostat.plots` draws for the others: box sizes and
  categories (info), anchors (anchor-audit), COCO summary and per-class AP@0.5 (eval), dAP (errors);
- ``OUT/report.md``: one markdown page, each analysis as markdown tables with its plots after them
  and the exact ``cocostat ...`` command that reproduces its numbers (the dataset written as the
  user gave it);
- ``OUT/report.html``: the same page, self-contained (plots embedded as base64 ``data:`` URIs,
  CSS inline, no script, no external reference).

How it is built: :func:`build_report` checks every input first, then runs one function per section
in a folder staged beside ``OUT`` (:class:`cocostat.staging.StagedFolder`) and swaps it in whole at
the end, so ``OUT`` never holds half a report or a mix of two. Each section is described once, as a
:class:`Call` (command + options): the reproducing command line and the library call are both read
from it. Tables longer than :data:`FOLD_ROWS` rows are folded into a ``<details>`` block.
Data-quality warnings of each analysis are listed under it and re-issued.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as _dt
import html
import io
import math
import os
import re
import shlex
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd

from cocostat import __version__
from cocostat.atomic import write_bytes, write_text
from cocostat.data import SAMPLE_NAME, Dataset, resolve_dataset, sample_path
from cocostat.errors import CocostatWarning, DatasetFormatError, OptionError, TooFewBoxesError, check_int
from cocostat.plots import (
    KMEANS_PLOT,
    plot_audit,
    plot_box_sizes,
    plot_categories,
    plot_errors,
    plot_eval_classes,
    plot_eval_summary,
)
from cocostat.render import Report, format_value
from cocostat.sources import check_model_source
from cocostat.staging import StagedFolder

if TYPE_CHECKING:  # torch and the model and predictions modules are imported when a section runs
    import torch

    from cocostat.candidates import Predictions
    from cocostat.models import DarknetModel

__all__ = [
    "ANALYSES",
    "FOLD_ROWS",
    "KMEANS_COMPARE",
    "Call",
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
PLOT_FILES = frozenset(
    {
        "info_box_sizes.png",
        "info_categories.png",
        "overlap_iou.png",
        "overlap_ioa.png",
        "overlap_gap.png",
        "overlap_center.png",
        "overlap_aspect.png",
        KMEANS_PLOT,
        "anchor_audit.png",
        "iou_vs_obj.png",
        "iou_vs_score.png",
        "eval_summary.png",
        "eval_ap50_per_class.png",
        "errors_dap.png",
    }
)
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
    result: Report | None = field(default=None, repr=False)
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
                {
                    "name": s.name,
                    "status": s.status,
                    "reason": s.reason or None,
                    "command": s.command or None,
                    "plots": [str(p) for p in s.plots],
                    "warnings": list(s.warnings),
                    "seconds": round(s.seconds, 3),
                    "result": s.result.to_dict() if s.result is not None else None,
                }
                for s in self.analyses
            ],
            "files": [str(p) for p in self.files],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per analysis: ``analysis``, ``status``, ``reason``, ``plots`` (count), ``seconds``, ``command``."""
        return pd.DataFrame(
            {
                "analysis": [s.name for s in self.analyses],
                "status": [s.status for s in self.analyses],
                "reason": [s.reason for s in self.analyses],
                "plots": [len(s.plots) for s in self.analyses],
                "seconds": [round(s.seconds, 2) for s in self.analyses],
                "command": [s.command for s in self.analyses],
            }
        )

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        frame = self.to_frame()
        frame["status"] = [s.status if s.status == "done" else f"skipped: {s.reason}" for s in self.analyses]
        sizes = [p.stat().st_size if p.is_file() else 0 for p in self.files]
        files = pd.DataFrame({"file": [str(p) for p in self.files], "KiB": [round(b / 1024, 1) for b in sizes]})
        return [
            (f"report on {self.dataset}: {self.markdown} and {self.html}", frame.drop(columns=["reason", "command"])),
            ("commands that reproduce each analysis", "\n".join(s.command for s in self.analyses if s.command)),
            (f"files written ({len(self.files)}, {sum(sizes) / 1024:.0f} KiB)", files),
        ]


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
    return bool(vals) and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) for v in vals
    )


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
    lines = [
        "| " + " | ".join(_md_escape(c) for c in cols) + " |",
        "|" + "|".join("---:" if r else "---" for r in right) + "|",
    ]
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

    head = "".join(td("th", c, r) for c, r in zip(cols, right, strict=False))
    body = "\n".join(
        "<tr>" + "".join(td("td", _cell(v), r) for v, r in zip(row, right, strict=False)) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


# --------------------------------------------------------------------------------------------------
# Plot files
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# Building the report
# --------------------------------------------------------------------------------------------------
def dataset_args(
    dataset: str | None = None,
    root: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    split: str | None = None,
) -> list[str]:
    """The DATASET argument and options as a user typed them: ``[DATASET] [--root R] [--images I] [--split S]``."""
    out = [str(dataset)] if dataset else []
    if split is not None:
        out += ["--split", str(split)]
    if root is not None:
        out += ["--root", str(root)]
    if images is not None:
        out += ["--images", str(images)]
    return out


def _default_dataset_args(ds: Dataset) -> list[str]:
    """What to type to load ``ds`` again: nothing for the built-in sample, else its annotation file
    (and ``--split`` for a split of a YOLO YAML or ``.data`` file, ``--images`` when its image folder
    is not the one found from that file)."""
    if ds.path is None:
        return [ds.name]
    if ds.name == SAMPLE_NAME and Path(ds.path) == sample_path():
        return [] if ds.image_dir is None else ["--images", str(ds.image_dir)]
    out = [str(ds.path)]
    if ds.split is not None:  # a YOLO YAML or .data file: which split, since commands default differently
        return [*out, "--split", ds.split]
    if ds.image_dir is not None and resolve_dataset(str(ds.path)).image_dir != ds.image_dir:
        out += ["--images", str(ds.image_dir)]
    return out


#: library keyword -> command-line flag where the flag is not ``--`` + the keyword with ``-`` for ``_``.
_FLAGS = {"k": "-k", "detections": "-d", "out_dir": "-o"}

#: (command, library keyword) -> the command-line value of a library value, where they differ: the
#: library's kmeans(plot=FILE.png) is the CLI's ``--plot DIR`` (it writes DIR/KMEANS_PLOT).
_CLI_VALUES: dict[tuple[str, str], Callable[[str | os.PathLike[str]], object]] = {
    ("kmeans", "plot"): lambda v: Path(v).parent
}


@dataclass(frozen=True)
class Call:
    """One analysis as the report runs it: the ``cocostat`` command and its options.

    The reproducing command line (:meth:`argv`) and the library call (:meth:`kwargs`) are both read
    from ``options``, so they cannot disagree.

    Attributes:
        command: the ``cocostat`` command (``"kmeans"``).
        options: library keyword -> value, in the order the command line lists them. None means "not
            given" (the function's default) and is left out of both. A tuple is a repeated option
            (``--compare a --compare b``), True a flag; paths are written as given.
    """

    command: str
    options: dict = field(default_factory=dict)

    def argv(self, dataset_argv: Sequence[str] = ()) -> tuple[str, ...]:
        """``command DATASET... --option value ...`` (without the program name)."""
        out = [self.command, *dataset_argv]
        for key, value in self.options.items():
            flag = _FLAGS.get(key, "--" + key.replace("_", "-"))
            if value is None or value is False:
                continue
            value = _CLI_VALUES.get((self.command, key), lambda v: v)(value)
            if value is True:
                out.append(flag)
            elif isinstance(value, (tuple, list)):
                for v in value:
                    out += [flag, str(v)]
            else:
                out += [flag, str(value)]
        return tuple(out)

    def kwargs(self, resolve: Callable[[str, object], object] = lambda key, value: value) -> dict:
        """The library keywords: every given option, through ``resolve(key, value)`` (which swaps a
        predictions path for the folder already read, or a report path for its staged place)."""
        return {k: resolve(k, v) for k, v in self.options.items() if v is not None}


def _repoint(obj, fix: Callable[[str], str]):
    """``obj`` with every str or Path field of a result dataclass passed through ``fix`` (also inside
    tuples and lists of them and nested result dataclasses); the object itself when nothing changes.
    Arrays, frames and dicts are left alone: results hold the paths they wrote in plain fields."""
    if isinstance(obj, str):
        return fix(obj)
    if isinstance(obj, Path):
        new = fix(str(obj))
        return obj if new == str(obj) else Path(new)
    if isinstance(obj, (tuple, list)) and not hasattr(obj, "_fields"):
        if not all(isinstance(v, (str, Path)) for v in obj):
            return obj
        items = [_repoint(v, fix) for v in obj]
        return obj if all(a is b for a, b in zip(items, obj, strict=False)) else type(obj)(items)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changed = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            new = _repoint(value, fix)
            if new is not value:
                changed[f.name] = new
        if changed:
            obj = copy.copy(obj)
            for name, value in changed.items():
                object.__setattr__(obj, name, value)  # a frozen result: a re-pointed shallow copy
    return obj


class _Runner:
    """Runs one analysis at a time in the staged report folder and keeps its :class:`ReportSection`
    (paths and warnings spelt as the final folder)."""

    def __init__(self, stage: StagedFolder, dataset_argv: Sequence[str]):
        self.stage = stage
        self.dataset_argv = list(dataset_argv)
        self.sections: dict[str, ReportSection] = {}

    def skip(self, name: str, reason: str) -> None:
        self.sections[name] = ReportSection(name, "skipped", reason)

    def run(
        self,
        name: str,
        call: Call,
        work: Callable[[dict], tuple[Report, Sequence]],
        *,
        resolve: Callable[[str, object], object] | None = None,
        skip_on: tuple[type[Exception], ...] = (),
    ):
        """Run ``work(call.kwargs(...))``, which returns ``(result, plots)``; record the section.

        Paths under the report folder reach ``work`` at their staged place; ``resolve`` may swap other
        options (the predictions folder for the one already read). An exception of a ``skip_on`` type
        skips the section with its message (the data does not allow the analysis).
        """
        stage = self.stage

        def place(key, value):
            if resolve is not None and (given := resolve(key, value)) is not value:
                return given  # an input already read, or an input file: used where it is
            if isinstance(value, Path) and (value == stage.out or stage.out in value.parents):
                return stage.real(value)
            return value

        t0 = time.perf_counter()
        caught: list = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CocostatWarning)
                try:
                    result, plots = work(call.kwargs(place))
                except skip_on as exc:
                    self.skip(name, stage.shown(str(exc)))
                    return
        finally:  # issue the warnings again, spelt as the final folder (the CLI shows them on stderr)
            for w in caught:
                message = w.message
                if isinstance(message, Warning) and stage.path is not None and str(stage.path) in str(message):
                    message = w.category(stage.shown(str(message)))
                warnings.warn_explicit(message, w.category, w.filename, w.lineno)
        msgs = tuple(stage.shown(str(w.message)) for w in caught if issubclass(w.category, CocostatWarning))
        self.sections[name] = ReportSection(
            name,
            "done",
            "",
            call.argv(self.dataset_argv),
            tuple(Path(stage.shown(str(p))) for p in plots),
            _repoint(result, stage.shown),
            msgs,
            time.perf_counter() - t0,
        )


@dataclass(frozen=True, eq=False)
class _Inputs:
    """What every section needs, checked before anything is written.

    ``pred`` is the predictions folder read (None without one; with a model, filled in by the predict
    section); ``pred_dir`` its path as the user will see it (``OUT/predictions`` for the model's).
    """

    dataset: Dataset
    out: Path
    plots: Path
    size: int | None
    device: torch.device
    model: DarknetModel | None
    cfg: Path | None
    weights: Path | None
    batch_size: int
    progress: bool
    pred_dir: Path | None
    pred: Predictions | None
    detections: int | None  # how many the predictions hold

    def predictions(self) -> tuple[Predictions, Path]:
        """(the predictions folder read, its path as shown), for the sections that run only with one."""
        return _given(self.pred, "predictions"), _given(self.pred_dir, "a predictions folder")


_T = TypeVar("_T")


def _given(value: _T | None, what: str) -> _T:
    """``value``, known not to be None: a section runs only when its input exists (else a RuntimeError)."""
    if value is None:
        raise RuntimeError(f"a report section that needs {what} ran without it")
    return value


def _read_detections(pred) -> int:
    """How many detections a predictions folder holds, checking its detection files can be read: versions 2 and 3
    reads each part's parquet footer (not the detections); version 1 parses its JSON. A broken file is a
    DatasetFormatError."""
    if pred.version >= 2:
        import pyarrow.parquet as pq

        total = 0
        for f in pred.detection_files:
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except Exception as exc:
                raise DatasetFormatError(f"{f}: cannot read the detection part: {exc}") from None
        return total
    try:
        return len(pred.detections())
    except ValueError as exc:  # json.JSONDecodeError: a truncated or garbled detections file
        files = ", ".join(str(f) for f in pred.detection_files)
        raise DatasetFormatError(f"{pred.folder}: a detections file ({files}) is not valid JSON: {exc}") from None


def _check_inputs(
    dataset: Dataset, out: Path, predictions, cfg, weights, size, device, batch_size, progress
) -> _Inputs:
    """Every check a report's inputs can fail, before anything is written: the options, the predictions
    folder (manifest, candidate table, detections JSON, input size) or the model (cfg, weights, input size
    against its strides). What only a run can find (a missing image) fails inside the staged folder,
    which is then deleted."""
    import torch

    from cocostat.candidates import read_predictions

    check_model_source(predictions, cfg, weights)
    if size is not None:
        size = check_int("size", size, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    if out.exists() and not out.is_dir():
        raise OptionError(f"out_dir must be a folder, but {out} is a file", param="out_dir")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    pred_dir = pred = dets = model = None
    if predictions is not None:
        pred_dir = Path(predictions)
        pred = read_predictions(pred_dir)
        dets = _read_detections(pred)
        pred_size = int(pred.manifest.get("size") or DEFAULT_SIZE)
        if size is not None and size != pred_size:
            raise OptionError(
                f"--size {size} differs from the predictions' input size {pred_size}; "
                f"leave --size out or predict again at that size"
            )
    elif cfg is not None:
        from cocostat.models import load_model

        model = load_model(cfg, weights, device=dev)
        model.check_size(DEFAULT_SIZE if size is None else size)
        pred_dir = out / PREDICTIONS
    return _Inputs(
        dataset,
        out,
        out / PLOTS,
        size,
        dev,
        model,
        Path(cfg) if cfg is not None else None,
        Path(weights) if weights is not None else None,
        batch_size,
        progress,
        pred_dir,
        pred,
        dets,
    )


# ---- the sections, in the order they run (the pages keep the order of ANALYSES) -------------------------
def _predict_section(inp: _Inputs, run: _Runner) -> _Inputs:
    """The model runs once into OUT/predictions; returns the inputs with that folder read."""
    if inp.model is None:
        run.skip(
            "predict",
            "no model: give --cfg FILE --weights FILE to run one"
            + (f" (predictions read from {inp.pred_dir})" if inp.pred_dir is not None else ""),
        )
        return inp
    from cocostat.candidates import read_predictions
    from cocostat.predict import predict

    model, pred_dir = inp.model, _given(inp.pred_dir, "the folder the model writes into")
    call = Call(
        "predict",
        {
            "cfg": inp.cfg,
            "weights": inp.weights,
            "out_dir": pred_dir,
            "size": DEFAULT_SIZE if inp.size is None else inp.size,
        },
    )
    run.run(
        "predict",
        call,
        lambda kw: (
            predict(
                inp.dataset,
                model,
                size=kw["size"],
                out_dir=kw["out_dir"],
                batch_size=inp.batch_size,
                device=inp.device,
                progress=inp.progress,
            ),
            [],
        ),
    )
    # read from the stage, shown (in every analysis' source and plot titles) as OUT/predictions
    pred = dataclasses.replace(read_predictions(run.stage.real(pred_dir)), folder=pred_dir)
    return dataclasses.replace(inp, pred=pred, detections=_read_detections(pred))


def _resolve_predictions(inp: _Inputs):
    """``resolve`` for :meth:`_Runner.run`: the predictions path becomes the folder already read."""
    return lambda key, value: inp.pred if key == "predictions" and value is not None else value


def _audit_section(inp: _Inputs, run: _Runner, size: int) -> None:
    from cocostat.audit import anchor_audit

    call = Call(
        "anchor-audit",
        {"predictions": inp.pred_dir, "size": None if inp.pred is not None else size, "examples": EXAMPLES},
    )

    def work(kw):
        rep = anchor_audit(inp.dataset, kw.pop("predictions", None), **kw, device=inp.device)
        return rep, [plot_audit(_repoint(rep, run.stage.shown), run.stage.real(inp.plots / "anchor_audit.png"))]

    run.run("anchor-audit", call, work, resolve=_resolve_predictions(inp))


def _prediction_sections(inp: _Inputs, run: _Runner) -> None:
    """mismatch, eval and errors: what needs predictions (eval and errors: detections too)."""
    if inp.pred is None:
        for name in ("mismatch", "eval", "errors"):
            run.skip(name, "needs predictions: give --predictions DIR or --cfg FILE --weights FILE")
        return
    _mismatch_section(inp, run)
    if not inp.detections:
        for name in ("eval", "errors"):
            run.skip(name, f"the predictions in {inp.pred_dir} hold no detections")
        return
    _eval_section(inp, run)
    _errors_section(inp, run)


def _mismatch_section(inp: _Inputs, run: _Runner) -> None:
    from cocostat.mismatch import mismatch

    def work(kw):
        rep = mismatch(inp.dataset, kw.pop("predictions"), **kw, device=inp.device)
        return rep, rep.plots

    run.run(
        "mismatch",
        Call("mismatch", {"predictions": inp.pred_dir, "examples": EXAMPLES, "plot": inp.plots}),
        work,
        resolve=_resolve_predictions(inp),
    )


def _eval_section(inp: _Inputs, run: _Runner) -> None:
    """COCO eval of the predictions' detections: formats 2 and 3 read the columnar parts (the command shown
    names the folder's detections.json, which holds the same detections); the parts of a format-1
    distributed run are joined into OUT/detections.json first (``cocostat eval`` takes one file)."""
    from cocostat.evaluate import evaluate

    pred, pred_dir = inp.predictions()
    files = pred.detection_files
    source = None
    if pred.version >= 2:
        folder = _given(pred.folder, "a predictions folder")
        det_file, real_file, source = pred_dir / "detections.json", folder / "detections.json", pred
    elif len(files) == 1:
        det_file, real_file = pred_dir / files[0].name, files[0]  # (read where it is, even when staged)
    else:
        import json

        det_file = inp.out / "detections.json"
        real_file = write_text(run.stage.real(det_file), json.dumps(pred.detections()) + "\n")

    def work(kw):
        rep = evaluate(inp.dataset, source if source is not None else kw["detections"])
        return rep, [
            plot_eval_summary(rep, run.stage.real(inp.plots / "eval_summary.png")),
            plot_eval_classes(rep, run.stage.real(inp.plots / "eval_ap50_per_class.png")),
        ]

    run.run("eval", Call("eval", {"detections": det_file}), work, resolve=lambda key, value: real_file)


def _errors_section(inp: _Inputs, run: _Runner) -> None:
    from cocostat.diagnose import diagnose

    def work(kw):
        rep = diagnose(inp.dataset, predictions=kw["predictions"])
        return rep, [plot_errors(rep, run.stage.real(inp.plots / "errors_dap.png"))]

    run.run("errors", Call("errors", {"predictions": inp.pred_dir}), work, resolve=_resolve_predictions(inp))


def _dataset_sections(inp: _Inputs, run: _Runner) -> None:
    """info and overlap: the dataset alone."""
    from cocostat.pairs import overlap, plot_overlap
    from cocostat.summary import info

    def info_work(kw):
        rep = info(inp.dataset)
        return rep, [
            plot_box_sizes(inp.dataset, run.stage.real(inp.plots / "info_box_sizes.png")),
            plot_categories(rep, run.stage.real(inp.plots / "info_categories.png")),
        ]

    def overlap_work(kw):
        rep = overlap(inp.dataset)
        return rep, plot_overlap(rep, kw["plot"])

    run.run("info", Call("info"), info_work)
    run.run("overlap", Call("overlap", {"plot": inp.plots}), overlap_work)


def _kmeans_section(inp: _Inputs, run: _Runner, size: int) -> None:
    """Anchors for these boxes; k and the levels follow the model's anchors when there are predictions.
    Skipped when the boxes have fewer distinct sizes than k (:class:`~cocostat.errors.TooFewBoxesError`)."""
    from cocostat.anchors import default_levels, kmeans

    k, levels = 9, None
    if inp.pred is not None:
        k = len(inp.pred.manifest.get("anchors") or []) or 9
        n_levels = len(inp.pred.manifest.get("levels") or [])
        levels = n_levels if n_levels and n_levels != default_levels(k) else None
    call = Call(
        "kmeans",
        {
            "size": size,
            "k": k if k != 9 else None,
            "levels": levels,
            "compare": KMEANS_COMPARE,
            "plot": inp.plots / KMEANS_PLOT,
        },
    )

    def work(kw):
        rep = kmeans(inp.dataset, **kw, device=inp.device)
        return rep, [rep.plot] if rep.plot else []

    run.run("kmeans", call, work, skip_on=(TooFewBoxesError,))


def _keep_old(model_ran: bool) -> Callable[[Path], bool]:
    """Which entries of an earlier report folder a new report carries over (see :class:`StagedFolder`):
    everything but the pages, the joined detections, the report's plot files, and the predictions
    folder when the model ran again."""

    def keep(rel: Path) -> bool:
        parts = rel.parts
        if len(parts) == 1 and parts[0] in ("report.md", "report.html", "detections.json"):
            return False
        if len(parts) == 2 and parts[0] == PLOTS and parts[1] in PLOT_FILES:
            return False
        return not (model_ran and parts[0] == PREDICTIONS)

    return keep


def build_report(
    dataset: Dataset,
    *,
    out_dir: str | os.PathLike,
    predictions: str | os.PathLike | None = None,
    cfg: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    size: int | None = None,
    device=None,
    dataset_argv: Sequence[str] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    compact_plots: bool = True,
) -> ReportResult:
    """Run every analysis the inputs allow and write ``OUT/report.md``, ``OUT/report.html`` and the plots.

    Every input is checked before anything is written. The report is built in a hidden sibling folder
    and swapped in whole at the end (:class:`~cocostat.staging.StagedFolder`): an earlier report in
    ``OUT`` stays as it was until then, an error or Ctrl-C leaves it untouched, and files of ``OUT``
    that are not the report's (a predictions folder given as input, a file of the user's) are kept.

    Args:
        dataset: the dataset (the images are needed only with ``cfg``/``weights``).
        out_dir: the report folder (created; an earlier report there is replaced).
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
            ``weights``, a bad ``size`` (also one the model's strides do not divide), ``size`` unlike
            the predictions', ``out_dir`` a file or the current folder.
        DatasetFormatError, ModelFormatError: a bad predictions folder (detections JSON included),
            model or missing images. ``OUT`` is then left as it was.
    """
    out = Path(out_dir)
    inp = _check_inputs(dataset, out, predictions, cfg, weights, size, device, batch_size, progress)
    ds_args = list(_default_dataset_args(dataset) if dataset_argv is None else dataset_argv)
    report_call = Call(
        "report",
        {
            "cfg": inp.cfg,
            "weights": inp.weights,
            "predictions": Path(predictions) if predictions is not None else None,
            "out_dir": out,
        },
    )
    with StagedFolder(out, keep=_keep_old(inp.model is not None)) as stage:
        stage.real(inp.plots).mkdir()
        run = _Runner(stage, ds_args)
        inp = _predict_section(inp, run)
        size = (
            int(inp.pred.manifest.get("size") or DEFAULT_SIZE)
            if inp.pred is not None
            else (DEFAULT_SIZE if inp.size is None else inp.size)
        )
        # the analyses that read predictions first: predictions of another dataset fail before anything else
        _audit_section(inp, run, size)
        _prediction_sections(inp, run)
        _dataset_sections(inp, run)
        _kmeans_section(inp, run, size)
        result = _write_pages(inp, run, report_call, compact_plots)
        stage.commit()
    return result


def _write_pages(inp: _Inputs, run: _Runner, report_call: Call, compact_plots: bool) -> ReportResult:
    """Write both pages into the stage; the result lists every file as it will be after the swap."""
    stage, out = run.stage, inp.out
    analyses = tuple(run.sections[name] for name in ANALYSES)
    plots = [p for s in analyses for p in s.plots]
    if compact_plots:
        for p in set(plots):
            compact_png(stage.real(p))
    md_path, html_path = out / "report.md", out / "report.html"
    res = ReportResult(
        dataset=inp.dataset.name,
        out_dir=out,
        markdown=md_path,
        html=html_path,
        analyses=analyses,
        predictions=inp.pred_dir,
        command=shlex.join(["cocostat", *report_call.argv(run.dataset_argv)]),
        files=(),
    )
    header = _header(inp.dataset, res, inp.pred)
    write_text(stage.real(md_path), render_markdown(res, header))
    write_text(stage.real(html_path), render_html(res, header, files_at=stage.path))
    files = [md_path, html_path, *plots]
    if inp.model is not None:
        pred_dir = _given(inp.pred_dir, "the folder the model wrote into")
        files += sorted(pred_dir / p.name for p in stage.real(pred_dir).iterdir() if p.is_file())
    if inp.pred is not None and inp.pred.version == 1 and len(inp.pred.detection_files) > 1:
        files.append(out / "detections.json")
    return dataclasses.replace(res, files=tuple(files))


# --------------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------------
_ABOUT = {
    "predict": "With a model (--cfg, --weights), it runs once over the images into OUT/predictions/; every "
    "analysis below that needs predictions reads that folder.",
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


_REPRODUCE = (
    "Every section gives the command that reproduces its numbers, run from the folder the report was "
    "built in (relative paths are relative to it)."
)


def _header(ds: Dataset, res: ReportResult, pred) -> list[tuple[str, str]]:
    """(label, value) rows describing the inputs, shown at the top of both pages."""
    rows = [
        (
            "dataset",
            (f"{ds.name}: {ds.num_images:,} images, {ds.num_annotations:,} annotations, {ds.num_classes} categories"),
        ),
        (
            "annotations",
            "built-in sample"
            if ds.path is not None and Path(ds.path) == sample_path()
            else str(ds.path or "in memory"),
        ),
    ]
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
    for title, block in _given(section.result, "a result").sections():
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
    out += ["", "Built with:", "", "```bash", res.command, "```", "", _md_escape(_REPRODUCE), "", "## Contents", ""]
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
                    out += [
                        "<details>",
                        f"<summary>{html.escape(title)} ({len(block)} rows)</summary>",
                        "",
                        table,
                        "",
                        "</details>",
                        "",
                    ]
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


def render_html(
    res: ReportResult, header: Sequence[tuple[str, str]] = (), *, files_at: str | os.PathLike | None = None
) -> str:
    """The self-contained HTML page of a report: CSS inline, plots as base64 ``data:`` URIs, every
    text HTML-escaped, no script and no external reference.

    ``files_at``: where the files of ``res.out_dir`` are now, when not there yet (the staged folder).
    """
    e = html.escape
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>cocostat report: {e(res.dataset)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body><main>",
        f"<h1>cocostat report: {e(res.dataset)}</h1>",
        '<dl class="header">',
    ]
    for label, value in header:
        out.append(f"<dt>{e(label)}</dt><dd>{e(value)}</dd>")
    out += [
        "</dl>",
        "<p>Built with:</p>",
        f'<pre class="cmd"><code>{e(res.command)}</code></pre>',
        f"<p>{e(_REPRODUCE)}</p>",
        "<nav><h2>Contents</h2><ul>",
    ]
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
                    out += [
                        "<details>",
                        f"<summary>{e(title)} ({len(block)} rows)</summary>",
                        html_table(block),
                        "</details>",
                    ]
                else:
                    out += ([f"<h3>{e(title)}</h3>"] if title else []) + [html_table(block)]
            else:
                out += [f"<h3>{e(title)}</h3>"] if title else []
                out += [f"<pre>{e(block)}</pre>" if "\n" in block.strip() else f"<p>{e(block.strip())}</p>"]
        if s.plots:
            out.append('<div class="plots">')
            for p in s.plots:
                where = Path(files_at) / Path(p).relative_to(res.out_dir) if files_at is not None else Path(p)
                raw = where.read_bytes()
                width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")  # IHDR
                wide = ' class="wide"' if width > 1.9 * max(height, 1) else ""  # several panels: a whole row
                data = base64.b64encode(raw).decode("ascii")
                out.append(
                    f'<figure{wide}><img src="data:image/png;base64,{data}" alt="{e(s.name)}: {e(p.stem)}">'
                    f"<figcaption>{e(p.name)}</figcaption></figure>"
                )
            out.append("</div>")
        if s.warnings:
            out += ['<ul class="warnings">'] + [f"<li>warning: {e(w)}</li>" for w in s.warnings] + ["</ul>"]
        out.append("</section>")
    out += ["</main></body>", "</html>"]
    return "\n".join(out) + "\n"
