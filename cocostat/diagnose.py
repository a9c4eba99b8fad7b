"""``cocostat errors``: where detections lose AP (TIDE-style), merged and suppressed objects, hard images.

Matching is COCOeval's at the foreground IoU ``fg`` (default 0.5; :func:`cocostat.evaluate.match_detections`):
the base AP is COCOeval's AP at that IoU (AP50 by default, bit for bit). Each false positive (a kept,
unmatched detection not on a crowd region) gets the first error type that applies, in this order
(after Bolya et al., "TIDE: A General Toolbox for Identifying Object Detection Errors", ECCV 2020;
``bg`` is the background IoU, default 0.1; IoUs are with non-crowd objects of the same image):

1. ``Bkg``  the image has no non-crowd object at all;
2. ``Loc``  the highest IoU with an object of its own class lies in [bg, fg] (target: that object);
3. ``Cls``  the highest IoU with an object of another class is >= fg (target: that object);
4. ``Dupe`` the highest IoU with an already matched object of its own class is >= fg;
5. ``Bkg``  the highest IoU with any object is <= bg;
6. ``Both`` none of the above (a poor box on an object of another class).

``Miss``: a non-crowd object that no detection matched and that no ``Cls`` or ``Loc`` error targets.

The AP gained by fixing one type (``dAP``, in AP points 0-100, as TIDE reports) is
``max(AP_fixed - AP, 0)``, each type fixed on its own (not cumulatively), AP recomputed as above:

- ``Cls`` / ``Loc``: among the errors of both types that target the same unmatched object, the
  highest-scoring one (ties: file order) is *the* candidate for that object; fixing a type turns
  its candidates into true positives of the object's class and removes its other errors;
- ``Dupe``, ``Bkg``, ``Both``: the detections are removed;
- ``Miss``: the objects are removed from the ground truth (fewer positives to find);
- special ``FalsePos``: every false positive removed; ``FalseNeg``: every unmatched object removed.

The mean AP runs over the classes with at least one non-crowd object (COCOeval's rule); a class
whose objects a fix removes counts as AP 0 while it still has detections and leaves the mean when
it has none (TIDE's rule). Differences from TIDE's code: TIDE keeps the 100 best detections per
image, we keep COCOeval's 100 per image and category; ties in score are broken as COCOeval breaks
them; a detection ignored on a crowd region gets no error type (in the tidecv release on PyPI it
can still be counted as an error, though it is left out of the AP).

Other findings (``conf`` is the operating confidence, default 0.25; an object is *found* when its
matched detection has ``score >= conf``; with the greedy score order this equals matching only
the detections at or above ``conf``):

- **merged**: a detection with ``score >= conf`` whose IoU exceeds ``merge_iou`` (default 0.3)
  with two or more non-crowd objects of its class in its image, at most one of them found.
  ``objects lost`` counts the objects of such detections that are not found.
- **suppressed**: a non-crowd object that some raw candidate before NMS (a valid row of the
  candidate table with ``obj * cls_prob >= conf`` and IoU >= ``fg`` with the object, in
  network-input pixels) localised, that is not found, and that no detection with ``score >= conf``
  of its class overlaps with IoU >= ``fg``: NMS removed its only good box. (An object whose good
  box survived NMS but was matched to another object is a merge or matching loss, not this.)
- **hard examples**: images ranked by ``error = sum of scores of false positives + sum over
  non-crowd objects of (1 - score of the matched detection, 0 if unmatched)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import pandas as pd

from cocostat.boxes import matched_iou
from cocostat.data import Dataset
from cocostat.draw import draw_examples
from cocostat.errors import DatasetFormatError, OptionError
from cocostat.evaluate import (
    CHUNK_DETECTIONS,
    PAIR_BLOCK,
    Detections,
    DetectionScores,
    Matching,
    Scores,
    accumulation_order,
    average_precision,
    detection_chunks,
    group_pairs,
    match_chunks,
    pair_blocks,
    targets_per_class,
)
from cocostat.render import json_records


class ErrorType(Enum):
    """TIDE's main error types: short name (as TIDE prints it), name, description."""

    CLS = ("Cls", "classification", "IoU >= fg with an object of another class: right box, wrong class")
    LOC = ("Loc", "localisation", "right class, best IoU with an object of its class between bg and fg")
    BOTH = ("Both", "classification and localisation", "none of the others: a poor box on an object of another class")
    DUPE = ("Dupe", "duplicate", "right class, IoU >= fg with an object a higher-scoring detection matched")
    BKG = ("Bkg", "background", "IoU <= bg with every object, or no object in the image")
    MISS = ("Miss", "missed", "an object no detection matched and no Cls or Loc error would recover")

    def __init__(self, short: str, title: str, description: str):
        self.short = short
        self.title = title
        self.description = description


class SpecialError(Enum):
    """TIDE's special errors: what perfect precision or perfect recall would be worth."""

    FALSE_POS = ("FalsePos", "every false positive removed (perfect precision, same recall)")
    FALSE_NEG = ("FalseNeg", "every unmatched object removed (perfect recall, same precision)")

    def __init__(self, short: str, description: str):
        self.short = short
        self.description = description


_TYPES = list(ErrorType)
_CODE = {t: i for i, t in enumerate(_TYPES)}
#: columns :func:`suppressed_objects` needs in a candidate table.
CANDIDATE_COLUMNS = (
    "ann_id",
    "px1",
    "py1",
    "px2",
    "py2",
    "gt_x1",
    "gt_y1",
    "gt_x2",
    "gt_y2",
    "obj",
    "cls_prob",
    "valid",
)


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------
def _segment_best(n: int, seg: np.ndarray, gt: np.ndarray, val: np.ndarray, mask: np.ndarray):
    """Per segment: the max of ``val`` over the pairs in ``mask`` and the smallest ``gt`` attaining it.

    Returns ``(best, arg)``: (n,) float64 (-inf for an empty segment) and (n,) int64 (-1 there).
    """
    best = np.full(n, -np.inf)
    np.maximum.at(best, seg[mask], val[mask])
    hit = mask & (val == best[seg])
    big = np.iinfo(np.int64).max
    arg = np.full(n, big, np.int64)
    np.minimum.at(arg, seg[hit], gt[hit])
    arg[arg == big] = -1
    return best, arg


def classify_errors(
    dataset: Dataset, detections: Detections, matching: Matching, bg_iou: float = 0.1, pair_block: int = PAIR_BLOCK
):
    """TIDE error type of every false positive, and its target object (see the module docs).

    Returns:
        ``(det_error, det_target, missed)``: (P,) int8 index into ``list(ErrorType)``, -1 for a
        detection that is not a false positive; (P,) int64 annotation index a ``Cls`` / ``Loc``
        error targets, else -1; (G,) bool, the ``Miss`` objects.

    ``pair_block``: (false positive, object) pairs held at once (:func:`~cocostat.evaluate.pair_blocks`;
    the result does not depend on it).
    """
    fg = matching.iou_threshold
    p = len(detections)
    fp_idx = np.flatnonzero(matching.fp)
    f = fp_idx.size
    # pairs (false positive, non-crowd object of its image), in blocks of false positives so that
    # memory is bounded by PAIR_BLOCK pairs (a false positive's figures use its own pairs only);
    # crowd objects get a key no image has
    gt_key = np.where(dataset.iscrowd, -1, dataset.image_index)
    gt_xyxy = dataset.boxes_xyxy()
    used = matching.gt_det >= 0
    err = np.full(f, -1, np.int8)
    target = np.full(f, -1, np.int64)
    for lo, hi, seg, pg in pair_blocks(detections.image_index[fp_idx], gt_key, pair_block):
        # a false positive's type depends on its own pairs only: typed block by block, so that only
        # the block's per-false-positive maxima exist at a time
        n = hi - lo
        if seg.size == 0:
            err[lo:hi] = _CODE[ErrorType.BKG]  # no object in any of these images
            continue
        d = fp_idx[seg]
        seg = seg - lo
        iou = np.asarray(matched_iou(detections.boxes_xyxy(d), gt_xyxy[pg]), dtype=np.float64)
        same = detections.class_idx[d] == dataset.class_idx[pg]
        s_same, a_same = _segment_best(n, seg, pg, iou, same)
        s_other, a_other = _segment_best(n, seg, pg, iou, ~same)
        s_dupe = _segment_best(n, seg, pg, iou, same & used[pg])[0]
        s_all = _segment_best(n, seg, pg, iou, np.ones(seg.shape, bool))[0]
        has_gt = np.bincount(seg, minlength=n) > 0
        rules = (  # the first that applies, in the module docs' order
            (ErrorType.BKG, ~has_gt, None),
            (ErrorType.LOC, (s_same >= bg_iou) & (s_same <= fg), a_same),
            (ErrorType.CLS, s_other >= fg, a_other),
            (ErrorType.DUPE, s_dupe >= fg, None),
            (ErrorType.BKG, s_all <= bg_iou, None),
            (ErrorType.BOTH, np.ones(n, bool), None),
        )
        block_err, block_target = err[lo:hi], target[lo:hi]  # views: assigned in place
        for kind, cond, tgt in rules:
            sel = (block_err < 0) & cond
            block_err[sel] = _CODE[kind]
            if tgt is not None:
                block_target[sel] = tgt[sel]

    det_error = np.full(p, -1, np.int8)
    det_target = np.full(p, -1, np.int64)
    det_error[fp_idx] = err
    det_target[fp_idx] = target
    return det_error, det_target, missed_objects(dataset, matching, det_target)


def missed_objects(dataset: Dataset, matching: Matching, det_target: np.ndarray) -> np.ndarray:
    """(G,) bool: the ``Miss`` objects, non-crowd, unmatched and targeted by no Cls/Loc error
    (``det_target``: (P,) int64 from :func:`classify_errors`)."""
    unmatched = ~dataset.iscrowd & (matching.gt_det < 0)
    usable = np.zeros(dataset.num_annotations, bool)
    t = det_target[det_target >= 0]
    usable[t[unmatched[t]]] = True
    return unmatched & ~usable


def _winners(detections: Scores, det_target: np.ndarray, matching: Matching) -> np.ndarray:
    """(P,) bool: the Cls/Loc error that would become *the* match of its unmatched target object."""
    e = np.flatnonzero(det_target >= 0)
    e = e[matching.gt_det[det_target[e]] < 0]
    out = np.zeros(len(detections), bool)
    if e.size:
        srt = e[np.lexsort((e, -detections.score[e], det_target[e]))]
        t = det_target[srt]
        out[srt[np.r_[True, t[1:] != t[:-1]]]] = True
    return out


def _ap(detections: Scores, cls, keep, tp, ignored, npig, base_classes, order=None) -> float:
    """Mean AP (0-1) over ``base_classes`` of the ``keep`` detections with the given classes and flags.

    A base class left without objects by a fix counts as AP 0 while it still has detections and
    leaves the mean when it has none (TIDE's rule), so removing objects cannot raise the mean by
    dropping a class from it. ``order``: the ``keep`` detections already in accumulation order
    (:func:`~cocostat.evaluate.accumulation_order`), when the caller has it; else they are sorted here.
    """
    if order is None:
        order = accumulation_order(detections, np.flatnonzero(keep), cls)
    ap = average_precision(cls, detections.score, tp, ignored, npig, order)[0]
    has_dets = np.bincount(cls[order], minlength=npig.shape[0]) > 0
    counted = base_classes & ((npig > 0) | has_dets)
    ap = np.where(npig > 0, ap, 0.0)[counted]
    return float(ap.mean()) if ap.size else -1.0


def error_dap(dataset: Dataset, detections: Scores, matching: Matching, det_error, det_target, missed):
    """Base AP and the AP gained by fixing each error type (AP points 0-100; see the module docs).

    Returns:
        ``(ap, main, special)``: float; {ErrorType: dAP}; {SpecialError: dAP}.
    """
    cls0, keep0, tp0, ign = detections.class_idx, matching.kept, matching.tp, matching.ignored
    npig0 = targets_per_class(dataset)
    classes = npig0 > 0
    # the matching's order is the kept detections' accumulation_order; a fix that only removes
    # detections keeps the others' order (a stable filter of it), so only a fix that changes
    # classes sorts again
    base_order = matching.order

    def kept_order(keep: np.ndarray) -> np.ndarray:
        return base_order[keep[base_order]]

    base = _ap(detections, cls0, keep0, tp0, ign, npig0, classes, base_order)
    win = _winners(detections, det_target, matching)
    c = dataset.num_classes

    def gain(ap):
        return 100.0 * max(ap - base, 0.0) if base >= 0 else 0.0

    main: dict[ErrorType, float] = {}
    for kind in _TYPES:
        if kind is ErrorType.MISS:
            npig = npig0 - np.bincount(dataset.class_idx[missed], minlength=c)
            main[kind] = gain(_ap(detections, cls0, keep0, tp0, ign, npig, classes, base_order))
            continue
        e = det_error == _CODE[kind]
        keep = keep0 & ~e
        w = e & win if kind in (ErrorType.CLS, ErrorType.LOC) else None
        if w is None or not w.any():
            main[kind] = gain(_ap(detections, cls0, keep, tp0, ign, npig0, classes, kept_order(keep)))
            continue
        cls, tp = cls0.copy(), tp0.copy()
        keep[w], tp[w] = True, True
        cls[w] = dataset.class_idx[det_target[w]]
        main[kind] = gain(_ap(detections, cls, keep, tp, ign, npig0, classes))
    unmatched = ~dataset.iscrowd & (matching.gt_det < 0)
    no_fp = keep0 & ~matching.fp
    special = {
        SpecialError.FALSE_POS: gain(_ap(detections, cls0, no_fp, tp0, ign, npig0, classes, kept_order(no_fp))),
        SpecialError.FALSE_NEG: gain(
            _ap(
                detections,
                cls0,
                keep0,
                tp0,
                ign,
                npig0 - np.bincount(dataset.class_idx[unmatched], minlength=c),
                classes,
                base_order,
            )
        ),
    }
    # the reported AP is COCOeval's own mean (equal to its AP50 bit for bit); dAP uses ``base``
    ap = average_precision(cls0, detections.score, tp0, ign, npig0, matching.order)[1]
    return 100.0 * ap if ap >= 0 else float("nan"), main, special


def found_objects(dataset: Dataset, detections: Scores, matching: Matching, conf: float) -> np.ndarray:
    """(G,) bool: non-crowd objects whose matched detection has ``score >= conf``."""
    m = matching.gt_det
    ok = m >= 0
    out = np.zeros(dataset.num_annotations, bool)
    out[ok] = detections.score[m[ok]] >= conf
    return out


def merged_detections(
    dataset: Dataset, detections: Detections, matching: Matching, conf: float = 0.25, merge_iou: float = 0.3
) -> pd.DataFrame:
    """Detections that cover two or more objects of their class while at most one of them is found.

    Returns one row per merged detection: ``image_id, file_name, detection`` (index in the results
    file), ``category, score, objects`` (non-crowd objects of its class with IoU > merge_iou),
    ``found`` (of those, found at ``conf``), ``ann_ids`` (those objects' annotation ids).
    """
    cand = np.flatnonzero(matching.kept & (detections.score >= conf))
    c = max(dataset.num_classes, 1)
    gt_key = np.where(dataset.iscrowd, -1, dataset.image_index * c + dataset.class_idx)
    seg, pg = group_pairs(detections.image_index[cand] * c + detections.class_idx[cand], gt_key)
    cols = ["image_id", "file_name", "detection", "category", "score", "objects", "found", "ann_ids"]
    if seg.size == 0:
        return pd.DataFrame({k: [] for k in cols})
    iou = np.asarray(matched_iou(detections.boxes_xyxy(cand[seg]), dataset.boxes_xyxy()[pg]), dtype=np.float64)
    over = iou > merge_iou
    found = found_objects(dataset, detections, matching, conf)
    n_over = np.bincount(seg[over], minlength=cand.size)
    n_found = np.bincount(seg[over & found[pg]], minlength=cand.size)
    hit = (n_over >= 2) & (n_found <= 1)
    det = cand[hit]
    pairs = pd.DataFrame({"d": cand[seg[over]], "ann": dataset.ann_id[pg[over]]})
    pairs = pairs[pairs["d"].isin(det)]
    ann_ids = pairs.groupby("d", sort=True)["ann"].agg(lambda s: [int(v) for v in s])
    names = dataset.categories["name"].to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "image_id": detections.image_id[det],
            "file_name": dataset.file_name[detections.image_index[det]],
            "detection": det,
            "category": names[detections.class_idx[det]],
            "score": detections.score[det],
            "objects": n_over[hit],
            "found": n_found[hit],
            "ann_ids": ann_ids.reindex(det).to_list(),
        }
    )


def covered_objects(
    dataset: Dataset, detections: Detections, matching: Matching, conf: float = 0.25, iou: float = 0.5
) -> np.ndarray:
    """(G,) bool: objects that a kept detection of their class with ``score >= conf`` overlaps with IoU >= ``iou``."""
    cand = np.flatnonzero(matching.kept & (detections.score >= conf))
    c = max(dataset.num_classes, 1)
    seg, pg = group_pairs(
        detections.image_index[cand] * c + detections.class_idx[cand], dataset.image_index * c + dataset.class_idx
    )
    out = np.zeros(dataset.num_annotations, bool)
    if seg.size:
        ious = np.asarray(matched_iou(detections.boxes_xyxy(cand[seg]), dataset.boxes_xyxy()[pg]), np.float64)
        out[pg[ious >= iou]] = True
    return out


def suppressed_objects(
    dataset: Dataset,
    candidates,
    found: np.ndarray,
    conf: float = 0.25,
    iou: float = 0.5,
    covered: np.ndarray | None = None,
) -> pd.DataFrame:
    """Objects a raw prediction localised before NMS but that no detection finds after it.

    Args:
        dataset: the ground truth.
        candidates: a :class:`~cocostat.candidates.Predictions` store (read chunk by chunk; the
            result is the same, as each object's maximum lies in one chunk), or a candidate
            table (see :mod:`cocostat.candidates`), at least the columns
            :data:`CANDIDATE_COLUMNS`: one row per (annotation, anchor, cell); ``px1..py2`` the
            decoded box and ``gt_x1..gt_y2`` the annotation's box, xyxy, network-input pixels;
            ``obj`` objectness, ``cls_prob`` the probability of the annotation's class, ``valid``.
        found: (G,) bool, objects found at the operating confidence (:func:`found_objects`).
        covered: (G,) bool, objects a surviving detection overlaps well (:func:`covered_objects`);
            they are not suppressed. Default: none.
        conf: a candidate counts when ``obj * cls_prob >= conf``.
        iou: and its IoU with the annotation's box is >= ``iou``.

    Returns:
        One row per suppressed object: ``ann_id, image_id, file_name, category, best_conf``
        (highest confidence among its good candidates), ``best_iou`` (highest IoU among them).

    Raises:
        DatasetFormatError: a missing column, or an ``ann_id`` the dataset does not have.
    """
    from cocostat.candidates import ANALYSIS_COLUMNS, Predictions

    order = np.argsort(dataset.ann_id, kind="stable")  # the annotation index, sorted once
    lost = ~dataset.iscrowd & ~found  # (G,) over the dataset's annotations
    if covered is not None:
        lost &= ~covered
    if isinstance(candidates, Predictions):
        parts = [
            _good_candidates(
                dataset,
                c.pred.reshape(-1, 4),
                c.gt,
                c.obj.reshape(-1),
                c.cls_prob.reshape(-1),
                c.valid.reshape(-1),
                conf,
                iou,
                lost,
                c.ann_id,
                order,
                c.pred.shape[1],
            )
            for c in candidates.iter_chunks(columns=ANALYSIS_COLUMNS)
        ]
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"g": [], "conf": [], "iou": []})
        return _suppressed_frame(dataset, frame)
    missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
    if missing:
        raise DatasetFormatError(
            f"candidate table: missing column(s) {', '.join(missing)}; expected the table `cocostat predict` writes"
        )
    frame = _good_candidates(
        dataset,
        candidates[["px1", "py1", "px2", "py2"]].to_numpy(np.float64),
        candidates[["gt_x1", "gt_y1", "gt_x2", "gt_y2"]].to_numpy(np.float64),
        candidates["obj"].to_numpy(np.float64),
        candidates["cls_prob"].to_numpy(np.float64),
        candidates["valid"].to_numpy(bool),
        conf,
        iou,
        lost,
        candidates["ann_id"].to_numpy(np.int64),
        order,
    )
    return _suppressed_frame(dataset, frame)


def _good_candidates(
    dataset: Dataset, pred, gt, obj, cls_prob, valid, conf, iou, lost, ann, order, per_object: int = 1
) -> pd.DataFrame:
    """Rows ``g`` (dataset annotation index), ``conf``, ``iou`` of the good candidates of lost objects.

    pred: (R, 4) xyxy input pixels; obj, cls_prob: (R,); valid: (R,) bool; the candidates of one
    object are ``per_object`` consecutive rows: gt (R / per_object, 4) xyxy input pixels and ann
    (R / per_object,) int64 ann ids, one per object. lost: (A,) bool over the dataset's
    annotations; order: ``argsort(dataset.ann_id)``.

    Cheap tests first: only the rows of lost objects are looked at, and IoU (float64, as for the
    whole table) is computed only for their valid rows with ``score >= conf``: the same rows and
    values as testing every row, in memory of about the lost objects' rows.
    """
    ann = np.asarray(ann, np.int64)
    pos = np.searchsorted(dataset.ann_id[order], ann)
    ok = pos < order.size
    ok[ok] = dataset.ann_id[order][pos[ok]] == ann[ok]
    if not ok.all():
        bad = np.flatnonzero(~ok)
        raise DatasetFormatError(
            f"candidate table: ann_id {int(ann[bad[0]])} is not an annotation of dataset "
            f"{dataset.name} ({bad.size * per_object} row(s) affected); was it written for another "
            f"dataset?"
        )
    gi = order[pos] if ann.size else np.zeros(0, np.int64)  # (R / per_object,)
    objects = np.flatnonzero(lost[gi])  # the lost objects of this block
    rows = (objects[:, None] * per_object + np.arange(per_object)).reshape(-1)  # their rows
    score = np.asarray(obj[rows], np.float64) * np.asarray(cls_prob[rows], np.float64)
    keep = np.asarray(valid[rows], bool) & (score >= conf)
    rows, score = rows[keep], score[keep]
    owner = rows // per_object  # (K,) the object of each row
    ious = (
        np.asarray(matched_iou(np.asarray(pred[rows], np.float64), np.asarray(gt[owner], np.float64)), np.float64)
        if rows.size
        else np.zeros(0)
    )
    good = ious >= iou  # NaN boxes compare False
    return pd.DataFrame({"g": gi[owner[good]], "conf": score[good], "iou": ious[good]})


def _suppressed_frame(dataset: Dataset, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per suppressed object from its good candidates (max over them; order-independent)."""
    agg = frame.groupby("g", sort=True).agg(best_conf=("conf", "max"), best_iou=("iou", "max"))
    g = agg.index.to_numpy(np.int64)
    names = dataset.categories["name"].to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "ann_id": dataset.ann_id[g],
            "image_id": dataset.image_id[dataset.image_index[g]],
            "file_name": dataset.file_name[dataset.image_index[g]],
            "category": names[dataset.class_idx[g]],
            "best_conf": agg["best_conf"].to_numpy(),
            "best_iou": agg["best_iou"].to_numpy(),
        }
    )


def hard_examples(dataset: Dataset, detections: Scores, matching: Matching, top: int = 10) -> pd.DataFrame:
    """The ``top`` images with the highest error (definition in the module docs), highest first.

    Columns: ``image_id, file_name, objects`` (non-crowd), ``detections`` (kept), ``false_positives``
    (sum of their scores), ``missed`` (sum of 1 - matched score), ``error``.
    """
    i = dataset.num_images
    fp = matching.fp
    fp_w = np.bincount(detections.image_index[fp], weights=detections.score[fp], minlength=i)
    nc = ~dataset.iscrowd
    m = matching.gt_det[nc]
    matched_score = np.where(m >= 0, detections.score[np.maximum(m, 0)] if len(detections) else 0.0, 0.0)
    miss_w = np.bincount(dataset.image_index[nc], weights=1.0 - matched_score, minlength=i)
    err = fp_w + miss_w
    rank = np.lexsort((dataset.image_id, -err))
    rank = rank[err[rank] > 0][:top]
    return pd.DataFrame(
        {
            "image_id": dataset.image_id[rank],
            "file_name": dataset.file_name[rank],
            "objects": np.bincount(dataset.image_index[nc], minlength=i)[rank],
            "detections": np.bincount(detections.image_index[matching.kept], minlength=i)[rank],
            "false_positives": fp_w[rank],
            "missed": miss_w[rank],
            "error": err[rank],
        }
    )


@dataclass(frozen=True, eq=False)
class _Matched:
    """What :func:`_matched_chunks` keeps of every detection, and its per-image findings."""

    scores: DetectionScores
    matching: Matching
    det_error: np.ndarray
    det_target: np.ndarray
    merged: pd.DataFrame
    covered: np.ndarray


def _matched_chunks(
    dataset, chunks, iou, max_dets, bg_iou, conf, merge_iou, want_covered, pair_block: int = PAIR_BLOCK
) -> _Matched:
    """Match, type the false positives, and find merged and covered objects one image chunk at a time.

    Every step is per image (matching per (image, category); error types, merges and cover against
    the objects of the detection's own image), so a chunk of whole images gives what the whole set
    gives for its detections; the results go to their positions ``at`` in the whole set. The
    accumulation order, the only figure across images, is computed once at the end.
    """
    g, n = dataset.num_annotations, len(chunks)
    score, image_index, class_idx = np.empty(n), np.empty(n, np.int64), np.empty(n, np.int64)
    kept, ignored, det_gt = np.zeros(n, bool), np.zeros(n, bool), np.full(n, -1, np.int64)
    det_error, det_target = np.full(n, -1, np.int8), np.full(n, -1, np.int64)
    gt_det, covered = np.full(g, -1, np.int64), np.zeros(g, bool)
    merged = []
    for ch in match_chunks(dataset, chunks, iou, max_dets, pair_block=pair_block):
        at, sub, d, m = ch.at, ch.dataset, ch.detections, ch.matching
        err, target, _ = classify_errors(sub, d, m, bg_iou, pair_block)
        score[at], image_index[at], class_idx[at] = d.score, ch.image_index, d.class_idx
        kept[at], ignored[at], det_error[at] = m.kept, m.ignored, err
        det_gt[at], det_target[at] = ch.whole(m.det_gt), ch.whole(target)
        hit = np.flatnonzero(m.gt_det >= 0)
        gt_det[ch.whole(hit)] = at[m.gt_det[hit]]
        frame = merged_detections(sub, d, m, conf, merge_iou)
        frame["detection"] = at[frame["detection"].to_numpy(np.int64)]
        merged.append(frame)
        if want_covered:
            covered[ch.whole(np.flatnonzero(covered_objects(sub, d, m, conf, iou)))] = True
    scores = DetectionScores(score, image_index, class_idx)
    order = accumulation_order(scores, np.flatnonzero(kept), class_idx)
    matching = Matching(float(iou), int(max_dets), kept, det_gt, ignored, gt_det, order)
    frame = pd.concat([f for f in merged if len(f)] or merged[:1], ignore_index=True)  # at least one chunk
    return _Matched(
        scores,
        matching,
        det_error,
        det_target,
        frame.sort_values("detection", kind="stable", ignore_index=True),
        covered,
    )


def _detections_of(chunks, images: np.ndarray) -> tuple[Detections, np.ndarray]:
    """The detections (with boxes) of the dataset images ``images`` ((K,) indices), and their
    positions in the whole set ((M,) int64, ascending), read again from ``chunks``
    (:class:`~cocostat.evaluate.DetectionChunks`)."""
    rows, parts = [], []
    for at, d in chunks:
        sel = np.flatnonzero(np.isin(d.image_index, images))
        rows.append(at[sel])
        parts.append(d.take(sel))
    cat = {
        f: np.concatenate([getattr(d, f) for d in parts])
        for f in ("image_id", "category_id", "score", "image_index", "class_idx")
    }
    bbox = np.concatenate([d.bbox for d in parts]).reshape(-1, 4)
    shown = Detections(
        cat["image_id"], cat["category_id"], bbox, cat["score"], cat["image_index"], cat["class_idx"], parts[0].source
    )
    return shown, np.concatenate(rows)


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ErrorReport:
    """Result of :func:`diagnose`. AP and dAP in AP points (0-100).

    ``det_error`` (P,) int8 is each detection's error type (index into ``list(ErrorType)``, -1 for
    none), ``det_target`` (P,) int64 the object a Cls/Loc error targets, ``missed`` (G,) bool.
    """

    dataset: str
    detections: int
    iou: float
    bg_iou: float
    merge_iou: float
    conf: float
    ap: float
    errors: pd.DataFrame  # type, error, count, dAP, description
    special: pd.DataFrame  # type, dAP, description
    merged: pd.DataFrame
    suppressed: pd.DataFrame | None
    hard: pd.DataFrame
    drawn: tuple[str, ...] = ()
    det_error: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8), repr=False)
    det_target: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    missed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    @property
    def objects_lost_to_merging(self) -> int:
        return int((self.merged["objects"] - self.merged["found"]).sum()) if len(self.merged) else 0

    def to_dict(self) -> dict:
        out = {
            "dataset": self.dataset,
            "detections": self.detections,
            "iou": self.iou,
            "bg_iou": self.bg_iou,
            "merge_iou": self.merge_iou,
            "conf": self.conf,
            "ap": self.ap,
            "errors": json_records(self.errors),
            "special": json_records(self.special),
            "merged": {
                "count": len(self.merged),
                "objects_lost": self.objects_lost_to_merging,
                "images": sorted({int(v) for v in self.merged["image_id"]}),
                "detections": json_records(self.merged),
            },
            "suppressed": None
            if self.suppressed is None
            else {
                "count": len(self.suppressed),
                "images": sorted({int(v) for v in self.suppressed["image_id"]}),
                "objects": json_records(self.suppressed),
            },
            "hard_examples": json_records(self.hard),
            "drawn": list(self.drawn),
        }
        return out

    def to_frame(self) -> pd.DataFrame:
        return pd.concat([self.errors.assign(kind="main"), self.special.assign(kind="special")], ignore_index=True)[
            ["kind", "type", "count", "dAP", "description"]
        ]

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        out: list[tuple[str, pd.DataFrame | str]] = [
            (
                (
                    f"errors of {self.detections} detections on {self.dataset}: AP@{self.iou:g} = {self.ap:.2f} "
                    f"(dAP: AP points gained by fixing each type; background IoU {self.bg_iou:g})"
                ),
                self.errors[["type", "count", "dAP", "description"]],
            ),
            ("special errors", self.special[["type", "dAP", "description"]]),
        ]
        title = (
            f"merged: {len(self.merged)} detection(s) (score >= {self.conf:g}) cover >= 2 objects "
            f"(IoU > {self.merge_iou:g}) with at most one found; {self.objects_lost_to_merging} "
            f"object(s) lost"
        )
        shown = self.merged[["image_id", "file_name", "category", "score", "objects", "found"]]
        out.append((title, shown if len(self.merged) else "none"))
        if self.suppressed is None:
            out.append(("suppressed", "no candidate table (pass --predictions DIR written by `cocostat predict`)"))
        else:
            out.append(
                (
                    (
                        f"suppressed: {len(self.suppressed)} object(s) a candidate localised before NMS "
                        f"(IoU >= {self.iou:g}, conf >= {self.conf:g}) but no detection finds"
                    ),
                    self.suppressed if len(self.suppressed) else "none",
                )
            )
        out.append((f"hard examples (top {len(self.hard)})", self.hard if len(self.hard) else "none"))
        if self.drawn:
            out.append(("drawn", "\n".join(self.drawn)))
        return out


def diagnose(
    dataset: Dataset,
    detections=None,
    *,
    predictions=None,
    candidates: pd.DataFrame | None = None,
    iou: float = 0.5,
    bg_iou: float = 0.1,
    merge_iou: float = 0.3,
    conf: float = 0.25,
    top: int = 10,
    draw: str | os.PathLike | None = None,
    max_dets: int = 100,
    chunk_detections: int = CHUNK_DETECTIONS,
) -> ErrorReport:
    """TIDE-style errors, merged and suppressed objects and hard examples (definitions in the module docs).

    Args:
        dataset: the ground truth.
        detections: a COCO results JSON path, a list of result dicts or :class:`Detections`; default:
            the detections of ``predictions``.
        predictions: a predictions folder written by ``cocostat predict`` (its candidate table gives
            the suppressed objects, its detections are used when ``detections`` is None).
        candidates: a candidate table (DataFrame) to use instead of the folder's.
        iou: foreground IoU (matching, Cls/Loc/Dupe, suppressed candidates). bg_iou: background IoU.
        merge_iou: IoU a merged detection needs with each object. conf: operating confidence.
        top: hard examples to list. draw: folder to draw them into (PNG). max_dets: per (image, class).
        chunk_detections: detections held in memory are matched about this many at a time (whole
            images); a store is matched one detection part at a time. The result does not depend on it.

    Memory: the matching, error typing, merged and covered objects run one chunk of whole images at
    a time (:func:`~cocostat.evaluate.detection_chunks`; all of them are per image); only what the
    AP and the rankings need is kept for every detection (score, image, class, match and error
    flags: about 45 bytes each), never the boxes of a store's detections.

    Raises:
        OptionError: thresholds out of range, or neither detections nor predictions given.
        DatasetFormatError, DatasetNotFoundError: bad detections, predictions folder or images.
    """
    if not 0.0 < iou <= 1.0:
        raise OptionError(f"iou must lie in (0, 1], got {iou}", param="iou")
    if not 0.0 <= bg_iou < iou:
        raise OptionError(
            f"bg_iou must lie in [0, {iou}) (below the foreground IoU threshold), got {bg_iou}", param="bg_iou"
        )
    if not 0.0 <= merge_iou < 1.0:
        raise OptionError(f"merge_iou must lie in [0, 1), got {merge_iou}", param="merge_iou")
    if not 0.0 <= conf <= 1.0:
        raise OptionError(f"conf must lie in [0, 1], got {conf}", param="conf")
    if top < 0:
        raise OptionError(f"top must be >= 0, got {top}", param="top")
    if max_dets < 1:
        raise OptionError(f"max_dets must be >= 1, got {max_dets}")
    pred = None
    if predictions is not None:
        from cocostat.candidates import Predictions, read_predictions

        pred = predictions if isinstance(predictions, Predictions) else read_predictions(predictions)
        if detections is None:
            if not pred.has_detections:
                raise DatasetFormatError(f"{pred.folder}: no detections; pass --detections FILE")
            # formats 2 and 3: read as columns, no dict per detection; format 1: its JSON files, which
            # load_detections names when one is broken
            detections = pred if pred.version >= 2 else tuple(pred.detection_files)
    if detections is None:
        raise OptionError("give the detections: --detections FILE (COCO results JSON) or --predictions DIR")
    want_covered = candidates is not None or pred is not None
    chunks = detection_chunks(detections, dataset, chunk_detections)
    res = _matched_chunks(dataset, chunks, iou, max_dets, bg_iou, conf, merge_iou, want_covered)
    dets, m, det_error, det_target = res.scores, res.matching, res.det_error, res.det_target
    missed = missed_objects(dataset, m, det_target)
    ap, main, special = error_dap(dataset, dets, m, det_error, det_target, missed)
    counts = np.bincount(det_error[det_error >= 0], minlength=len(_TYPES))
    counts[_CODE[ErrorType.MISS]] = int(missed.sum())
    errors = pd.DataFrame(
        {
            "type": [t.short for t in _TYPES],
            "error": [t.title for t in _TYPES],
            "count": counts.astype(np.int64),
            "dAP": [main[t] for t in _TYPES],
            "description": [t.description for t in _TYPES],
        }
    )
    special_frame = pd.DataFrame(
        {
            "type": [s.short for s in SpecialError],
            "count": [int(m.fp.sum()), int((~dataset.iscrowd & (m.gt_det < 0)).sum())],
            "dAP": [special[s] for s in SpecialError],
            "description": [s.description for s in SpecialError],
        }
    )
    found = found_objects(dataset, dets, m, conf)
    hard = hard_examples(dataset, dets, m, top)
    drawn: tuple[str, ...] = ()
    if draw is not None:
        images = np.searchsorted(dataset.image_id, hard["image_id"].to_numpy(np.int64))
        shown, rows = _detections_of(chunks, images)
        drawn = tuple(
            str(p) for p in draw_examples(dataset, shown, m.take(rows), found, hard["image_id"].to_numpy(), draw, conf)
        )
    merged, covered = res.merged, res.covered
    del res, dets, m  # the per-detection arrays the report does not keep go before the candidates are read
    suppressed = None
    if candidates is not None:
        suppressed = suppressed_objects(dataset, candidates, found, conf, iou, covered)
    elif pred is not None:  # the store, chunk by chunk
        suppressed = suppressed_objects(dataset, pred, found, conf, iou, covered)
    return ErrorReport(
        dataset=dataset.name,
        detections=len(chunks),
        iou=float(iou),
        bg_iou=float(bg_iou),
        merge_iou=float(merge_iou),
        conf=float(conf),
        ap=ap,
        errors=errors,
        special=special_frame,
        merged=merged,
        suppressed=suppressed,
        hard=hard,
        drawn=drawn,
        det_error=det_error,
        det_target=det_target,
        missed=missed,
    )
