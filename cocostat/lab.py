"""``cocostat assigners``: the assigner laboratory. Which label assignment does this model agree with?

Every registered assigner (:mod:`cocostat.assigners`) is run on the same objects and, with a
predictions folder, on the same stored predictions, and compared by the figures below. Crowd
annotations are left out (counted in a warning), as in ``anchor-audit``.

Where each assigner looks:

- box-only assigners (``needs_predictions`` false: yolov3, darknet, yolov5, atss, topk-anchor)
  run over the **whole grid** (every slot within the assigner's reach of the centre cell, a reach
  each module proves sufficient), from box sizes and positions only;
- prediction-aware assigners (topk-iou, best-pred, mixed, simota, tal) choose among the **stored
  neighbourhood** of ``cocostat predict`` (the (2n+1)^2 cells around each object's centre cell,
  every anchor): ``region_slots_outside`` says how many slots of the region they would choose from
  on the whole grid are not stored.

Figures: every figure's JSON key (per entry of ``assigners[]``), table label and exact definition is
in :data:`cocostat.figures.FIGURES` (analysis ``assigners``; the docs' Figures page is generated from
it), and the tables here take their labels from there. With predictions, a prediction's IoU is the
``--iou`` kind between decoded box and object, and only positives in the stored neighbourhood that
have a finite prediction count.

The predictions store is read in image-aligned chunks (:func:`cocostat.audit.open_inputs`), and the
computation runs in image-aligned blocks of objects (:func:`lab_block`), each returning mergeable
partial results (:class:`LabPartial`: counts and per-object rows), so the whole answer is the
blocks' answers put together; memory holds one chunk's candidate values plus the per-object figures.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cocostat import assigners as registry
from cocostat.assign import in_positives
from cocostat.assigners import (
    Assigner,
    candidate_slots,
    grid_slots,
    matched_anchors,
    positive_keys,
    slot_count,
    topk_mask,
)
from cocostat.assigners._protocol import GIVE_PREDICTIONS, member
from cocostat.audit import dense_image_index, open_inputs
from cocostat.boxes import IouKind, iou_kind
from cocostat.errors import CocostatWarning, OptionError
from cocostat.figures import figures, label

DEFAULT_REFERENCE = "yolov3"
DEFAULT_CHUNK = 4096

#: the analysis' name in :mod:`cocostat.figures` (every figure's key, table label and definition).
FIGURES = "assigners"

#: column of the overview table (:attr:`AssignerLab.table`) -> its figure's path in ``assigners[]``,
#: in table order; the table shows each under its figure's label.
_COLUMNS = {
    "positives": "positives",
    "per_object_mean": "positives_per_object.mean",
    "per_object_p50": "positives_per_object.p50",
    "per_object_p90": "positives_per_object.p90",
    "per_object_max": "positives_per_object.max",
    "objects_without_positive": "objects_without_positive",
    "mean_anchor_wh_iou": "mean_anchor_wh_iou",
    "mean_jaccard": "agreement.mean_jaccard",
    "disjoint_objects": "agreement.disjoint_objects",
    "mean_pred_iou": "mean_pred_iou",
    "best_pred_positive_share": "best_pred_positive_share",
    "score_iou_mismatch_share": "score_iou_mismatch_share",
    "positives_not_stored": "positives_not_stored",
    "region_outside_mean": "region_slots_outside.mean",
}

#: per-object columns of a :class:`LabPartial` (each (G,) numpy), NaN where not defined.
OBJECT_COLUMNS = (
    "positives",
    "wh_iou_sum",
    "jaccard",
    "pred_positives",
    "pred_iou_sum",
    "has_pred",
    "best_pred_positive",
    "two_positives",
    "score_iou_mismatch",
    "not_stored",
    "region_outside",
)


def parse_names(names) -> list[str]:
    """A comma-separated string or a list of assigner names, checked and de-duplicated (order kept)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[str] = []
    for n in names:
        if registry.check_name(n, "assigners") not in out:
            out.append(n)
    if not out:
        raise OptionError(f"assigners needs at least one of {', '.join(registry.NAMES)}", param="assigners")
    return out


def default_names(has_predictions: bool) -> list[str]:
    """Every assigner the inputs allow: box-only ones first (registry order), then prediction-aware."""
    classes = [registry.load(n) for n in registry.NAMES]
    box = [c.name for c in classes if not c.needs_predictions]
    pred = [c.name for c in classes if c.needs_predictions]
    box.sort(key=lambda n: (n != DEFAULT_REFERENCE, n))  # the default reference first
    return box + (pred if has_predictions else [])


# --------------------------------------------------------------------------------------------------
# One image-aligned block
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LabPartial:
    """Mergeable results of some objects: per assigner, per-object rows and per-anchor/level counts.

    Attributes:
        rows: (G,) int64 object indices (into the run's objects) of the per-object arrays.
        objects: assigner name -> {column of :data:`OBJECT_COLUMNS`: (G,) float64}.
        per_anchor: assigner name -> (2, A) int64: positives per anchor, and objects with a positive there.
        per_level: assigner name -> (L,) int64 positives per level.
    """

    rows: np.ndarray
    objects: dict
    per_anchor: dict
    per_level: dict

    def merge(self, other: LabPartial) -> LabPartial:
        """Both blocks' results (counts add, per-object rows concatenate)."""
        return LabPartial(
            np.concatenate([self.rows, other.rows]),
            {n: {c: np.concatenate([v[c], other.objects[n][c]]) for c in v} for n, v in self.objects.items()},
            {n: v + other.per_anchor[n] for n, v in self.per_anchor.items()},
            {n: v + other.per_level[n] for n, v in self.per_level.items()},
        )


def _codes(slots, pos, K: int) -> torch.Tensor:
    """(P,) int64 ``object row x K + flat slot index`` of each positive."""
    g, key = positive_keys(slots, pos)
    return g * K + key


def lab_block(
    boxes: torch.Tensor,
    image: torch.Tensor,
    grid,
    configured: list[Assigner],
    reference: Assigner,
    arrays=None,
    iou: IouKind = "iou",
    rows: np.ndarray | None = None,
) -> LabPartial:
    """Every assigner on one image-aligned block of objects.

    Args:
        boxes: (G, 4) float, xyxy, input pixels, on the device to compute on.
        image: (G,) int64 dense image index (objects of one image together; conflicts are per image).
        grid: the anchor grid.
        configured: the assigners to report. reference: the one to compare with (run once more if
            it is not among them).
        arrays: the block's :class:`~cocostat.candidates.CandidateArrays` (same objects, same order),
            or None (box-only).
        iou: IoU kind of the prediction figures.
        rows: (G,) int64 indices of these objects in the whole run (default 0..G-1).
    """
    G = boxes.shape[0]
    K = slot_count(grid)
    stored = candidate_slots(boxes, grid, arrays, image, iou=iou) if arrays is not None else None
    if stored is not None:
        stored_pred = stored.predictions()
        best = topk_mask(stored_pred.q, 1, stored.valid(), stored.order)  # (G, N), each object's best prediction
        has_pred = stored.valid().any(1)  # (G,)
    results: dict[str, dict] = {}
    codes: dict[str, torch.Tensor] = {}
    run = list(configured) + ([reference] if reference.name not in {a.name for a in configured} else [])
    for asg in run:
        pos_st: torch.Tensor | None
        if asg.needs_predictions:
            if stored is None:
                raise OptionError(f"the {asg.name} assigner needs predictions: {GIVE_PREDICTIONS}")
            slots = stored
            pos = asg.positives(stored)  # (G, N)
            pos_st = pos
        else:
            slots = grid_slots(boxes, grid, asg.reach(grid), image)
            pos = asg.positives(slots)
            pos_st = in_positives(slots, pos, stored) if stored is not None else None
        codes[asg.name] = _codes(slots, pos, K)
        n_pos = pos.sum(1)
        out = {
            "positives": n_pos,
            "wh_iou_sum": torch.where(pos, slots.wh_iou, 0.0).sum(1),
            "per_anchor": torch.bincount(slots.anchor.expand_as(pos)[pos], minlength=grid.num_anchors),
            "anchor_objects": matched_anchors(slots, pos).sum(0),
            "per_level": torch.bincount(slots.level.expand_as(pos)[pos], minlength=grid.num_levels),
        }
        if stored is not None and pos_st is not None:
            pp = pos_st & stored.valid()  # positives with a finite stored prediction
            q = stored_pred.q.to(torch.float64)
            npp = pp.sum(1)
            conf = topk_mask(stored_pred.score, 1, pp, stored.order)  # the most confident positive
            q_conf = torch.where(conf, q, -math.inf).amax(1)
            q_best = torch.where(pp, q, -math.inf).amax(1)
            two = npp >= 2
            out.update(
                {
                    "pred_positives": npp,
                    "pred_iou_sum": torch.where(pp, q, 0.0).sum(1),
                    "has_pred": has_pred,
                    "best_pred_positive": (best & pos_st).any(1) & has_pred,
                    "two_positives": two,
                    "score_iou_mismatch": two & (q_conf < q_best),
                    "not_stored": n_pos - pos_st.sum(1) if not asg.needs_predictions else torch.zeros_like(n_pos),
                    "region_outside": (
                        asg.region_size(boxes, grid) - (asg.region(stored) & stored.inside).sum(1)
                        if asg.needs_predictions
                        else torch.zeros_like(n_pos)
                    ),
                }
            )
        results[asg.name] = out

    ref_codes, ref_n = codes[reference.name], results[reference.name]["positives"]
    rows = np.arange(G) if rows is None else np.asarray(rows)
    objects, per_anchor, per_level = {}, {}, {}
    for asg in configured:
        r = results[asg.name]
        c = codes[asg.name]
        inter = torch.bincount(c[member(c, ref_codes)] // K, minlength=G)[:G]  # (G,)
        union = r["positives"] + ref_n - inter
        jac = torch.where(union > 0, inter.double() / union.clamp(min=1).double(), math.nan)
        skip = ("per_anchor", "per_level", "anchor_objects")
        cols = {"jaccard": jac, **{k: v for k, v in r.items() if k not in skip}}
        objects[asg.name] = {
            k: (cols[k].double().cpu().numpy() if k in cols else np.full(G, np.nan)) for k in OBJECT_COLUMNS
        }
        per_anchor[asg.name] = torch.stack([r["per_anchor"], r["anchor_objects"]]).cpu().numpy().astype(np.int64)
        per_level[asg.name] = r["per_level"].cpu().numpy().astype(np.int64)
    return LabPartial(rows, objects, per_anchor, per_level)


def image_blocks(image_index: np.ndarray, max_objects: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive blocks of at most ``max_objects`` objects that never split an image.

    ``image_index`` must be sorted; an image with more objects than ``max_objects`` is one block.
    """
    G = int(image_index.shape[0])
    if G == 0:
        return []
    starts = np.flatnonzero(np.r_[True, image_index[1:] != image_index[:-1]])  # first object of each image
    out, lo = [], 0
    while lo < G:  # one step per block, not per object
        if lo + max_objects >= G:
            hi = G
        else:
            fits = starts[(starts > lo) & (starts <= lo + max_objects)]
            hi = int(fits[-1]) if fits.size else int(starts[starts > lo][0])  # else: one image over the limit
        out.append((lo, hi))
        lo = hi
    return out


def _block_arrays(arr, rows: np.ndarray):
    """The candidate arrays of objects ``rows`` (per-object fields sliced, the layout kept)."""
    from cocostat.candidates import CandidateArrays

    layout = {"level", "anchor", "dx", "dy", "anchor_wh", "stride"}
    return CandidateArrays(
        **{f: (getattr(arr, f) if f in layout else getattr(arr, f)[rows]) for f in CandidateArrays.__dataclass_fields__}
    )


# --------------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------------
def _f(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


@dataclass(frozen=True, eq=False)
class AssignerLab:
    """The assigner laboratory's figures; every definition is in :data:`cocostat.figures.FIGURES`.

    ``table`` has one row per assigner (the figures as columns); ``per_anchor`` one row per
    (assigner, anchor); ``per_level`` one row per (assigner, level); ``per_object`` one row per
    (assigner, object).
    """

    source: str
    anchors: str
    size: int
    iou: str
    reference: str
    neighborhood: int | None
    objects: int
    images: int
    options: dict
    table: pd.DataFrame = field(repr=False)
    per_anchor: pd.DataFrame = field(repr=False)
    per_level: pd.DataFrame = field(repr=False)
    per_object: pd.DataFrame = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def has_predictions(self) -> bool:
        return self.neighborhood is not None

    def to_dict(self) -> dict:
        out = []
        for r in self.table.itertuples(index=False):
            pa = self.per_anchor[self.per_anchor["assigner"] == r.name]
            pl = self.per_level[self.per_level["assigner"] == r.name]
            d = {
                "name": r.name,
                "definition": r.definition,
                "needs_predictions": bool(r.needs_predictions),
                "where": r.where,
                "positives": int(r.positives),
                "positives_per_object": {
                    "mean": _f(r.per_object_mean),
                    "p50": _f(r.per_object_p50),
                    "p90": _f(r.per_object_p90),
                    "max": int(r.per_object_max),
                },
                "objects_without_positive": int(r.objects_without_positive),
                "mean_anchor_wh_iou": _f(r.mean_anchor_wh_iou),
                "per_anchor": [
                    {
                        "anchor_index": int(a.anchor_index),
                        "level": int(a.level),
                        "anchor": [float(a.w), float(a.h)],
                        "positives": int(a.positives),
                        "objects": int(a.objects),
                    }
                    for a in pa.itertuples(index=False)
                ],
                "per_level": [
                    {"level": int(v.level), "stride": int(v.stride), "positives": int(v.positives)}
                    for v in pl.itertuples(index=False)
                ],
                "agreement": {
                    "reference": self.reference,
                    "mean_jaccard": _f(r.mean_jaccard),
                    "disjoint_objects": int(r.disjoint_objects),
                },
            }
            if self.has_predictions:
                d.update(
                    {
                        "mean_pred_iou": _f(r.mean_pred_iou),
                        "best_pred_positive": int(r.best_pred_positive),
                        "best_pred_positive_share": _f(r.best_pred_positive_share),
                        "score_iou_mismatch": int(r.score_iou_mismatch),
                        "score_iou_mismatch_share": _f(r.score_iou_mismatch_share),
                        "positives_not_stored": int(r.positives_not_stored),
                        "region_slots_outside": (
                            {"mean": _f(r.region_outside_mean), "total": int(r.region_outside_total)}
                            if r.needs_predictions
                            else None
                        ),
                    }
                )
            out.append(d)
        return {
            "source": self.source,
            "anchors": self.anchors,
            "size": self.size,
            "iou": self.iou,
            "reference": self.reference,
            "predictions": self.has_predictions,
            "neighborhood": self.neighborhood,
            "objects": self.objects,
            "images": self.images,
            "options": self.options,
            "assigners": out,
            "notes": list(self.notes),
        }

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        figs = {f.path: f for f in figures(FIGURES, "assigners[]")}
        cols = [c for c, path in _COLUMNS.items() if self.has_predictions or not figs[path].needs_predictions]
        short = {c: label(FIGURES, f"assigners[].{_COLUMNS[c]}") for c in cols}
        overview = self.table[["name", "where", *cols]].rename(columns=short)
        title = (
            f"assigners: {self.source}; anchors {self.anchors}; size {self.size}; "
            f"{self.objects} objects in {self.images} images; reference {self.reference}"
            + (f"; IoU = {self.iou}; stored neighbourhood {self.neighborhood}" if self.has_predictions else "")
        )
        legend = ", ".join(f"{v} = {k}" for k, v in short.items() if v != k)
        by_level = self.per_level.pivot(index="assigner", columns="level", values="positives")
        by_level = by_level.loc[self.table["name"]].rename(columns=lambda lv: f"level {lv}").reset_index()
        by_anchor = self.per_anchor.pivot(index="assigner", columns="anchor_index", values="positives")
        by_anchor = by_anchor.loc[self.table["name"]].rename(columns=lambda a: f"a{a}").reset_index()
        out: list[tuple[str, pd.DataFrame | str]] = [
            (title, overview),
            (f"legend: {legend}", self.table[["name", "definition"]]),
            (label(FIGURES, "assigners[].per_level[].positives"), by_level),
            (label(FIGURES, "assigners[].per_anchor[].positives"), by_anchor),
        ]
        if self.notes:
            out.append(("notes", "\n".join(self.notes)))
        return out

    def plot(self, folder: str | Path) -> list[Path]:
        """Write ``assigners.png`` into ``folder``: positives per object and per level, agreement, IoU."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from cocostat.atomic import atomic_path

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        t = self.table
        names = t["name"].tolist()
        y = np.arange(len(names))
        panels = 3 if self.has_predictions else 2
        fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 0.45 * len(names) + 2.2), sharey=True)
        ax = axes[0]
        ax.barh(y, t["per_object_mean"], color="#4c72b0", label="mean")
        ax.scatter(t["per_object_p90"], y, color="black", marker="|", s=120, label="p90", zorder=3)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel("positives per object")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8)
        ax = axes[1]
        lv = self.per_level.pivot(index="assigner", columns="level", values="positives").loc[names]
        share = lv.div(lv.sum(1).replace(0, np.nan), axis=0).fillna(0)
        left = np.zeros(len(names))
        for level in share.columns:
            ax.barh(y, share[level], left=left, label=f"level {level}")
            left += share[level].to_numpy()
        ax.set_xlabel("share of positives per level")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=min(4, len(share.columns)), fontsize=8)
        if self.has_predictions:
            ax = axes[2]
            ax.barh(y - 0.2, t["mean_pred_iou"].astype(float), height=0.4, label=f"mean prediction {self.iou}")
            ax.barh(y + 0.2, t["mean_jaccard"].astype(float), height=0.4, label=f"Jaccard with {self.reference}")
            ax.set_xlabel("mean over positives / objects")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8)
        fig.suptitle(f"assigners: {self.source}, anchors {self.anchors}, {self.objects} objects", fontsize=10)
        fig.tight_layout()
        path = folder / "assigners.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        return [path]


def _summary(name: str, asg: Assigner, cols: dict, has_predictions: bool) -> dict:
    n = cols["positives"]
    G = n.shape[0]
    total = int(n.sum())

    def pct(q):
        return float(np.percentile(n, q)) if G else math.nan

    jac = cols["jaccard"]
    row = {
        "name": name,
        "definition": asg.describe(),
        "needs_predictions": asg.needs_predictions,
        "where": "stored neighbourhood" if asg.needs_predictions else "whole grid",
        "positives": total,
        "per_object_mean": float(n.mean()) if G else math.nan,
        "per_object_p50": pct(50),
        "per_object_p90": pct(90),
        "per_object_max": int(n.max()) if G else 0,
        "objects_without_positive": int((n == 0).sum()),
        "mean_anchor_wh_iou": float(cols["wh_iou_sum"].sum() / total) if total else math.nan,
        "mean_jaccard": float(np.nanmean(jac)) if np.isfinite(jac).any() else math.nan,
        "disjoint_objects": int((jac == 0).sum()),
    }
    if has_predictions:
        npp = cols["pred_positives"].sum()
        has, two = cols["has_pred"] > 0, cols["two_positives"] > 0
        row.update(
            {
                "mean_pred_iou": float(cols["pred_iou_sum"].sum() / npp) if npp else math.nan,
                "best_pred_positive": int((cols["best_pred_positive"] > 0).sum()),
                "best_pred_positive_share": (
                    float((cols["best_pred_positive"] > 0).sum() / has.sum()) if has.any() else math.nan
                ),
                "score_iou_mismatch": int((cols["score_iou_mismatch"] > 0).sum()),
                "score_iou_mismatch_share": (
                    float((cols["score_iou_mismatch"] > 0).sum() / two.sum()) if two.any() else math.nan
                ),
                "positives_not_stored": int(cols["not_stored"].sum()),
                "region_outside_mean": float(cols["region_outside"].mean())
                if G and asg.needs_predictions
                else math.nan,
                "region_outside_total": int(cols["region_outside"].sum()) if asg.needs_predictions else 0,
            }
        )
    return row


def assigner_lab(
    dataset,
    predictions=None,
    *,
    anchors=None,
    size: int | None = None,
    assigners=None,
    reference: str = DEFAULT_REFERENCE,
    topk: int = 5,
    alpha: float = 0.5,
    iou: str = "iou",
    iou_t: float = 0.225,
    ratio_t: float = 4.0,
    device=None,
    chunk_objects: int = DEFAULT_CHUNK,
) -> AssignerLab:
    """Run several label assigners on the same objects (and predictions) and compare them.

    Args:
        dataset, predictions, anchors, size: as for :func:`cocostat.audit.load_inputs` (without
            predictions, object boxes are letterboxed to ``size`` as ``cocostat predict`` does).
        assigners: names (a list or a comma-separated string); default every assigner the inputs
            allow (:func:`default_names`).
        reference: the assigner the others are compared with.
        topk, alpha, iou_t, ratio_t: the shared assigner options (``--topk`` for topk-anchor and
            topk-iou, ``--alpha`` for mixed, ``--iou-t`` for yolov3 and mixed, ``--ratio-t`` for yolov5).
        iou: IoU kind of the prediction figures and of topk-iou, best-pred and mixed.
        device: torch device (default CPU); results come back on the CPU.
        chunk_objects: objects per image-aligned block (memory bound; results do not depend on it).

    Raises:
        OptionError: unknown names or options, or a prediction-aware assigner without predictions.
    """
    kind_of_iou = iou_kind(iou, "iou")
    if int(chunk_objects) < 1:
        raise OptionError(f"chunk_objects must be >= 1, got {chunk_objects}")
    opts = {"topk": topk, "alpha": alpha, "iou_t": iou_t, "ratio_t": ratio_t}
    names = parse_names(assigners) if assigners is not None else None
    ref = registry.create(registry.check_name(reference, "reference"), **opts)
    if names is None:
        names = default_names(predictions is not None)
    configured = [registry.create(n, **opts) for n in names]  # options checked before any work
    need = [a.name for a in [*configured, ref] if a.needs_predictions]
    if need and predictions is None:
        raise OptionError(f"assigner(s) {', '.join(dict.fromkeys(need))} need predictions: {GIVE_PREDICTIONS}")
    src = open_inputs(dataset, predictions, anchors=anchors, size=size)  # only the manifest is read here
    dev = torch.device(device) if device is not None else torch.device("cpu")
    grid = src.grid
    partial: LabPartial | None = None
    ids: list[tuple[np.ndarray, np.ndarray]] = []  # (ann_id, image_id) of each chunk, in order
    images = offset = 0
    # the store is read in image-aligned chunks (conflicts are per image, so a chunk is self-contained);
    # only the per-object figures, never the (G, N) candidate values, are kept across chunks
    for inp in src.chunks(int(chunk_objects)):
        n_img, img_idx = dense_image_index(inp.image_id)
        images += int(n_img.size)
        ids.append((inp.ann_id, inp.image_id))
        order = np.argsort(img_idx, kind="stable")  # objects of one image together
        for lo, hi in image_blocks(img_idx[order], int(chunk_objects)):
            rows = order[lo:hi]
            boxes = torch.from_numpy(np.ascontiguousarray(inp.boxes[rows])).to(dev)
            image = torch.from_numpy(img_idx[rows]).to(dev)
            arrays = _block_arrays(inp.candidates, rows) if inp.candidates is not None else None
            part = lab_block(boxes, image, grid, configured, ref, arrays, kind_of_iou, rows + offset)
            partial = part if partial is None else partial.merge(part)
        offset += int(inp.boxes.shape[0])
    if partial is None:  # no objects
        empty = np.zeros(0)
        partial = LabPartial(
            np.zeros(0, np.int64),
            {a.name: dict.fromkeys(OBJECT_COLUMNS, empty) for a in configured},
            {a.name: np.zeros((2, grid.num_anchors), np.int64) for a in configured},
            {a.name: np.zeros(grid.num_levels, np.int64) for a in configured},
        )
    ann_id = np.concatenate([a for a, _ in ids]) if ids else np.zeros(0, np.int64)
    image_id = np.concatenate([b for _, b in ids]) if ids else np.zeros(0, np.int64)
    meta = _Objects(src.source, src.neighborhood, src.predictions is not None, ann_id, image_id)
    return _result(meta, grid, configured, ref, partial, iou, opts, images)


@dataclass(frozen=True, eq=False)
class _Objects:
    """What the result needs of the inputs once every chunk is done (per object: (G,) ids only)."""

    source: str
    neighborhood: int | None
    has_predictions: bool
    ann_id: np.ndarray
    image_id: np.ndarray


def _result(
    inp: _Objects, grid, configured, ref, partial: LabPartial, iou: str, opts: dict, images: int
) -> AssignerLab:
    back = np.argsort(partial.rows, kind="stable")  # per-object rows back in the inputs' order
    objects = {n: {c: v[back] for c, v in cols.items()} for n, cols in partial.objects.items()}
    table = pd.DataFrame([_summary(a.name, a, objects[a.name], inp.has_predictions) for a in configured])
    A, L = grid.num_anchors, grid.num_levels
    per_anchor = pd.DataFrame(
        [
            {
                "assigner": a.name,
                "anchor_index": i,
                "level": int(grid.level[i]),
                "w": float(grid.wh[i, 0]),
                "h": float(grid.wh[i, 1]),
                "positives": int(partial.per_anchor[a.name][0, i]),
                "objects": int(partial.per_anchor[a.name][1, i]),
            }
            for a in configured
            for i in range(A)
        ]
    )
    per_level = pd.DataFrame(
        [
            {
                "assigner": a.name,
                "level": lv,
                "stride": int(grid.strides[lv]),
                "positives": int(partial.per_level[a.name][lv]),
            }
            for a in configured
            for lv in range(L)
        ]
    )
    rows = []
    for a in configured:
        cols = objects[a.name]
        frame = pd.DataFrame(
            {
                "assigner": a.name,
                "ann_id": inp.ann_id,
                "image_id": inp.image_id,
                "positives": cols["positives"].astype(np.int64),
                "jaccard": cols["jaccard"],
            }
        )
        if inp.has_predictions:
            frame["pred_positives"] = cols["pred_positives"].astype(np.int64)
            with np.errstate(invalid="ignore", divide="ignore"):
                frame["mean_pred_iou"] = cols["pred_iou_sum"] / cols["pred_positives"]
            frame["best_pred_positive"] = cols["best_pred_positive"] > 0
            frame["score_iou_mismatch"] = cols["score_iou_mismatch"] > 0
            frame["positives_not_stored"] = cols["not_stored"].astype(np.int64)
            frame["region_slots_outside"] = cols["region_outside"].astype(np.int64)
        rows.append(frame)
    per_object = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    notes = []
    if inp.has_predictions:
        pa = [a.name for a in configured if a.needs_predictions]
        if pa:
            notes.append(
                f"{', '.join(pa)} choose among the stored neighbourhood only ({inp.neighborhood} cell(s) "
                f"around the centre cell): region_slots_outside counts their region's slots not stored"
            )
        notes.append(
            "box-only assigners run over the whole grid; their positives outside the stored neighbourhood "
            "(positives_not_stored) have no prediction to score"
        )
    else:
        notes.append(
            "no predictions (give --predictions DIR or --cfg/--weights): box-only assigners only, "
            "over the whole grid; object boxes letterboxed to --size"
        )
    empty = [a.name for a in configured if len(table) and table.set_index("name").loc[a.name, "positives"] == 0]
    if empty and inp.ann_id.size:
        warnings.warn(f"assigner(s) {', '.join(empty)} made no positive at all", CocostatWarning, stacklevel=3)
    return AssignerLab(
        source=inp.source,
        anchors=grid.name,
        size=grid.size,
        iou=iou,
        reference=ref.name,
        neighborhood=inp.neighborhood,
        objects=int(inp.ann_id.size),
        images=images,
        options={k: v for k, v in opts.items()},
        table=table,
        per_anchor=per_anchor,
        per_level=per_level,
        per_object=per_object,
        notes=tuple(notes),
    )
