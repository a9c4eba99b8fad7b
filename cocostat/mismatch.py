"""``cocostat mismatch``: is the most confident prediction also the best localised one?

For every non-crowd object, its *candidates* are the decoded predictions of every anchor of every
level at the object's centre cell, or with ``--neighborhood r`` at every cell within ``r`` cells of
it (a (2r+1) x (2r+1) block; ``r`` at most the radius stored in the predictions), cells outside the
grid left out. IoU is the chosen ``--iou`` variant between a candidate box and the object (both in
network-input pixels). *Confidence* is the sigmoid objectness; the *class-aware score* is
objectness x sigmoid probability of the object's class. Argmax ties go to the first candidate in
the table's (anchor, dy, dx) order.

Figures (``key``: definition):

- ``objects``: objects with at least one candidate. ``candidates_per_object``: the most candidates
  any object has (anchors x cells).
- ``obj_not_best``: objects where the IoU of the highest-objectness candidate is below the highest
  IoU among the candidates (so a tie in IoU is not a mismatch); ``obj_not_best_share`` = that /
  ``objects``. ``score_not_best``, ``score_not_best_share``: the same with the class-aware score.
- ``obj_iou_share``: mean over objects with best IoU > 0 of ``IoU(highest objectness) / best IoU``;
  ``score_iou_share``: the same with the class-aware score.
- ``stats``: mean and population variance (ddof 0) over the objects where a value is defined
  (``objects`` says how many) of:

  ``best_iou`` highest IoU; ``obj_iou`` IoU of the highest-objectness candidate; ``score_iou`` IoU
  of the highest-score candidate; ``matched_iou`` mean IoU of the object's matched predictions (the
  assigner's positives in the whole stored table, as in ``anchor-audit``; objects with at least
  one); ``max_obj`` highest objectness; ``best_obj`` objectness of the highest-IoU candidate;
  ``max_score`` highest class-aware score; ``best_score`` score of the highest-IoU candidate;
  ``matched_anchors`` anchors the assigner matches; ``best_area`` and ``obj_area`` area of the
  highest-IoU and of the highest-objectness box in grid cells of their level (``w h / stride^2``);
  ``area_ratio`` = ``obj_area / best_area`` (objects with ``best_area > 0``); ``best_offset`` and
  ``obj_offset`` distance between the centre of that box and the object's centre, in grid cells of
  the box's level (pixels / stride).
"""

from __future__ import annotations

import textwrap

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cocostat.atomic import atomic_path
from cocostat.audit import (
    AuditInputs,
    CandidateTensors,
    _masked_max,
    _records,
    candidate_tensors,
    check_options,
    load_inputs,
)
from cocostat.boxes import matched_center_distance
from cocostat.data import Dataset
from cocostat.errors import OptionError
from cocostat.sources import write_frame

#: statistic -> what it is (the ``stats`` rows, in order).
STATS: dict[str, str] = {
    "best_iou": "highest IoU among the candidates",
    "obj_iou": "IoU of the highest-objectness candidate",
    "score_iou": "IoU of the highest class-aware-score candidate",
    "matched_iou": "mean IoU of the matched predictions",
    "max_obj": "highest objectness",
    "best_obj": "objectness of the highest-IoU candidate",
    "max_score": "highest class-aware score",
    "best_score": "class-aware score of the highest-IoU candidate",
    "matched_anchors": "anchors matched by the assigner",
    "best_area": "area of the highest-IoU box (grid cells)",
    "obj_area": "area of the highest-objectness box (grid cells)",
    "area_ratio": "obj_area / best_area",
    "best_offset": "centre offset of the highest-IoU box (grid cells)",
    "obj_offset": "centre offset of the highest-objectness box (grid cells)",
}


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
    max_obj, obj_r = _masked_max(obj, ok)  # (G,)
    max_score, score_r = _masked_max(score, ok)  # (G,)

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
        "candidates": ok.sum(1), "best_iou": best_iou, "obj_iou": at(q, obj_r), "score_iou": at(q, score_r),
        "matched_iou": matched_iou, "max_obj": max_obj, "best_obj": at(obj, best_r),
        "max_score": max_score, "best_score": at(score, best_r),
        "matched_anchors": ct.assignment.matched.sum(1),
        "best_area": best_area, "obj_area": obj_area, "area_ratio": area_ratio,
        "best_offset": matched_center_distance(bb, gt) / bs, "obj_offset": matched_center_distance(ob, gt) / os_,
        "best_col": best_col, "obj_col": obj_col, "score_col": score_col, "cols": cols,
    }
    out = {k: v.cpu().numpy() for k, v in out.items()}
    for k in STATS:  # float64 for the statistics; -inf (an object without candidates) -> NaN
        v = out[k].astype(np.float64)
        out[k] = np.where(np.isfinite(v), v, np.nan)
    return out


@dataclass(frozen=True, eq=False)
class Mismatch:
    """The mismatch report; see the module docstring for every definition.

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
            "source": self.source, "anchors": self.anchors, "assigner": self.assigner, "iou": self.iou,
            "iou_t": self.iou_t, "ratio_t": self.ratio_t, "neighborhood": self.neighborhood,
            "objects": self.objects, "candidates_per_object": self.candidates_per_object,
            "obj_not_best": self.obj_not_best, "obj_not_best_share": f(self.obj_not_best_share),
            "score_not_best": self.score_not_best, "score_not_best_share": f(self.score_not_best_share),
            "obj_iou_share": f(self.obj_iou_share), "score_iou_share": f(self.score_iou_share),
            "stats": {r.statistic: {"objects": int(r.objects), "mean": f(r.mean), "var": f(r.var)}
                      for r in self.stats.itertuples(index=False)},
            "examples": _records(self.examples),
            "plots": list(self.plots),
        }

    def to_frame(self) -> pd.DataFrame:
        return self.stats.copy()

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        overview = pd.DataFrame([
            ("objects", self.objects, None),
            ("candidates per object (at most)", self.candidates_per_object, None),
            ("highest objectness is not the best IoU", self.obj_not_best, self.obj_not_best_share),
            ("highest class-aware score is not the best IoU", self.score_not_best, self.score_not_best_share),
            ("IoU of highest objectness / best IoU (mean)", self.obj_iou_share, None),
            ("IoU of highest score / best IoU (mean)", self.score_iou_share, None),
        ], columns=["statistic", "value", "share"])
        title = (f"mismatch: {self.source}; anchors {self.anchors}; assigner {self.assigner}; IoU = {self.iou}; "
                 f"neighborhood {self.neighborhood}")
        out: list[tuple[str, pd.DataFrame | str]] = [
            (title, overview), ("per object: mean and variance over objects", self.stats)]
        if len(self.examples):
            out.append(("worst images (IoU lost by trusting objectness)", self.examples))
        if self.plots:
            out.append(("plots", "\n".join(self.plots)))
        return out

    def write_per_object(self, path: str | Path) -> Path:
        """Write :attr:`per_object` to ``path`` (``.parquet`` or ``.csv``) atomically."""
        return write_frame(self.per_object, path)


def mismatch(dataset: Dataset | None, predictions, *, anchors=None, size: int | None = None, iou: str = "iou",
             iou_t: float = 0.225, assigner: str = "yolov3", ratio_t: float = 4.0, neighborhood: int = 0,
             examples: int = 0, plot: str | Path | None = None, device=None) -> Mismatch:
    """Compare objectness ranking with IoU ranking over each object's candidate predictions.

    Args:
        dataset, predictions, anchors, size: see :func:`cocostat.audit.load_inputs`; predictions are
            required.
        iou: IoU variant; iou_t, ratio_t, assigner: the label assigner (for the matched figures).
        neighborhood: radius r of the candidate set (0: the centre cell only).
        examples: list this many worst images (largest sum over objects of best IoU minus the IoU
            of the highest-objectness candidate).
        plot: folder to write ``iou_vs_obj.png`` and ``iou_vs_score.png`` into (2-D histograms per level).
        device: torch device of the computation (default CPU).

    Returns:
        A :class:`Mismatch`.
    """
    if predictions is None:
        raise OptionError("mismatch needs predictions: give --predictions DIR or --cfg FILE --weights FILE")
    kind = check_options(iou, assigner, iou_t, ratio_t, examples)
    if neighborhood < 0:
        raise OptionError(f"neighborhood must be >= 0, got {neighborhood}", param="neighborhood")
    inp = load_inputs(dataset, predictions, anchors=anchors, size=size)
    if neighborhood > (inp.neighborhood or 0):
        raise OptionError(f"--neighborhood {neighborhood} is wider than the {inp.neighborhood} cell(s) stored in "
                          f"{inp.source}; predict again with a wider --neighborhood")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    ct = candidate_tensors(inp.candidates, inp.grid, iou=iou, assigner=kind, iou_t=iou_t, ratio_t=ratio_t,
                           device=dev)
    res = mismatch_tensors(ct, neighborhood)
    keep = res["candidates"] > 0
    arr = inp.candidates
    anchor, dx, dy = arr.anchor, arr.dx, arr.dy
    per_object = pd.DataFrame({
        "ann_id": inp.ann_id, "image_id": inp.image_id, "class_idx": inp.class_idx,
        "x1": inp.boxes[:, 0], "y1": inp.boxes[:, 1], "x2": inp.boxes[:, 2], "y2": inp.boxes[:, 3],
        "candidates": res["candidates"],
        "best_anchor": anchor[res["best_col"]], "best_dx": dx[res["best_col"]], "best_dy": dy[res["best_col"]],
        "obj_anchor": anchor[res["obj_col"]], "obj_dx": dx[res["obj_col"]], "obj_dy": dy[res["obj_col"]],
        "score_anchor": anchor[res["score_col"]],
        **{k: res[k] for k in STATS},
    })[keep].reset_index(drop=True)
    per_object["obj_not_best"] = per_object["obj_iou"] < per_object["best_iou"]
    per_object["score_not_best"] = per_object["score_iou"] < per_object["best_iou"]
    per_object["iou_lost"] = per_object["best_iou"] - per_object["obj_iou"]

    rows = []
    for name, desc in STATS.items():
        v = per_object[name].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        rows.append((name, int(v.size), float(v.mean()) if v.size else math.nan,
                     float(v.var()) if v.size else math.nan, desc))
    stats = pd.DataFrame(rows, columns=["statistic", "objects", "mean", "var", "definition"])

    pos = per_object["best_iou"].to_numpy() > 0
    def share(col):
        if not pos.any():
            return None
        return float((per_object[col].to_numpy()[pos] / per_object["best_iou"].to_numpy()[pos]).mean())

    plots: tuple[str, ...] = ()
    if plot is not None:
        plots = tuple(str(p) for p in plot_histograms(ct, res["cols"], inp, Path(plot), iou))
    return Mismatch(
        source=inp.source, anchors=inp.grid.name, assigner=kind.name, iou=iou, iou_t=float(iou_t),
        ratio_t=float(ratio_t), neighborhood=int(neighborhood), objects=len(per_object),
        candidates_per_object=int(res["candidates"].max(initial=0)),
        obj_not_best=int(per_object["obj_not_best"].sum()), score_not_best=int(per_object["score_not_best"].sum()),
        obj_iou_share=share("obj_iou"), score_iou_share=share("score_iou"),
        stats=stats, per_object=per_object, examples=_examples(per_object, inp, examples), plots=plots,
    )


def _examples(per_object: pd.DataFrame, inp: AuditInputs, k: int) -> pd.DataFrame:
    cols = ["image_id", "file_name", "objects", "obj_not_best", "iou_lost", "mean_best_iou", "mean_obj_iou"]
    if k <= 0 or per_object.empty:
        return pd.DataFrame(columns=cols)
    g = per_object.groupby("image_id", sort=True).agg(
        objects=("ann_id", "size"), obj_not_best=("obj_not_best", "sum"), iou_lost=("iou_lost", "sum"),
        mean_best_iou=("best_iou", "mean"), mean_obj_iou=("obj_iou", "mean")).reset_index()
    g = g.sort_values(["iou_lost", "image_id"], ascending=[False, True], kind="stable").head(k)
    g.insert(1, "file_name", g["image_id"].map(inp.file_name).fillna(""))
    return g[cols].reset_index(drop=True)


def plot_histograms(ct: CandidateTensors, cols: np.ndarray, inp: AuditInputs, folder: Path,
                    iou: str) -> list[Path]:
    """2-D histograms of IoU against objectness and against class-aware score, one panel per level.

    Every valid candidate in the table columns ``cols`` (R,) counts once. Writes ``iou_vs_obj.png`` and ``iou_vs_score.png`` into
    ``folder`` atomically and returns their paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    cols_t = torch.as_tensor(cols, device=ct.q.device)
    q = ct.q[:, cols_t].cpu().numpy()  # (G, R)
    in_set = ct.valid[:, cols_t].cpu().numpy()  # (G, R)
    obj = ct.obj[:, cols_t].cpu().numpy()
    score = obj * ct.cls_prob[:, cols_t].cpu().numpy()
    level = ct.level[cols_t].cpu().numpy()  # (R,)
    grid = inp.grid
    lo = 0.0 if iou == "iou" else -1.0
    name_of = {"iou": "IoU", "giou": "GIoU", "diou": "DIoU", "ciou": "CIoU"}[iou]
    xbins, ybins = np.linspace(lo, 1.0, 51), np.linspace(0.0, 1.0, 51)
    written = []
    for name, conf, label in (("obj", obj, "objectness"), ("score", score, "objectness x class probability")):
        L = grid.num_levels
        fig, axes = plt.subplots(1, L, figsize=(4.6 * L, 4.2), squeeze=False, constrained_layout=True)
        for lv in range(L):
            ax = axes[0, lv]
            m = in_set & (level == lv)[None, :]  # (G, R)
            h, _, _ = np.histogram2d(q[m], conf[m], bins=[xbins, ybins])
            mesh = ax.pcolormesh(xbins, ybins, np.where(h.T > 0, h.T, np.nan), cmap="viridis",
                                 norm=LogNorm(vmin=1, vmax=max(h.max(), 1)))
            ax.set_title(f"level {lv} (stride {int(grid.strides[lv])}), {int(m.sum())} predictions")
            ax.set_xlabel(f"{name_of} with the object")
            ax.set_ylabel(label)
            ax.set_xlim(lo, 1)
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            fig.colorbar(mesh, ax=ax, label="predictions")
        # wrapped to the figure's width: the source names a folder path of any length
        fig.suptitle(textwrap.fill(f"{name_of} against {label}: {inp.source}", width=int(13 * 4.6 * L)))
        path = folder / f"iou_vs_{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
