"""``cocostat mismatch``: is the most confident prediction also the best localised one?

For every non-crowd object, its *candidates* are the decoded predictions of every anchor of every
level at the object's centre cell, or with ``--neighborhood r`` at every cell within ``r`` cells of
it (a (2r+1) x (2r+1) block; ``r`` at most the radius stored in the predictions), cells outside the
grid left out. IoU is the chosen ``--iou`` variant between a candidate box and the object (both in
network-input pixels). *Confidence* is the sigmoid objectness; the *class-aware score* is
objectness x sigmoid probability of the object's class. Argmax ties go to the first candidate in
the table's (anchor, dy, dx) order.

Figures: every figure's JSON key, table label and exact definition is in
:data:`cocostat.figures.FIGURES` (analysis ``mismatch``; the docs' Figures page is generated from it);
:data:`STATS` and the tables take their definitions and labels from there. ``stats.NAME`` holds the
mean and population variance (ddof 0) over the objects where NAME is defined (``objects`` says how many).
"""

from __future__ import annotations

import contextlib
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cocostat.assigners._protocol import GIVE_PREDICTIONS
from cocostat.atomic import atomic_path
from cocostat.audit import (
    AuditInputs,
    CandidateTensors,
    Sums,
    candidate_tensors,
    check_options,
    compute_threads,
    gather_examples,
    masked_max,
    open_inputs,
    per_object_sink,
    rank_chunks,
    rerank,
)
from cocostat.boxes import matched_center_distance
from cocostat.candidates import CHUNK_OBJECTS
from cocostat.data import Dataset
from cocostat.errors import OptionError
from cocostat.figures import figures, labels, overview_rows
from cocostat.render import json_records
from cocostat.sources import write_frame

#: the analysis' name in :mod:`cocostat.figures` (every figure's key, table label and definition).
FIGURES = "mismatch"

#: statistic -> what it is (the ``stats`` rows, in order), from :mod:`cocostat.figures`.
STATS: dict[str, str] = {f.name: f.text for f in figures(FIGURES, "stats")}
#: statistic -> its label in the statistics table.
_STAT_LABELS = labels(FIGURES, "stats")


def mismatch_tensors(ct: CandidateTensors, radius: int) -> dict:
    """Per-object mismatch values, vectorised over objects (see the module docstring).

    Args:
        ct: from :func:`cocostat.audit.candidate_tensors`.
        radius: neighbourhood radius r of the candidate set.

    Returns:
        dict of CPU numpy arrays: per object (G,) ``candidates`` (int), every :data:`STATS` key
        (float, NaN where undefined), ``best_col``, ``obj_col``, ``score_col`` (int, table column of
        the highest-IoU, highest-objectness and highest-score candidate); and ``cols`` (R,) int,
        the table columns of the candidate set (its cells outside the grid are not ``valid``).
    """
    cols = torch.nonzero((ct.dx.abs() <= radius) & (ct.dy.abs() <= radius)).reshape(-1)  # (R,)
    q = ct.q[:, cols]  # (G, R), -inf where not valid
    ok = ct.valid[:, cols]  # (G, R)
    obj = ct.obj[:, cols]  # (G, R)
    score = obj * ct.cls_prob[:, cols]  # (G, R)
    best_iou, best_r = q.max(dim=1)  # (G,)
    max_obj, obj_r = masked_max(obj, ok)  # (G,)
    max_score, score_r = masked_max(score, ok)  # (G,)

    def at(x, r):  # (G, R) gathered at (G,) positions -> (G,)
        return x.gather(1, r[:, None])[:, 0]

    best_col, obj_col, score_col = cols[best_r], cols[obj_r], cols[score_r]  # (G,) table columns

    def box_at(col):  # (G, 4)
        return ct.pred.gather(1, col[:, None, None].expand(-1, 1, 4))[:, 0, :].double()

    qp = ct.q[:, ct.pcols]  # (G, S)
    n_pos = ct.pos.sum(1)  # (G,)
    matched_iou = torch.where(ct.pos, qp, torch.zeros_like(qp)).sum(1, dtype=torch.float64) / n_pos  # NaN if none
    stride = ct.stride.double()
    bb, ob = box_at(best_col), box_at(obj_col)  # (G, 4)
    bs, os_ = stride[best_col], stride[obj_col]  # (G,)
    best_area = (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1]) / bs**2
    obj_area = (ob[:, 2] - ob[:, 0]) * (ob[:, 3] - ob[:, 1]) / os_**2
    area_ratio = torch.where(best_area > 0, obj_area / best_area, torch.full_like(best_area, math.nan))
    gt = ct.gt.double()
    out = {
        "candidates": ok.sum(1),
        "best_iou": best_iou,
        "obj_iou": at(q, obj_r),
        "score_iou": at(q, score_r),
        "matched_iou": matched_iou,
        "max_obj": max_obj,
        "best_obj": at(obj, best_r),
        "max_score": max_score,
        "best_score": at(score, best_r),
        "matched_anchors": ct.assignment.matched.sum(1),
        "best_area": best_area,
        "obj_area": obj_area,
        "area_ratio": area_ratio,
        "best_offset": matched_center_distance(bb, gt) / bs,
        "obj_offset": matched_center_distance(ob, gt) / os_,
        "best_col": best_col,
        "obj_col": obj_col,
        "score_col": score_col,
        "cols": cols,
    }
    out = {k: v.cpu().numpy() for k, v in out.items()}
    for k in STATS:  # float64 for the statistics; -inf (an object without candidates) -> NaN
        v = out[k].astype(np.float64)
        out[k] = np.where(np.isfinite(v), v, np.nan)
    return out


@dataclass(frozen=True, eq=False)
class Mismatch:
    """The mismatch report; every definition is in :data:`cocostat.figures.FIGURES`.

    ``stats`` has columns ``statistic``, ``objects``, ``mean``, ``var``, ``definition``;
    ``per_object`` one row per object; ``examples`` the worst images; ``plots`` the PNGs written.
    """

    source: str
    anchors: str
    assigner: str
    iou: str
    iou_t: float
    ratio_t: float
    neighborhood: int
    objects: int
    candidates_per_object: int
    obj_not_best: int
    score_not_best: int
    obj_iou_share: float | None
    score_iou_share: float | None
    stats: pd.DataFrame = field(repr=False)
    per_object: pd.DataFrame = field(repr=False)
    examples: pd.DataFrame = field(repr=False)
    plots: tuple[str, ...] = ()

    @property
    def obj_not_best_share(self) -> float | None:
        return self.obj_not_best / self.objects if self.objects else None

    @property
    def score_not_best_share(self) -> float | None:
        return self.score_not_best / self.objects if self.objects else None

    def to_dict(self) -> dict:
        def f(v):
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

        return {
            "source": self.source,
            "anchors": self.anchors,
            "assigner": self.assigner,
            "iou": self.iou,
            "iou_t": self.iou_t,
            "ratio_t": self.ratio_t,
            "neighborhood": self.neighborhood,
            "objects": self.objects,
            "candidates_per_object": self.candidates_per_object,
            "obj_not_best": self.obj_not_best,
            "obj_not_best_share": f(self.obj_not_best_share),
            "score_not_best": self.score_not_best,
            "score_not_best_share": f(self.score_not_best_share),
            "obj_iou_share": f(self.obj_iou_share),
            "score_iou_share": f(self.score_iou_share),
            "stats": {
                r.statistic: {"objects": int(r.objects), "mean": f(r.mean), "var": f(r.var)}
                for r in self.stats.itertuples(index=False)
            },
            "examples": json_records(self.examples),
            "plots": list(self.plots),
        }

    def to_frame(self) -> pd.DataFrame:
        return self.stats.copy()

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        overview = pd.DataFrame(overview_rows(self, FIGURES), columns=["statistic", "value", "share"])
        title = (
            f"mismatch: {self.source}; anchors {self.anchors}; assigner {self.assigner}; IoU = {self.iou}; "
            f"neighborhood {self.neighborhood}"
        )
        out: list[tuple[str, pd.DataFrame | str]] = [
            (title, overview),
            ("per object: mean and variance over objects", self.stats.replace({"statistic": _STAT_LABELS})),
        ]
        if len(self.examples):
            out.append(("worst images (IoU lost by trusting objectness)", self.examples))
        if self.plots:
            out.append(("plots", "\n".join(self.plots)))
        return out

    def write_per_object(self, path: str | Path) -> Path:
        """Write :attr:`per_object` to ``path`` (``.parquet`` or ``.csv``) atomically."""
        return write_frame(self.per_object, path)


class Moments:
    """Count, mean and sum of squared deviations of a statistic; partial results merge by Chan's formula.

    One block's figures are numpy's own (``mean``, ``var`` with ddof 0, bit for bit); merged blocks
    agree with the whole-array computation to float rounding.
    """

    def __init__(self, n: int = 0, mean: float = math.nan, m2: float = 0.0):
        self.n, self.mean, self.m2 = int(n), float(mean), float(m2)

    @staticmethod
    def of(values: np.ndarray) -> Moments:
        v = values[np.isfinite(values)]
        if not v.size:
            return Moments()
        mean = v.mean()
        return Moments(v.size, mean, float(np.sum(np.abs(v - mean) ** 2)))

    def merge(self, other: Moments) -> Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.m2 = other.n, other.mean, other.m2
            return self
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n
        return self

    @property
    def var(self) -> float:
        return self.m2 / self.n if self.n else math.nan

    def state(self) -> list[float]:
        return [float(self.n), self.mean if self.n else 0.0, self.m2]


def _merge_moments_across_ranks(moments: dict[str, Moments]) -> None:
    """Merge every rank's Moments (torch.distributed all_gather of (n, mean, M2) triples)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    keys = sorted(moments)
    t = torch.tensor([moments[k].state() for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    out = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    for k in keys:
        moments[k] = Moments()
    for rank_t in out:
        for k, (n, mean, m2) in zip(keys, rank_t.cpu().tolist(), strict=False):
            moments[k].merge(Moments(int(n), mean, m2))


#: histogram bins of the plots: IoU (x) and confidence (y).
def _bins(iou: str) -> tuple[np.ndarray, np.ndarray]:
    lo = 0.0 if iou == "iou" else -1.0
    return np.linspace(lo, 1.0, 51), np.linspace(0.0, 1.0, 51)


def mismatch(
    dataset: Dataset | None,
    predictions,
    *,
    anchors=None,
    size: int | None = None,
    iou: str = "iou",
    iou_t: float = 0.225,
    assigner: str = "yolov3",
    ratio_t: float = 4.0,
    neighborhood: int = 0,
    examples: int = 0,
    plot: str | Path | None = None,
    device=None,
    per_object=True,
    chunk_objects: int | None = CHUNK_OBJECTS,
) -> Mismatch:
    """Compare objectness ranking with IoU ranking over each object's candidate predictions.

    Streams like :func:`cocostat.audit.anchor_audit`: image-aligned chunks on ``device``, partial
    results (counts; (n, mean, M2) per statistic merged by Chan's formula; plot histograms; per-image
    top-k lists) combined, so memory is bounded by a chunk.

    Args:
        dataset, predictions, anchors, size: see :func:`cocostat.audit.load_inputs`; predictions are
            required.
        iou: IoU variant; iou_t, ratio_t, assigner: the label assigner (for the matched figures).
        neighborhood: radius r of the candidate set (0: the centre cell only).
        examples: list this many worst images (largest sum over objects of best IoU minus the IoU
            of the highest-objectness candidate).
        plot: folder to write ``iou_vs_obj.png`` and ``iou_vs_score.png`` into (2-D histograms per level).
        device: torch device of the computation (default CPU).
        per_object: True: keep :attr:`Mismatch.per_object` in memory; False: leave it empty; a
            ``.parquet``/``.csv`` path: write it there chunk by chunk (atomically).
        chunk_objects: objects per chunk (None: one chunk per stored part).

    Returns:
        A :class:`Mismatch`.
    """
    if predictions is None:
        raise OptionError(f"mismatch needs predictions: {GIVE_PREDICTIONS}")
    kind = check_options(iou, assigner, iou_t, ratio_t, examples)
    if neighborhood < 0:
        raise OptionError(f"neighborhood must be >= 0, got {neighborhood}", param="neighborhood")
    src = open_inputs(dataset, predictions, anchors=anchors, size=size)
    if neighborhood > (src.neighborhood or 0):
        raise OptionError(
            f"--neighborhood {neighborhood} is wider than the {src.neighborhood} cell(s) stored in "
            f"{src.source}; predict again with a wider --neighborhood"
        )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    keep, sink = per_object_sink(per_object)
    L = src.grid.num_levels
    xbins, ybins = _bins(iou)
    hist = np.zeros((2, L, xbins.size - 1, ybins.size - 1), np.int64) if plot is not None else None
    moments = {k: Moments() for k in [*STATS, "obj_share", "score_share"]}
    counts = Sums(objects=0, obj_not_best=0, score_not_best=0, most=0)
    frames, tops = [], []
    with sink if sink is not None else contextlib.nullcontext(), compute_threads(dev):
        for inp in rank_chunks(src, chunk_objects):
            arrays = inp.need_candidates("mismatch")
            ct = candidate_tensors(arrays, inp.grid, iou=iou, assigner=kind, iou_t=iou_t, ratio_t=ratio_t, device=dev)
            res = mismatch_tensors(ct, neighborhood)
            if hist is not None:
                hist += _histograms(ct, res["cols"], L, xbins, ybins)
            del ct
            frame = _per_object_rows(inp, res)
            for name in STATS:
                moments[name].merge(Moments.of(frame[name].to_numpy(dtype=np.float64)))
            pos = frame["best_iou"].to_numpy() > 0
            best = frame["best_iou"].to_numpy()[pos]
            moments["obj_share"].merge(Moments.of(frame["obj_iou"].to_numpy()[pos] / best))
            moments["score_share"].merge(Moments.of(frame["score_iou"].to_numpy()[pos] / best))
            counts.merge(
                Sums(
                    objects=len(frame),
                    obj_not_best=int(frame["obj_not_best"].sum()),
                    score_not_best=int(frame["score_not_best"].sum()),
                )
            )
            counts.values["most"] = np.maximum(counts["most"], int(res["candidates"].max(initial=0)))
            if keep:
                frames.append(frame)
            if sink is not None:
                sink.write(frame)
            if examples:
                tops.append(_examples(frame, src.file_name, examples))
            del frame, res
        most_here = int(counts.values.pop("most"))
        counts.all_reduce()
        most = _all_max(most_here)
        if hist is not None:
            hist = Sums(h=hist).all_reduce()["h"]
        _merge_moments_across_ranks(moments)
    tops = gather_examples(tops)
    per_object = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0] if frames else pd.DataFrame()
    stats = pd.DataFrame(
        [
            (name, moments[name].n, moments[name].mean if moments[name].n else math.nan, moments[name].var, desc)
            for name, desc in STATS.items()
        ],
        columns=["statistic", "objects", "mean", "var", "definition"],
    )

    def share(key):
        return moments[key].mean if moments[key].n else None

    plots: tuple[str, ...] = ()
    if (
        plot is not None and hist is not None and _rank() == 0
    ):  # every rank holds the summed histograms; rank 0 draws them
        plots = tuple(str(p) for p in plot_histogram_counts(hist, xbins, ybins, src.grid, src.source, Path(plot), iou))
    ex = rerank(tops, ["iou_lost", "image_id"], [False, True], examples)
    if not len(ex):
        ex = pd.DataFrame(
            columns=["image_id", "file_name", "objects", "obj_not_best", "iou_lost", "mean_best_iou", "mean_obj_iou"]
        )
    return Mismatch(
        source=src.source,
        anchors=src.grid.name,
        assigner=kind.name,
        iou=iou,
        iou_t=float(iou_t),
        ratio_t=float(ratio_t),
        neighborhood=int(neighborhood),
        objects=int(counts["objects"]),
        candidates_per_object=most,
        obj_not_best=int(counts["obj_not_best"]),
        score_not_best=int(counts["score_not_best"]),
        obj_iou_share=share("obj_share"),
        score_iou_share=share("score_share"),
        stats=stats,
        per_object=per_object,
        examples=ex,
        plots=plots,
    )


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _all_max(value: int) -> int:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def _per_object_rows(inp: AuditInputs, res: dict) -> pd.DataFrame:
    """The per-object table of one chunk (objects with at least one candidate)."""
    keep = res["candidates"] > 0
    arr = inp.need_candidates("mismatch")
    anchor, dx, dy = arr.anchor, arr.dx, arr.dy
    per_object = pd.DataFrame(
        {
            **inp.object_columns(),
            "candidates": res["candidates"],
            "best_anchor": anchor[res["best_col"]],
            "best_dx": dx[res["best_col"]],
            "best_dy": dy[res["best_col"]],
            "obj_anchor": anchor[res["obj_col"]],
            "obj_dx": dx[res["obj_col"]],
            "obj_dy": dy[res["obj_col"]],
            "score_anchor": anchor[res["score_col"]],
            **{k: res[k] for k in STATS},
        }
    )[keep].reset_index(drop=True)
    per_object["obj_not_best"] = per_object["obj_iou"] < per_object["best_iou"]
    per_object["score_not_best"] = per_object["score_iou"] < per_object["best_iou"]
    per_object["iou_lost"] = per_object["best_iou"] - per_object["obj_iou"]
    return per_object


def _examples(per_object: pd.DataFrame, file_name: dict, k: int) -> pd.DataFrame:
    cols = ["image_id", "file_name", "objects", "obj_not_best", "iou_lost", "mean_best_iou", "mean_obj_iou"]
    if k <= 0 or per_object.empty:
        return pd.DataFrame(columns=cols)
    g = (
        per_object.groupby("image_id", sort=True)
        .agg(
            objects=("ann_id", "size"),
            obj_not_best=("obj_not_best", "sum"),
            iou_lost=("iou_lost", "sum"),
            mean_best_iou=("best_iou", "mean"),
            mean_obj_iou=("obj_iou", "mean"),
        )
        .reset_index()
    )
    g = g.sort_values(["iou_lost", "image_id"], ascending=[False, True], kind="stable").head(k)
    g.insert(1, "file_name", g["image_id"].map(file_name).fillna(""))
    return g[cols].reset_index(drop=True)


def _histograms(ct: CandidateTensors, cols, num_levels: int, xbins: np.ndarray, ybins: np.ndarray) -> np.ndarray:
    """(2, L, X, Y) int64 counts of (IoU, objectness) and (IoU, class-aware score) of every valid
    candidate in the table columns ``cols`` (R,), per level."""
    cols_t = torch.as_tensor(cols, device=ct.q.device)
    q = ct.q[:, cols_t].cpu().numpy()  # (G, R)
    in_set = ct.valid[:, cols_t].cpu().numpy()  # (G, R)
    obj = ct.obj[:, cols_t].cpu().numpy()
    score = obj * ct.cls_prob[:, cols_t].cpu().numpy()
    level = ct.level[cols_t].cpu().numpy()  # (R,)
    out = np.zeros((2, num_levels, xbins.size - 1, ybins.size - 1), np.int64)
    for k, conf in enumerate((obj, score)):
        for lv in range(num_levels):
            m = in_set & (level == lv)[None, :]  # (G, R)
            out[k, lv] = np.histogram2d(q[m], conf[m], bins=[xbins, ybins])[0].astype(np.int64)
    return out


def plot_histograms(ct: CandidateTensors, cols: np.ndarray, inp: AuditInputs, folder: Path, iou: str) -> list[Path]:
    """2-D histograms of IoU against objectness and against class-aware score, one panel per level.

    Every valid candidate in the table columns ``cols`` (R,) counts once. Writes ``iou_vs_obj.png``
    and ``iou_vs_score.png`` into ``folder`` atomically and returns their paths.
    """
    xbins, ybins = _bins(iou)
    counts = _histograms(ct, cols, inp.grid.num_levels, xbins, ybins)
    return plot_histogram_counts(counts, xbins, ybins, inp.grid, inp.source, folder, iou)


def plot_histogram_counts(
    counts: np.ndarray, xbins: np.ndarray, ybins: np.ndarray, grid, source: str, folder: Path, iou: str
) -> list[Path]:
    """Draw (2, L, X, Y) histogram counts (objectness, then score) as ``iou_vs_obj.png`` and
    ``iou_vs_score.png`` in ``folder`` (atomically); return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    lo = float(xbins[0])
    name_of = {"iou": "IoU", "giou": "GIoU", "diou": "DIoU", "ciou": "CIoU"}[iou]
    written = []
    for k, (name, label) in enumerate((("obj", "objectness"), ("score", "objectness x class probability"))):
        L = grid.num_levels
        fig, axes = plt.subplots(1, L, figsize=(4.6 * L, 4.2), squeeze=False, constrained_layout=True)
        for lv in range(L):
            ax = axes[0, lv]
            h = counts[k, lv].astype(np.float64)
            mesh = ax.pcolormesh(
                xbins, ybins, np.where(h.T > 0, h.T, np.nan), cmap="viridis", norm=LogNorm(vmin=1, vmax=max(h.max(), 1))
            )
            ax.set_title(f"level {lv} (stride {int(grid.strides[lv])}), {int(counts[k, lv].sum())} predictions")
            ax.set_xlabel(f"{name_of} with the object")
            ax.set_ylabel(label)
            ax.set_xlim(lo, 1)
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            fig.colorbar(mesh, ax=ax, label="predictions")
        # wrapped to the figure's width: the source names a folder path of any length
        fig.suptitle(textwrap.fill(f"{name_of} against {label}: {source}", width=int(13 * 4.6 * L)))
        path = folder / f"iou_vs_{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
