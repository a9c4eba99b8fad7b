"""Benchmark: ``anchor-audit`` and ``mismatch`` on a val2017-sized candidate table.

Synthetic candidate arrays (:func:`synthetic_candidates`: val2017's 36,335 non-crowd objects x 81
candidates = 9 yolov3 anchors x a 3x3 neighbourhood, predictions scattered around each object so
IoUs and objectness look like a trained model's) are audited side by side in one run by:

- cocostat, vectorised in torch: :func:`cocostat.audit.candidate_tensors` +
  :func:`cocostat.audit.audit_tensors` (every anchor-audit figure) and
  :func:`cocostat.mismatch.mismatch_tensors` from the dense arrays, then the whole
  ``anchor_audit()`` / ``mismatch()`` from the candidate table in memory and from parquet on disk;
- the baseline a user writes today: a Python loop over objects, numpy per object (:func:`loop_audit`).

Both compute the same figures; the run checks they agree, then writes ``reports/bench_audit.md``.

    python -m benchmarks.bench_audit [--scale 1.0] [--repeat 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cocostat.candidates import COLUMNS

#: yolov3 / yolov3-spp anchors (input pixels, cfg order) and masks of the three [yolo] layers.
YOLOV3_ANCHORS = [(10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326)]
YOLOV3_MASKS = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
YOLOV3_STRIDES = [32, 16, 8]
VAL2017_OBJECTS = 36_781 - 446  # non-crowd annotations of val2017


def synthetic_candidates(
    objects: int = 1000,
    *,
    per_image: float = 7.3,
    anchors=YOLOV3_ANCHORS,
    masks=YOLOV3_MASKS,
    strides=YOLOV3_STRIDES,
    size: int = 416,
    neighborhood: int = 1,
    crowd: float = 0.0,
    classes: int = 80,
    seed: int = 0,
    shared_slots: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """A random candidate table in the :mod:`cocostat.candidates` format, and its manifest.

    Objects: sqrt(area) log-normal (median 30 px), aspect log-normal, placed inside a
    ``size`` x ``size`` input; about ``per_image`` objects per image. Each anchor's prediction at
    each cell of the (2n+1)^2 block: centre ``(cell + sigmoid(t)) * stride`` with ``t`` drawn near
    the object's centre, size ``object size * exp(noise)`` with more noise for anchors far from
    the object's shape, objectness rising with the IoU plus noise. Cells outside the grid get
    ``valid = False`` and NaN predictions, as ``cocostat predict`` writes them.

    Values are drawn per candidate, so two objects of one image whose neighbourhoods share a cell
    see different predictions there (the store then writes dense parts). ``shared_slots``: one
    prediction per (image, anchor, cell), as a network makes it: the values of a cell's first
    candidate (in row order) for every object, one class probability per (cell, class), and the
    highest class probability of a cell the best of its classes' when that is at least 0.6, else
    0.6 for the last class, which no object then has (so both ways a slot part stores it occur).

    Returns:
        (frame with :data:`~cocostat.candidates.COLUMNS` in canonical order, manifest dict).
    """
    rng = np.random.default_rng(seed)
    G = int(objects)
    awh = np.asarray(anchors, dtype=np.float64)  # (A, 2)
    A = awh.shape[0]
    level_of = np.zeros(A, np.int64)
    for lv, m in enumerate(masks):
        level_of[m] = lv
    stride_of = np.asarray(strides, np.float64)[level_of]  # (A,)
    side = np.exp(rng.normal(np.log(30.0), 0.9, G)).clip(2, size)
    aspect = np.exp(rng.normal(-0.15, 0.6, G))
    w = (side * np.sqrt(aspect)).clip(1, size)
    h = (side / np.sqrt(aspect)).clip(1, size)
    cx = rng.uniform(w / 2, size - w / 2)
    cy = rng.uniform(h / 2, size - h / 2)
    gt = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)  # (G, 4)
    n_img = max(1, round(G / per_image))
    image_id = np.sort(rng.integers(1, n_img + 1, G))
    ann_id = np.arange(1, G + 1, dtype=np.int64) * 3 + 100
    cls = rng.integers(0, classes - 1 if shared_slots else classes, G)  # shared: the last class is nobody's
    iscrowd = rng.random(G) < crowd

    r = int(neighborhood)
    offs = np.arange(-r, r + 1)
    dy_, dx_ = np.meshgrid(offs, offs, indexing="ij")
    C = dy_.size
    anc = np.repeat(np.arange(A), C)  # (N,) layout (anchor, dy, dx)
    dy = np.tile(dy_.ravel(), A)
    dx = np.tile(dx_.ravel(), A)
    N = anc.size
    s = stride_of[anc]  # (N,)
    grid_n = size // s  # (N,)
    gx0 = np.minimum(np.floor(cx[:, None] / s), grid_n - 1)  # (G, N)
    gy0 = np.minimum(np.floor(cy[:, None] / s), grid_n - 1)
    gx = gx0 + dx
    gy = gy0 + dy
    valid = (gx >= 0) & (gy >= 0) & (gx < grid_n) & (gy < grid_n)
    # predicted centre: inside the predicting cell, pulled towards the object's centre
    fx = np.clip(cx[:, None] / s - gx + rng.normal(0, 0.15, (G, N)), 0.01, 0.99)
    fy = np.clip(cy[:, None] / s - gy + rng.normal(0, 0.15, (G, N)), 0.01, 0.99)
    pcx, pcy = (gx + fx) * s, (gy + fy) * s
    mis = np.abs(np.log(w[:, None] / awh[anc, 0])) + np.abs(np.log(h[:, None] / awh[anc, 1]))  # (G, N)
    sig = 0.12 + 0.12 * mis
    pw = w[:, None] * np.exp(rng.normal(0, 1, (G, N)) * sig)
    ph = h[:, None] * np.exp(rng.normal(0, 1, (G, N)) * sig)
    pred = np.stack([pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2], axis=-1)  # (G, N, 4)
    lt = np.maximum(pred[..., :2], gt[:, None, :2])
    rb = np.minimum(pred[..., 2:], gt[:, None, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    iou = inter / (pw * ph + (w * h)[:, None] - inter)
    obj = 1 / (1 + np.exp(-(8 * iou - 4 - 1.5 * mis + rng.normal(0, 1.2, (G, N)))))
    cls_prob = rng.beta(2, 2, (G, N))
    max_cls_prob, max_cls_idx = np.maximum(cls_prob, 0.5), np.repeat(cls[:, None], N, 1)
    if shared_slots:
        max_cls_prob, max_cls_idx = _share_slots(valid, image_id, cls, anc, gx, gy, pred, obj, cls_prob, classes)
    pred[~valid] = np.nan
    for x in (obj, cls_prob, max_cls_prob):
        x[~valid] = np.nan
    max_cls_idx[~valid] = -1

    def per_row(x):  # (G,) -> (G * N,)
        return np.repeat(x, N)

    def per_col(x):  # (N,) -> (G * N,)
        return np.tile(x, G)

    frame = pd.DataFrame(
        {
            "ann_id": per_row(ann_id),
            "image_id": per_row(image_id),
            "class_idx": per_row(cls),
            "iscrowd": per_row(iscrowd),
            "gt_x1": per_row(gt[:, 0]),
            "gt_y1": per_row(gt[:, 1]),
            "gt_x2": per_row(gt[:, 2]),
            "gt_y2": per_row(gt[:, 3]),
            "level": per_col(level_of[anc]),
            "anchor": per_col(anc),
            "anchor_w": per_col(awh[anc, 0]),
            "anchor_h": per_col(awh[anc, 1]),
            "stride": per_col(s),
            "dx": per_col(dx),
            "dy": per_col(dy),
            "gx": gx.ravel(),
            "gy": gy.ravel(),
            "valid": valid.ravel(),
            "px1": pred[..., 0].ravel(),
            "py1": pred[..., 1].ravel(),
            "px2": pred[..., 2].ravel(),
            "py2": pred[..., 3].ravel(),
            "obj": obj.ravel(),
            "cls_prob": cls_prob.ravel(),
            "max_cls_prob": max_cls_prob.ravel(),
            "max_cls_idx": max_cls_idx.ravel(),
        }
    ).astype(COLUMNS)
    manifest = {
        "format": "cocostat-predictions",
        "version": 1,
        "cfg": "synthetic",
        "weights": None,
        "weights_sha256": None,
        "size": size,
        "letterbox": {"mode": "letterbox"},
        "anchors": awh.tolist(),
        "levels": [{"mask": list(m), "stride": int(st)} for m, st in zip(masks, strides, strict=True)],
        "num_classes": classes,
        "neighborhood": r,
        "dataset": "synthetic",
        "images": n_img,
        "annotations": G,
    }
    return frame, manifest


def _share_slots(valid, image_id, cls, anc, gx, gy, pred, obj, cls_prob, classes):
    """Make (G, N) ``pred``, ``obj``, ``cls_prob`` one value per (image, anchor, cell) in place (see
    :func:`synthetic_candidates`); return the (G, N) highest class probability and its class."""
    g, n = valid.shape
    side = int(max(gx.max(), gy.max())) + 2
    key = ((image_id[:, None] * n + anc[None, :]) * side + gy + 1) * side + gx + 1  # (G, N), unique per slot
    k = key[valid]
    _, first, inv = np.unique(k, return_index=True, return_inverse=True)
    pred[valid] = pred[valid][first][inv]
    obj[valid] = obj[valid][first][inv]
    cls_v = np.broadcast_to(cls[:, None], (g, n))[valid]
    _, cfirst, cinv = np.unique(k * classes + cls_v, return_index=True, return_inverse=True)
    cls_prob[valid] = cls_prob[valid][cfirst][cinv]
    best = np.full(first.size, -np.inf)
    np.maximum.at(best, inv, cls_prob[valid])
    best_cls = np.zeros(first.size, np.int64)
    is_best = cls_prob[valid] == best[inv]
    best_cls[inv[is_best]] = cls_v[is_best]
    high = best >= 0.6
    max_cls_prob, max_cls_idx = np.full((g, n), np.nan), np.full((g, n), -1, np.int64)
    max_cls_prob[valid] = np.where(high, best, 0.6)[inv]
    max_cls_idx[valid] = np.where(high, best_cls, classes - 1)[inv]  # no object has the last class
    return max_cls_prob, max_cls_idx


def synthetic_dataset(frame: pd.DataFrame, size: int = 416) -> dict:
    """A COCO dict whose annotations are the candidate table's objects (images ``size`` square)."""
    first = frame.groupby("ann_id", sort=False).first().reset_index()
    images = sorted(set(first["image_id"].tolist()))
    return {
        "images": [{"id": int(i), "width": size, "height": size, "file_name": f"{int(i):012d}.jpg"} for i in images],
        "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(80)],
        "annotations": [
            {
                "id": int(r.ann_id),
                "image_id": int(r.image_id),
                "category_id": int(r.class_idx) + 1,
                "bbox": [float(r.gt_x1), float(r.gt_y1), float(r.gt_x2 - r.gt_x1), float(r.gt_y2 - r.gt_y1)],
                "iscrowd": int(r.iscrowd),
            }
            for r in first.itertuples(index=False)
        ],
    }


class InMemoryPredictions:
    """A candidate table and manifest held in memory (what ``cocostat.predict`` hands back)."""

    def __init__(self, candidates: pd.DataFrame, manifest: dict):
        self.candidates = candidates
        self.manifest = manifest


def loop_audit(arrays, wh: np.ndarray, level_of: np.ndarray, iou_t: float = 0.225) -> dict:
    """The baseline: one Python iteration per object (yolov3 assigner, plain IoU, numpy per object)."""
    A = wh.shape[0]
    out = {
        "unmatched": 0,
        "beats_worst": 0,
        "beats_best": 0,
        "from_neighbor": 0,
        "best_when_unmatched": np.zeros(A, np.int64),
        "fm": set(),
    }
    centre = (arrays.dx == 0) & (arrays.dy == 0)
    for g in range(arrays.gt.shape[0]):
        b = arrays.gt[g].astype(np.float64)
        bw, bh = b[2] - b[0], b[3] - b[1]
        inter = np.minimum(bw, wh[:, 0]) * np.minimum(bh, wh[:, 1])
        whiou = inter / (bw * bh + wh[:, 0] * wh[:, 1] - inter)
        matched = whiou > iou_t
        if not matched.any():
            out["unmatched"] += 1
        p = arrays.pred[g].astype(np.float64)
        lt = np.maximum(p[:, :2], b[:2])
        rb = np.minimum(p[:, 2:], b[2:])
        it = np.clip(rb - lt, 0, None).prod(1)
        q = it / ((p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]) + bw * bh - it)
        ok = arrays.valid[g] & np.isfinite(q)
        pos = ok & centre & matched[arrays.anchor]
        unm = ok & centre & ~matched[arrays.anchor]
        if pos.any() and unm.any():
            um = q[unm].max()
            if um > q[pos].min():
                out["beats_worst"] += 1
            if um > q[pos].max():
                out["beats_best"] += 1
                out["best_when_unmatched"][arrays.anchor[unm][np.argmax(q[unm])]] += 1
        for lv in np.unique(level_of):
            on = arrays.level == lv
            if (unm & on).any() and (pos & on).any() and q[unm & on].max() > q[pos & on].min():
                out["fm"].add((int(arrays.image_id[g]), int(lv)))
        if (ok & ~centre).any() and q[ok & ~centre].max() > q[ok & centre].max():
            out["from_neighbor"] += 1
    out["fm"] = len(out["fm"])
    return out


def _best_of(fn, repeat: int) -> tuple[float, object]:
    best, res = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t)
    return best, res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of val2017's 36,335 objects")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many timed runs (cocostat)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--report", type=Path, default=Path("reports/bench_audit.md"))
    args = ap.parse_args(argv)

    import torch

    from cocostat.assign import grid_from_manifest
    from cocostat.atomic import write_text
    from cocostat.audit import anchor_audit, audit_tensors, candidate_tensors
    from cocostat.candidates import to_arrays, write_candidates, write_manifest
    from cocostat.data import from_dict
    from cocostat.mismatch import mismatch, mismatch_tensors

    load = os.getloadavg()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    G = max(1, round(VAL2017_OBJECTS * args.scale))
    t = time.perf_counter()
    frame, manifest = synthetic_candidates(G, neighborhood=1, seed=0)
    arrays = to_arrays(frame)
    grid = grid_from_manifest(manifest)
    print(
        f"generated {G} objects x {arrays.anchor.size} candidates in {time.perf_counter() - t:.1f} s", file=sys.stderr
    )
    image_index = torch.from_numpy(np.unique(arrays.image_id, return_inverse=True)[1].reshape(-1)).to(device)

    def core_audit():
        ct = candidate_tensors(arrays, grid, iou="iou", assigner="yolov3", device=device)
        return audit_tensors(ct, image_index, grid.num_levels, grid.num_anchors)

    def core_mismatch():
        ct = candidate_tensors(arrays, grid, iou="iou", assigner="yolov3", device=device)
        return mismatch_tensors(ct, 1)

    core_audit()  # warm-up (torch kernels, allocator)
    rows = []
    t_core, _ = _best_of(core_audit, args.repeat)
    rows.append(("anchor-audit figures from dense arrays (candidate_tensors + audit_tensors)", t_core))
    t_mm, _ = _best_of(core_mismatch, args.repeat)
    rows.append(("mismatch figures from dense arrays (candidate_tensors + mismatch_tensors)", t_mm))

    ds = from_dict(synthetic_dataset(frame), name="synthetic")
    preds = InMemoryPredictions(frame, manifest)
    t_full, rep = _best_of(lambda: anchor_audit(ds, preds, iou="iou", device=device), args.repeat)
    rows.append(("anchor_audit() from the candidate table in memory (report, per-object frame)", t_full))
    t_fullm, _ = _best_of(lambda: mismatch(ds, preds, neighborhood=1, device=device), args.repeat)
    rows.append(("mismatch() from the candidate table in memory", t_fullm))
    with tempfile.TemporaryDirectory() as tmp:
        write_candidates(frame, Path(tmp) / "candidates.parquet")
        write_manifest({k: v for k, v in manifest.items() if k not in ("format", "version")}, tmp)
        t_disk, rep_disk = _best_of(lambda: anchor_audit(ds, tmp, iou="iou", device=device), args.repeat)
    rows.append(("anchor_audit() reading candidates.parquet from disk", t_disk))

    t = time.perf_counter()
    ref = loop_audit(arrays, grid.wh, grid.level)
    t_loop = time.perf_counter() - t
    rows.append(("baseline: per-object Python loop (numpy per object), same figures", t_loop))

    agree = (
        ref["unmatched"] == rep.unmatched_objects
        and ref["beats_worst"] == rep.objects_unmatched_beats_worst_matched
        and ref["beats_best"] == rep.objects_unmatched_beats_best_matched
        and ref["from_neighbor"] == rep.objects_best_from_neighbor
        and ref["fm"] == rep.feature_maps_unmatched_better
        and (ref["best_when_unmatched"] == rep.per_anchor["best_when_unmatched"].to_numpy()).all()
        and rep_disk.objects_unmatched_beats_best_matched == rep.objects_unmatched_beats_best_matched
    )

    lines = [
        "# Benchmark: anchor-audit and mismatch on a val2017-sized candidate table",
        "",
        (
            f"Synthetic candidates: {G:,} objects x {arrays.anchor.size} candidates "
            f"(9 yolov3 anchors x 3x3 cells), yolov3 assigner (iou_t 0.225), IoU. Device: {device}. "
            f"cocostat times are the best of {args.repeat} runs; the loop runs once."
        ),
        "",
        "| what | seconds | loop / this |",
        "|---|---:|---:|",
    ]
    for name, sec in rows:
        lines.append(f"| {name} | {sec:.3f} | {t_loop / sec:.0f}x |")
    lines += [
        "",
        (
            f"Figures agree between the loop and cocostat: {'yes' if agree else 'NO'} "
            f"(unmatched {rep.unmatched_objects}, unmatched beats worst matched "
            f"{rep.objects_unmatched_beats_worst_matched}, beats best matched "
            f"{rep.objects_unmatched_beats_best_matched}, "
            f"best from a neighbour cell {rep.objects_best_from_neighbor}, feature maps "
            f"{rep.feature_maps_unmatched_better} of {rep.feature_maps})."
        ),
        "",
        (
            f"Machine: {platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{os.cpu_count()} CPU(s), torch threads {torch.get_num_threads()}, load average before the run "
            f"{load[0]:.2f} (other processes share the CPUs when it is high)."
        ),
        "",
        (
            f"Command: `python -m benchmarks.bench_audit --scale {args.scale:g} --repeat {args.repeat} "
            f"--device {args.device}" + (f" --threads {args.threads}" if args.threads else "") + "`"
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.report, text)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
