"""``cocostat anchor-audit``: do the anchors a label assigner picks predict each object best?

A YOLO label assigner (:mod:`cocostat.assign`) decides from box sizes alone which anchors must
predict each object. On a trained model's raw predictions (a candidate table, see
:mod:`cocostat.candidates`) this audit measures whether those anchors are the ones that predict it
best. Crowd annotations are left out (counted in a warning).

Terms (every IoU is the chosen ``--iou`` variant between a decoded prediction and the object,
both in network-input pixels; ties go to the first candidate in the table's (anchor, dy, dx) order):

- *matched predictions* of an object: the assigner's positives, i.e. each matched anchor's
  prediction at the object's centre cell, and for ``yolov5`` also at its horizontal and vertical
  neighbour cells (where those lie inside the grid and are in the table).
- *unmatched predictions*: the prediction of every anchor (all levels) that is not matched, at the
  centre cell.
- *neighbourhood*: every stored cell of every anchor ((2n+1)^2 cells per anchor, n the radius the
  predictions were extracted with), cells outside the grid left out.

Figures: every figure's JSON key, table label and exact definition is in
:data:`cocostat.figures.FIGURES` (analysis ``anchor-audit``; the docs' Figures page is generated from
it), and the tables here take their labels from there.

Without predictions only ``objects``, ``images``, ``feature_maps``, ``unmatched_objects`` and
per anchor ``matched`` and ``match_wh_iou`` are computed; object boxes are then letterboxed to
``--size`` as ``cocostat predict`` does (scale ``size / max(w, h)`` of the image, resized side
rounded to whole pixels, centred with integer padding) and the other figures are null.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from cocostat import assigners
from cocostat.anchors import parse_anchor_spec
from cocostat.assign import (
    AnchorGrid,
    Assigner,
    Assignment,
    assign,
    grid_from_anchor_set,
    grid_from_manifest,
    in_positives,
)
from cocostat.assigners import Slots, candidate_slots, matched_anchors
from cocostat.assigners._protocol import GIVE_PREDICTIONS, centre_cells
from cocostat.atomic import FrameWriter
from cocostat.boxes import IouKind, cpu_threads, iou_kind, matched_iou, valid_predictions
from cocostat.candidates import (
    ANALYSIS_COLUMNS,
    CHUNK_OBJECTS,
    CandidateArrays,
    Predictions,
    candidate_order,
    concat_arrays,
    empty_arrays,
    in_memory,
    make_layout,
    read_ahead,
    read_predictions,
    to_arrays,
)
from cocostat.data import Dataset
from cocostat.errors import CocostatWarning, OptionError
from cocostat.figures import figures, labels, needs_predictions, overview_rows
from cocostat.render import json_records
from cocostat.sources import check_frame_path, write_frame

DEFAULT_ANCHORS = "yolov3-spp"
DEFAULT_SIZE = 416

#: the analysis' name in :mod:`cocostat.figures` (every figure's key, table label and definition).
FIGURES = "anchor-audit"

#: figures that need predictions (null without them): ``NAME`` and ``per_anchor.NAME``.
NEEDS_PREDICTIONS = needs_predictions(FIGURES)
#: the overview figures, and the per-anchor columns, that need predictions.
_PRED_FIGURES = tuple(f.name for f in figures(FIGURES, "") if f.needs_predictions)
_PRED_COLUMNS = tuple(f.name for f in figures(FIGURES, "per_anchor[]") if f.needs_predictions)


# --------------------------------------------------------------------------------------------------
# Inputs: objects, anchors and (optionally) candidate predictions
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AuditInputs:
    """What the audits work on (G non-crowd objects).

    Attributes:
        grid: anchors, levels, strides, input size.
        boxes: (G, 4) float64, xyxy, network-input pixels.
        ann_id, image_id, class_idx: (G,) int64.
        file_name: image_id -> file name (from the dataset; may be empty).
        candidates: the dense candidate arrays (G objects, crowd left out), or None (boxes only).
        neighborhood: radius n of the stored neighbourhood, or None without candidates.
        source: where predictions came from (``predictions DIR``, ``model CFG``) or ``boxes only``.
    """

    grid: AnchorGrid
    boxes: np.ndarray
    ann_id: np.ndarray
    image_id: np.ndarray
    class_idx: np.ndarray
    file_name: dict
    candidates: CandidateArrays | None
    neighborhood: int | None
    source: str

    @property
    def has_predictions(self) -> bool:
        return self.candidates is not None

    def need_candidates(self, needed_by: str) -> CandidateArrays:
        """:attr:`candidates`; an :class:`OptionError` naming ``needed_by`` when there are none (boxes only)."""
        if self.candidates is None:
            raise OptionError(f"{needed_by} needs predictions: {GIVE_PREDICTIONS}")
        return self.candidates

    def object_columns(self) -> dict[str, np.ndarray]:
        """The leading columns of every per-object table: ids, class and the xyxy box (network pixels)."""
        x1, y1, x2, y2 = self.boxes.T
        return {
            "ann_id": self.ann_id,
            "image_id": self.image_id,
            "class_idx": self.class_idx,
            "x1": x1,
            "y1": y1,
            "x2": x2,
            "y2": y2,
        }


def letterbox_boxes(dataset: Dataset, size: int) -> np.ndarray:
    """Annotation boxes in network-input pixels, letterboxed as ``cocostat predict`` does.

    Each image is scaled by ``s = size / max(w, h)`` to ``round(w s) x round(h s)`` pixels and
    centred with padding ``((size - new_w) // 2, (size - new_h) // 2)``
    (:class:`cocostat.models.Letterbox`), so boxes-only matching equals the matching on a
    predictions table.

    Returns:
        (G, 4) float64, xyxy, input pixels.
    """
    from cocostat.models import Letterbox

    params = Letterbox(int(size)).params(dataset.width, dataset.height)
    return params.to_input(dataset.boxes_xyxy(), dataset.image_index)


def _resolve_predictions(predictions) -> tuple[Predictions, str]:
    """A :class:`Predictions` store and a source label for what the user handed in."""
    if isinstance(predictions, (str, Path)):
        predictions = read_predictions(predictions)
    if isinstance(predictions, Predictions):
        label = (
            f"predictions {predictions.folder}"
            if predictions.folder is not None
            else f"model {predictions.manifest.get('cfg', '?')}"
        )
        return predictions, label
    store = getattr(predictions, "predictions", None)  # a PredictResult
    if isinstance(store, Predictions):
        return store, (
            f"predictions {store.folder}" if store.folder is not None else f"model {store.manifest.get('cfg', '?')}"
        )
    frame = getattr(predictions, "candidates", None)
    manifest = getattr(predictions, "manifest", None)
    if not isinstance(frame, pd.DataFrame) or not isinstance(manifest, dict):
        raise OptionError(
            f"predictions must be a folder, a Predictions or an object with .candidates (DataFrame) "
            f"and .manifest (dict), got {type(predictions).__name__}"
        )
    frame = candidate_order(frame)
    arrays = to_arrays(frame) if len(frame) else None
    store = in_memory(manifest, [arrays] if arrays is not None else [], [])
    return store, f"model {manifest.get('cfg', '?')}"


@dataclass(frozen=True, eq=False)
class AuditSource:
    """Where an audit's objects and predictions come from, read in image-aligned chunks.

    Attributes:
        grid: anchors, levels, strides, input size (``--anchors`` applied).
        source: ``predictions DIR``, ``model CFG`` or ``boxes only``.
        file_name: image_id -> file name (from the dataset; may be empty).
        neighborhood: radius n of the stored neighbourhood, or None without predictions.
        predictions: the store, or None (boxes only).
        dataset: the dataset (checked against the predictions chunk by chunk), or None.
    """

    grid: AnchorGrid
    source: str
    file_name: dict
    neighborhood: int | None
    predictions: Predictions | None = None
    dataset: Dataset | None = None
    boxes_only: AuditInputs | None = None
    manifest: dict = field(default_factory=dict)

    def chunks(
        self, max_objects: int | None = CHUNK_OBJECTS, columns: Iterable[str] | None = ANALYSIS_COLUMNS
    ) -> Iterator[AuditInputs]:
        """:class:`AuditInputs` of whole images, about ``max_objects`` non-crowd objects each.

        ``columns``: the per-candidate columns decoded (see :meth:`Predictions.iter_chunks`; default
        those the analyses use, None: all).

        Warns (after the last chunk): crowd annotations left out, dataset annotations without
        candidates. Raises OptionError for annotation ids the dataset does not have.
        """
        if self.predictions is None:
            if self.boxes_only is None:
                raise OptionError("an audit needs a dataset or predictions")
            yield self.boxes_only
            return
        ds = self.dataset
        ann_sorted = np.sort(ds.ann_id) if ds is not None else None
        seen = crowd = 0
        first = True
        layout_checked = False
        for block in self.predictions.iter_chunks(max_objects, columns=columns):
            if ds is not None and ann_sorted is not None and len(block):
                pos = np.searchsorted(ann_sorted, block.ann_id).clip(max=max(ann_sorted.size - 1, 0))
                unknown = ann_sorted[pos] != block.ann_id if ann_sorted.size else np.ones(len(block), bool)
                if unknown.all() and first:
                    made_on = self.manifest.get("dataset")
                    if isinstance(made_on, dict):
                        made_on = made_on.get("annotations") or made_on.get("name")
                    raise OptionError(
                        f"{self.source} was made on dataset {made_on!r}: none of its annotation ids "
                        f"is in {ds.name}; give the dataset the predictions were made on as DATASET"
                    )
                if unknown.any():
                    raise OptionError(
                        f"{self.source}: {int(unknown.sum())} annotation id(s) (e.g. "
                        f"{int(block.ann_id[unknown][0])}) are not in {ds.name}"
                    )
            first = False
            seen += len(block)
            if not layout_checked and len(block):
                _check_layout(block, self.grid, self.source)
                layout_checked = True
            if block.iscrowd.any():
                crowd += int(block.iscrowd.sum())
                block = block.select(~block.iscrowd)
            yield AuditInputs(
                self.grid,
                block.gt.astype(np.float64),
                block.ann_id,
                block.image_id,
                block.class_idx,
                self.file_name,
                block,
                self.neighborhood,
                self.source,
            )
        if ds is not None and ds.num_annotations - seen > 0:
            warnings.warn(
                f"{ds.num_annotations - seen} annotation(s) of {ds.name} have no candidate predictions "
                f"and are left out",
                CocostatWarning,
                stacklevel=3,
            )
        if crowd:
            warnings.warn(f"{self.source}: {crowd} crowd annotation(s) left out", CocostatWarning, stacklevel=3)


def open_inputs(dataset: Dataset | None, predictions=None, *, anchors=None, size: int | None = None) -> AuditSource:
    """Check an audit's options and open its inputs for chunked reading (arguments as :func:`load_inputs`).

    Nothing but the manifest is read here; :meth:`AuditSource.chunks` reads the candidates.
    """
    if predictions is None:
        if dataset is None:
            raise OptionError("an audit needs a dataset or predictions")
        size = DEFAULT_SIZE if size is None else int(size)
        aset = anchors if hasattr(anchors, "wh") else parse_anchor_spec(DEFAULT_ANCHORS if anchors is None else anchors)
        grid = grid_from_anchor_set(aset, size)
        crowd = int(dataset.iscrowd.sum())
        if crowd:
            warnings.warn(f"{dataset.name}: {crowd} crowd annotation(s) left out", CocostatWarning, stacklevel=3)
        ds = dataset.without_crowd()
        files = dict(zip(ds.image_id.tolist(), ds.file_name.tolist(), strict=False))
        inp = AuditInputs(
            grid,
            letterbox_boxes(ds, size),
            ds.ann_id.copy(),
            ds.ann_image_id,
            ds.class_idx.copy(),
            files,
            None,
            None,
            "boxes only",
        )
        return AuditSource(grid, "boxes only", files, None, boxes_only=inp)

    store, source = _resolve_predictions(predictions)
    manifest = store.manifest
    grid = grid_from_manifest(manifest, name=f"{manifest.get('cfg') or 'predictions'} anchors")
    if size is not None and int(size) != grid.size:
        raise OptionError(
            f"--size {size} differs from the predictions' input size {grid.size}; "
            f"leave --size out or predict again at that size"
        )
    if anchors is not None:
        aset = parse_anchor_spec(anchors) if not hasattr(anchors, "wh") else anchors
        given = grid_from_anchor_set(
            aset, grid.size, strides=grid.strides.tolist() if len(aset.levels) == grid.num_levels else None
        )
        if (
            given.num_levels != grid.num_levels
            or (
                np.bincount(given.level, minlength=grid.num_levels)
                != np.bincount(grid.level, minlength=grid.num_levels)
            ).any()
        ):
            raise OptionError(
                f"--anchors {aset.name} has {given.num_levels} level(s) with "
                f"{np.bincount(given.level).tolist()} anchors, the predictions' model has "
                f"{np.bincount(grid.level).tolist()}; give anchors with the model's layout"
            )
        # the k-th anchor of each level takes the place of the model's k-th anchor of that level
        wh = grid.wh.copy()
        for lv in range(grid.num_levels):
            wh[np.flatnonzero(grid.level == lv)] = given.wh[np.flatnonzero(given.level == lv)]
        grid = AnchorGrid(str(aset.name), wh, grid.level, grid.strides, grid.size)
    file_name = (
        dict(zip(dataset.image_id.tolist(), dataset.file_name.tolist(), strict=False)) if dataset is not None else {}
    )
    layout = store.layout
    radius = int(max(np.abs(layout.dx).max(initial=0), np.abs(layout.dy).max(initial=0)))
    return AuditSource(grid, source, file_name, radius, store, dataset, manifest=manifest)


def load_inputs(dataset: Dataset | None, predictions=None, *, anchors=None, size: int | None = None) -> AuditInputs:
    """Gather the objects, anchors and candidate predictions an audit needs, all in memory.

    The audits themselves read chunk by chunk (:func:`open_inputs`); this whole-table form is for
    notebooks and tests.

    Args:
        dataset: the COCO dataset (crowd annotations are left out). With ``predictions`` it names
            the images and is checked against the candidate table; it may then be None.
        predictions: a predictions folder path, a :class:`~cocostat.candidates.Predictions`, a
            :class:`~cocostat.predict.PredictResult`, or an object with ``.candidates`` (DataFrame)
            and ``.manifest`` (dict); None for boxes only.
        anchors: an anchor spec (preset, cfg path or ``"w,h, w,h, ..."``) or an ``AnchorSet``.
            With predictions it replaces the sizes the assigner matches by and must have the
            manifest's layout (same number of anchors per level); without, it defaults to yolov3-spp.
        size: network input size; with predictions it must equal the manifest's (default: the
            manifest's, else 416).

    Raises:
        OptionError: inconsistent options, or predictions made on another dataset.
    """
    src = open_inputs(dataset, predictions, anchors=anchors, size=size)
    parts = list(src.chunks(None, columns=None))
    if src.predictions is None:
        return parts[0]
    blocks = [p.candidates for p in parts if p.candidates is not None and len(p.candidates)]
    arrays = concat_arrays(blocks) if blocks else _empty_arrays(src.grid, src.neighborhood or 0)
    return AuditInputs(
        src.grid,
        arrays.gt.astype(np.float64),
        arrays.ann_id,
        arrays.image_id,
        arrays.class_idx,
        src.file_name,
        arrays,
        src.neighborhood,
        src.source,
    )


def _empty_arrays(grid: AnchorGrid, radius: int) -> CandidateArrays:
    """Candidate arrays for zero objects with the layout (anchor, dy, dx) a table would have."""
    masks = [np.flatnonzero(grid.level == lv).tolist() for lv in range(grid.num_levels)]
    return empty_arrays(make_layout(grid.wh, masks, grid.strides.tolist(), grid.size, radius))


def _check_layout(arrays: CandidateArrays, grid: AnchorGrid, where: str) -> None:
    """Every anchor of the grid must have exactly one centre-cell column in the table."""
    if arrays.ann_id.size == 0:
        return
    centre = (arrays.dx == 0) & (arrays.dy == 0)
    counts = np.bincount(arrays.anchor[centre], minlength=grid.num_anchors)
    if counts.shape[0] != grid.num_anchors or (counts != 1).any():
        raise OptionError(
            f"{where}: expected one centre-cell candidate per anchor for {grid.num_anchors} anchors, "
            f"got counts {counts.tolist()}"
        )
    if (grid.level[arrays.anchor] != arrays.level).any():
        raise OptionError(f"{where}: the candidate table's anchor levels disagree with the manifest's masks")


# --------------------------------------------------------------------------------------------------
# Candidate tensors shared with cocostat.mismatch
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CandidateTensors:
    """Candidate arrays on a device, scored with the chosen IoU, with the assigner's positives.

    IoU is computed in float32, the precision of the stored predictions. Attributes (G objects,
    N candidates per object, A anchors, S columns that can hold a positive):

        gt: (G, 4) float32, xyxy, input px. pred: (G, N, 4) float32, xyxy, input px.
        q: (G, N) float32, IoU of each candidate with its object; -inf where not ``valid``.
        valid: (G, N) bool, the cell is inside the grid and the prediction is valid (finite box,
            objectness and class probability: :func:`cocostat.boxes.valid_predictions`).
        obj, cls_prob: (G, N) float32. anchor, level, dx, dy: (N,) int64. stride: (N,) float32.
        cidx: (A,) int64, the centre-cell column of each anchor.
        pcols: (S,) int64, the centre cells and every other column holding a positive of some
            object (for yolov5 edge-neighbour cells). pos: (G, S) bool, ``pos[g, s]``:
            column ``pcols[s]`` is one of object g's matched predictions (and valid).
        unm: (G, A) bool, anchor a is not matched to object g (and its centre cell is valid).
        assignment: the :class:`~cocostat.assign.Assignment`.
    """

    gt: Tensor
    pred: Tensor
    q: Tensor
    valid: Tensor
    obj: Tensor
    cls_prob: Tensor
    anchor: Tensor
    level: Tensor
    dx: Tensor
    dy: Tensor
    stride: Tensor
    cidx: Tensor
    pcols: Tensor
    pos: Tensor
    unm: Tensor
    assignment: Assignment


#: objects per slice of :func:`sliced_matched_iou` (a slice's (S, N) float32 intermediates stay in cache).
_IOU_SLICE = 2048


def sliced_matched_iou(pred: Tensor, gt: Tensor, iou: IouKind) -> Tensor:
    """(G, N) float32: :func:`cocostat.boxes.matched_iou` of ``pred`` (G, N, 4) and ``gt`` (G, 4)
    broadcast over the N candidates, the same values computed in a faster order on the CPU.

    The kernel runs on slices of :data:`_IOU_SLICE` objects, each copied coordinate-planar first
    (``pred[..., k]`` contiguous, so every elementwise op is a vectorised pass over memory that
    stays in cache): about twice as fast as one call on the interleaved (G, N, 4) block (measured on a
    50,000-object chunk, one thread). IoU, GIoU and DIoU are elementwise IEEE arithmetic, so every
    value is bit for bit the same; CIoU's ``atan2`` differs in the last bits between torch's
    vectorised and scalar paths, so CIoU (and other devices) get the one call as before.
    """
    if pred.device.type != "cpu" or iou == "ciou":
        return matched_iou(pred, gt[:, None, :], iou)
    if pred.shape[0] <= _IOU_SLICE:
        return matched_iou(pred.permute(2, 0, 1).contiguous().permute(1, 2, 0), gt[:, None, :], iou)
    out = torch.empty(pred.shape[:2], dtype=pred.dtype)
    for lo in range(0, pred.shape[0], _IOU_SLICE):
        hi = lo + _IOU_SLICE
        planar = pred[lo:hi].permute(2, 0, 1).contiguous().permute(1, 2, 0)  # (S, N, 4) view of (4, S, N)
        out[lo:hi] = matched_iou(planar, gt[lo:hi, None, :], iou)
    return out


def candidate_tensors(
    arrays: CandidateArrays,
    grid: AnchorGrid,
    *,
    iou: str = "iou",
    assigner="yolov3",
    iou_t: float = 0.225,
    ratio_t: float = 4.0,
    device=None,
) -> CandidateTensors:
    """Move candidate arrays to ``device`` (default CPU), score them and run the assigner."""
    kind_of_iou = iou_kind(iou, "iou")
    dev = torch.device(device) if device is not None else torch.device("cpu")

    def t(a: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
        a = np.ascontiguousarray(a)
        if not a.flags.writeable:  # views of pandas columns are read-only; torch wants its own copy
            a = a.copy()
        return torch.from_numpy(a).to(device=dev, dtype=dtype)

    gt = t(arrays.gt)  # (G, 4)
    pred = t(arrays.pred)  # (G, N, 4)
    q = sliced_matched_iou(pred, gt, kind_of_iou)  # (G, N)
    valid = t(arrays.valid, torch.bool) & valid_predictions(pred, t(arrays.obj), t(arrays.cls_prob))  # (G, N)
    q = q.masked_fill_(~valid, -math.inf)
    anchor, level = t(arrays.anchor, torch.int64), t(arrays.level, torch.int64)
    dx, dy = t(arrays.dx, torch.int64), t(arrays.dy, torch.int64)
    A = grid.num_anchors
    centre = (dx == 0) & (dy == 0)  # (N,)
    cidx = torch.zeros(A, dtype=torch.int64, device=dev)
    cidx[anchor[centre]] = torch.nonzero(centre).reshape(-1)  # (A,)
    image = torch.from_numpy(dense_image_index(arrays.image_id)[1]).to(dev)  # (G,)
    kind = assigners.create(assigner, iou_t=iou_t, ratio_t=ratio_t)
    if kind.needs_predictions:  # positives among the stored slots, matched anchors from them
        slots = candidate_slots(gt.double(), grid, arrays, image, iou=kind_of_iou, q=q)
        pos_all = kind.positives(slots)  # (G, N)
        asg = Assignment(
            kind,
            slots.boxes,
            matched_anchors(slots, pos_all),
            slots.wh_iou_per_anchor,
            centre_cells(slots.boxes, grid),
            slots,
            pos_all,
        )
    else:  # over the whole grid, then the stored slots among its positives
        asg = assign(gt.double(), grid, kind, image=image)
        stored = Slots(
            grid,
            asg.boxes,
            image,
            anchor,
            level,
            dx,
            dy,
            t(arrays.gx, torch.int64),
            t(arrays.gy, torch.int64),
            t(arrays.valid, torch.bool),
        )
        pos_all = stored_positives(asg, stored)  # (G, N)
    pcols = torch.nonzero(pos_all.any(0) | centre).reshape(-1)  # (S,), centre cells and any positive
    pos = pos_all[:, pcols] & valid[:, pcols]  # (G, S)
    unm = ~asg.matched & valid[:, cidx]  # (G, A)
    return CandidateTensors(
        gt,
        pred,
        q,
        valid,
        t(arrays.obj),
        t(arrays.cls_prob),
        anchor,
        level,
        dx,
        dy,
        t(arrays.stride),
        cidx,
        pcols,
        pos,
        unm,
        asg,
    )


def stored_positives(asg: Assignment, stored: Slots) -> Tensor:
    """(G, N) bool: which stored candidate columns are positives of a whole-grid assignment.

    The answer of :func:`cocostat.assign.in_positives` (slots equal by flat slot index), found
    column by column when the stored cells are the assigner's own (every stored ``gx, gy`` is the
    object's centre cell at the column's level plus its ``dx, dy``, ``inside`` is exactly "in the
    grid", and no (anchor, dx, dy) is stored twice): then grid slot j and the stored column with
    its (anchor, dx, dy) are the same slot, no other stored column can be, and a grid slot whose
    (anchor, dx, dy) is not stored (beyond the stored neighbourhood) matches none. That is a
    gather instead of a sort and a binary search over all G x N slots; any other layout (a
    version-1 table with other cells) takes ``in_positives``.
    """
    s, dev = asg.slots, stored.device
    st_a, st_x, st_y = (v.cpu().numpy() for v in (stored.anchor, stored.dx, stored.dy))  # (N,) each
    g_a, g_x, g_y = (v.cpu().numpy() for v in (s.anchor, s.dx, s.dy))  # (N_r,) each
    span = int(np.abs(np.concatenate([st_x, st_y, g_x, g_y])).max(initial=0)) + 1
    side = 2 * span + 1
    st_code = (st_a * side + st_y + span) * side + st_x + span  # (N,) one number per (anchor, dx, dy)
    g_code = (g_a * side + g_y + span) * side + g_x + span  # (N_r,)
    order = np.argsort(st_code, kind="stable")
    at = np.searchsorted(st_code[order], g_code).clip(max=max(st_code.size - 1, 0))
    found = st_code[order][at] == g_code  # (N_r,) the grid slot column is stored
    fits = st_code.size > 0 and np.unique(st_code).size == st_code.size
    if fits:
        cell = asg.cell  # (G, L, 2) the assigner's centre cells
        gx = cell[:, stored.level, 0] + stored.dx[None, :]  # (G, N)
        gy = cell[:, stored.level, 1] + stored.dy[None, :]
        cells = torch.as_tensor(stored.grid.grid, device=dev)[stored.level][None, :]  # (1, N) grid side
        inside = (gx >= 0) & (gy >= 0) & (gx < cells) & (gy < cells)
        fits = bool((gx == stored.gx).all() and (gy == stored.gy).all() and (inside == stored.inside).all())
    if not fits:
        return in_positives(s, asg.positives, stored)
    col = torch.as_tensor(order[at][found], device=dev)  # stored column of each stored grid slot column
    out = torch.zeros(stored.gx.shape, dtype=torch.bool, device=dev)
    out[:, col] = asg.positives[:, torch.as_tensor(np.flatnonzero(found), device=dev)] & stored.inside[:, col]
    return out


def masked_max(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Row-wise max and argmax over the masked columns: the per-object reducer of candidate tensors.

    Args:
        x: (G, M) float, one value per object and candidate column (IoU, objectness, score).
        mask: (G, M) bool, the columns that count (a valid candidate, a matched prediction).

    Returns:
        (G,) float max and (G,) int64 argmax (a column index of ``x``; the first of equal maxima);
        -inf and 0 where a row has no masked column.
    """
    return x.masked_fill(~mask, -math.inf).max(dim=1)


def masked_min(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Row-wise min and argmin over the masked columns, as :func:`masked_max`; +inf and 0 where a row is empty."""
    return x.masked_fill(~mask, math.inf).min(dim=1)


# --------------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------------
def audit_tensors(ct: CandidateTensors, image_index: Tensor, num_levels: int, num_anchors: int) -> dict:
    """Every prediction-based audit figure, vectorised over objects (see the module docstring).

    Args:
        ct: from :func:`candidate_tensors`.
        image_index: (G,) int64, a dense image index per object (on ct's device).
        num_levels, num_anchors: L and A of the grid.

    Returns:
        A dict of CPU numpy arrays and ints: per object (G,) ``m_min``, ``m_max``, ``u_max``
        (+-inf where empty), ``n_pos``, ``u_anchor``, ``w_anchor`` (-1 where none), ``best_iou``,
        ``best_anchor``, ``best_dx``, ``best_dy``, ``from_neighbor``, ``beats_worst``,
        ``beats_best`` (bool); per anchor (A,) ``pred_iou_matched``, ``pred_iou_all`` (NaN where
        empty), ``best_when_unmatched``, ``worst_matched``; and ``feature_maps_unmatched_better``
        (int, plus ``fm_pairs`` (F, 2): image index and level of each such feature map).
    """
    q, pos, unm, anchor = ct.q, ct.pos, ct.unm, ct.anchor
    A = num_anchors
    qp = q[:, ct.pcols]  # (G, S), matched-candidate columns
    qc = q[:, ct.cidx]  # (G, A), centre cells
    p_anchor = anchor[ct.pcols]  # (S,)
    m_min, m_arg = masked_min(qp, pos)  # (G,)
    m_max, _ = masked_max(qp, pos)  # (G,)
    u_max, u_arg = masked_max(qc, unm)  # (G,); u_arg is the anchor index (columns of qc are anchors)
    n_pos = pos.sum(1)  # (G,)
    beats_worst = u_max > m_min  # (G,); false when either side is empty (-inf > x, x > +inf)
    beats_best = (n_pos > 0) & (u_max > m_max)  # (G,); m_max is -inf without matched predictions
    u_anchor = torch.where(unm.any(1), u_arg, -1)  # (G,)
    w_anchor = torch.where(n_pos > 0, p_anchor[m_arg], -1)  # (G,)
    best_iou, best_arg = q.max(dim=1)  # (G,), over every valid candidate (q is -inf elsewhere)
    best_c = qc.max(dim=1).values  # (G,), centre cells only
    from_neighbor = best_iou > best_c  # (G,): max(neighbour cells) > max(centre cells)

    # per anchor: scatter the per-column sums into anchors
    qpz = torch.where(pos, qp, torch.zeros_like(qp))  # (G, S)
    zeros = torch.zeros(A, dtype=torch.float64, device=q.device)
    sum_m = zeros.index_add(0, p_anchor, qpz.sum(0, dtype=torch.float64))
    cnt_m = zeros.index_add(0, p_anchor, pos.sum(0).double())
    vc = ct.valid[:, ct.cidx]  # (G, A)
    sum_a = torch.where(vc, qc, torch.zeros_like(qc)).sum(0, dtype=torch.float64)  # (A,)
    cnt_a = vc.sum(0).double()  # (A,)
    best_when_unmatched = torch.bincount(u_anchor[beats_best], minlength=A)[:A]
    worst_matched = torch.bincount(w_anchor[n_pos >= 2], minlength=A)[:A]

    # feature maps: (image, level) with max unmatched(level) > min matched(level) for some object
    keys = []
    c_level = ct.level[ct.cidx]  # (A,)
    p_level = ct.level[ct.pcols]  # (S,)
    for lv in range(num_levels):  # a handful of levels, each vectorised over objects
        bad = (
            masked_max(qc, unm & (c_level == lv)[None, :])[0] > masked_min(qp, pos & (p_level == lv)[None, :])[0]
        )  # (G,)
        keys.append(image_index[bad] * num_levels + lv)
    fm = torch.unique(torch.cat(keys)) if keys else torch.zeros(0, dtype=torch.int64)

    def cpu(x):
        return x.cpu().numpy()

    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "m_min": cpu(m_min),
            "m_max": cpu(m_max),
            "u_max": cpu(u_max),
            "n_pos": cpu(n_pos),
            "u_anchor": cpu(u_anchor),
            "w_anchor": cpu(w_anchor),
            "best_iou": cpu(best_iou),
            "best_anchor": cpu(anchor[best_arg]),
            "best_dx": cpu(ct.dx[best_arg]),
            "best_dy": cpu(ct.dy[best_arg]),
            "from_neighbor": cpu(from_neighbor),
            "beats_worst": cpu(beats_worst),
            "beats_best": cpu(beats_best),
            "pred_iou_matched": cpu(sum_m / cnt_m),
            "pred_iou_all": cpu(sum_a / cnt_a),
            "sum_m": cpu(sum_m),
            "cnt_m": cpu(cnt_m),
            "sum_a": cpu(sum_a),
            "cnt_a": cpu(cnt_a),
            "best_when_unmatched": cpu(best_when_unmatched),
            "worst_matched": cpu(worst_matched),
            "fm_pairs": np.stack([cpu(fm // max(num_levels, 1)), cpu(fm % max(num_levels, 1))], axis=1),
        }
    out["feature_maps_unmatched_better"] = int(out["fm_pairs"].shape[0])
    return out


def _none_if_nan(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


@dataclass(frozen=True, eq=False)
class AnchorAudit:
    """The anchor-audit report; every definition is in :data:`cocostat.figures.FIGURES`.

    Prediction-based figures are None without predictions. ``per_anchor`` has one row per anchor
    (columns ``anchor`` index, ``level``, ``stride``, ``w``, ``h``, ``matched``, ``match_wh_iou``,
    ``pred_iou_matched``, ``pred_iou_all``, ``best_when_unmatched``, ``worst_matched``);
    ``per_object`` one row per object; ``examples`` the worst images.
    """

    source: str
    anchors: str
    assigner: str
    iou: str
    iou_t: float
    ratio_t: float
    size: int
    neighborhood: int | None
    objects: int
    images: int
    feature_maps: int
    unmatched_objects: int
    feature_maps_unmatched_better: int | None
    objects_compared: int | None
    objects_unmatched_beats_worst_matched: int | None
    objects_unmatched_beats_best_matched: int | None
    objects_best_from_neighbor: int | None
    per_anchor: pd.DataFrame = field(repr=False)
    per_object: pd.DataFrame = field(repr=False)
    examples: pd.DataFrame = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def has_predictions(self) -> bool:
        return self.objects_compared is not None

    def to_dict(self) -> dict:
        pa = [
            {
                "anchor_index": int(r.anchor),
                "level": int(r.level),
                "stride": int(r.stride),
                "anchor": [float(r.w), float(r.h)],
                "matched": int(r.matched),
                "match_wh_iou": _none_if_nan(float(r.match_wh_iou)),
                "pred_iou_matched": _none_if_nan(None if r.pred_iou_matched is None else float(r.pred_iou_matched)),
                "pred_iou_all": _none_if_nan(None if r.pred_iou_all is None else float(r.pred_iou_all)),
                "best_when_unmatched": None if pd.isna(r.best_when_unmatched) else int(r.best_when_unmatched),
                "worst_matched": None if pd.isna(r.worst_matched) else int(r.worst_matched),
            }
            for r in self.per_anchor.itertuples(index=False)
        ]
        return {
            "source": self.source,
            "anchors": self.anchors,
            "assigner": self.assigner,
            "iou": self.iou,
            "iou_t": self.iou_t,
            "ratio_t": self.ratio_t,
            "size": self.size,
            "neighborhood": self.neighborhood,
            "predictions": self.has_predictions,
            "objects": self.objects,
            "images": self.images,
            "feature_maps": self.feature_maps,
            "unmatched_objects": self.unmatched_objects,
            "feature_maps_unmatched_better": self.feature_maps_unmatched_better,
            "objects_compared": self.objects_compared,
            "objects_unmatched_beats_worst_matched": self.objects_unmatched_beats_worst_matched,
            "objects_unmatched_beats_best_matched": self.objects_unmatched_beats_best_matched,
            "objects_best_from_neighbor": self.objects_best_from_neighbor,
            "per_anchor": pa,
            "needs_predictions": [] if self.has_predictions else list(NEEDS_PREDICTIONS),
            "examples": json_records(self.examples),
            "notes": list(self.notes),
        }

    def to_frame(self) -> pd.DataFrame:
        return self.per_anchor.copy()

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        overview = pd.DataFrame(overview_rows(self, FIGURES), columns=["statistic", "value", "share"])
        title = (
            f"anchor audit: {self.source}; anchors {self.anchors}; assigner {self.assigner} "
            f"(iou_t {self.iou_t:g}, ratio_t {self.ratio_t:g}); IoU = {self.iou}; size {self.size}"
        )
        pa = self.per_anchor.copy()
        pa.insert(1, "size", [f"{w:g}x{h:g}" for w, h in zip(pa.pop("w"), pa.pop("h"), strict=False)])
        pa = pa.drop(columns=["stride"])
        if not self.has_predictions:
            pa = pa.drop(columns=list(_PRED_COLUMNS))
        pa = pa.rename(columns=_SHORT)
        legend = ", ".join(f"{v} = {k}" for k, v in _SHORT.items() if v in pa.columns)
        out: list[tuple[str, pd.DataFrame | str]] = [
            (title, overview),
            (f"per anchor (size in input pixels; {legend})", pa),
        ]
        if len(self.examples):
            out.append(("worst images", self.examples))
        if self.notes:
            out.append(("notes", "\n".join(self.notes)))
        return out

    def write_per_object(self, path: str | Path) -> Path:
        """Write :attr:`per_object` to ``path`` (``.parquet`` or ``.csv``) atomically."""
        return write_frame(self.per_object, path)


#: short table headers of the per-anchor columns (JSON keys on the left), where they differ.
_SHORT = {name: short for name, short in labels(FIGURES, "per_anchor[]").items() if short != name}


def dense_image_index(image_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique image ids, (G,) index of each object's image into them)."""
    uniq, inv = np.unique(image_id, return_inverse=True)
    return uniq, inv.reshape(-1).astype(np.int64)


def check_options(iou: str, assigner, iou_t: float, ratio_t: float, examples: int) -> Assigner:
    """Check the options both audits share (before any work); return the assigner."""
    iou_kind(iou, "iou")
    kind = assigners.create(assigner, iou_t=iou_t, ratio_t=ratio_t)
    if not 0.0 <= iou_t < 1.0:
        raise OptionError(f"iou_t must lie in [0, 1), got {iou_t}", param="iou_t")
    if not ratio_t > 1.0:
        raise OptionError(f"ratio_t must be greater than 1, got {ratio_t}", param="ratio_t")
    if examples < 0:
        raise OptionError(f"examples must be >= 0, got {examples}", param="examples")
    return kind


# --------------------------------------------------------------------------------------------------
# Streaming helpers, shared by anchor-audit and mismatch: partial sums that merge across chunks and
# ranks, this rank's chunks read ahead, the per-object table sink, top-k examples from every rank
# --------------------------------------------------------------------------------------------------
class Sums:
    """Named numpy partial results that merge by addition (counts exactly, float sums to rounding)."""

    def __init__(self, **values):
        self.values = {k: np.asarray(v) for k, v in values.items()}

    def merge(self, other: Sums) -> Sums:
        for k, v in other.values.items():
            self.values[k] = self.values[k] + v if k in self.values else v
        return self

    def __getitem__(self, key):
        return self.values[key]

    def all_reduce(self) -> Sums:
        """Sum every value over the ranks of an initialised torch.distributed group (no-op without)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        for k in sorted(self.values):
            v = self.values[k]
            t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64 if v.dtype.kind == "f" else np.int64))
            if dist.get_backend() == "nccl":
                t = t.cuda()
            dist.all_reduce(t)
            self.values[k] = t.cpu().numpy().astype(v.dtype).reshape(v.shape)  # ascontiguousarray made 0-d 1-d
        return self


def distributed_share(items: list) -> list:
    """This rank's share (every W-th item from its rank) of ``items`` under torch.distributed, else all."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return items[dist.get_rank() :: dist.get_world_size()]
    return items


def rank_chunks(src: AuditSource, chunk_objects: int | None) -> Iterator[AuditInputs]:
    """This process's chunks (every chunk, or this rank's share under torch.distributed); at least one.

    Each chunk is read and decoded in a background thread while the caller reduces the one before
    (:func:`cocostat.candidates.read_ahead`): two chunks in memory at most.
    """
    import torch.distributed as dist

    chunks: Iterator[AuditInputs] = read_ahead(src.chunks(chunk_objects))  # the next chunk is read meanwhile
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        r, w = dist.get_rank(), dist.get_world_size()
        chunks = (c for i, c in enumerate(chunks) if i % w == r)
    empty = True
    for c in chunks:
        empty = False
        yield c
    if empty:  # zero objects still give correctly shaped results
        arr = _empty_arrays(src.grid, src.neighborhood or 0)
        yield AuditInputs(
            src.grid,
            np.zeros((0, 4)),
            arr.ann_id,
            arr.image_id,
            arr.class_idx,
            src.file_name,
            arr if src.predictions is not None else None,
            src.neighborhood,
            src.source,
        )


def compute_threads(device: torch.device):
    """The torch thread setting the chunk loops run under: one intra-op thread on the CPU.

    A chunk's kernels are some hundred torch ops on (G, N) blocks of a few million elements.
    Splitting each op over two threads saves little when the machine is idle (the ops are
    memory-bound) and costs much when it is busy: every op waits for the slower of its threads
    (measured 2.5x slower with two threads at load average 6 on two cores; reports/bench_scale.md).
    The second core reads and decodes the next chunk instead (:func:`rank_chunks`). Reductions
    then also run in one fixed order, whatever the machine. Other devices are left alone.
    """
    return cpu_threads(1) if device.type == "cpu" else contextlib.nullcontext()


def rerank(frames: list[pd.DataFrame], by: list[str], ascending: list[bool], k: int) -> pd.DataFrame:
    """The top ``k`` rows of the union of partial top-k lists, by ``by`` (merging top-k examples)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    g = pd.concat(frames, ignore_index=True)
    return g.sort_values(by, ascending=ascending, kind="stable").head(k).reset_index(drop=True)


def per_object_sink(per_object):
    """(keep the frame in memory?, a FrameWriter or None) for the ``per_object`` argument."""
    if per_object is True or per_object is None:
        return True, None
    if per_object is False:
        return False, None
    check_frame_path(per_object)
    import torch.distributed as dist

    path = Path(per_object)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:  # one file per rank
        path = path.with_name(f"{path.stem}.rank{dist.get_rank()}{path.suffix}")
    return False, FrameWriter(path)


# --------------------------------------------------------------------------------------------------
# anchor-audit over the chunks
# --------------------------------------------------------------------------------------------------
def anchor_audit(
    dataset: Dataset | None,
    predictions=None,
    *,
    anchors=None,
    size: int | None = None,
    iou: str = "iou",
    iou_t: float = 0.225,
    assigner: str = "yolov3",
    ratio_t: float = 4.0,
    examples: int = 0,
    device=None,
    per_object=True,
    chunk_objects: int | None = CHUNK_OBJECTS,
) -> AnchorAudit:
    """Audit a label assigner against a trained model's predictions (or box sizes alone).

    The predictions are read in image-aligned chunks of about ``chunk_objects`` objects; each chunk
    is moved to ``device``, reduced to partial results (counts, sums, per-image top-k lists,
    per-(image, level) flags, which never span two chunks), and the partial results are combined,
    so memory is bounded by a chunk. Counts equal the whole-table computation exactly, means to
    float rounding. Under torch.distributed each rank reduces every W-th chunk and the partial
    results are summed with ``all_reduce``.

    Args:
        dataset, predictions, anchors, size: see :func:`load_inputs`.
        iou: ``iou``, ``giou``, ``diou`` or ``ciou``: how predictions are scored against objects.
        iou_t, ratio_t, assigner: the label assigner (see :mod:`cocostat.assign`).
        examples: list this many worst images (most objects whose best unmatched prediction beats
            their best matched one; without predictions, most objects with no matched anchor).
        device: torch device of the computation (default CPU); results come back on the CPU.
        per_object: True: keep :attr:`AnchorAudit.per_object` in memory; False: leave it empty; a
            ``.parquet``/``.csv`` path: write it there chunk by chunk (atomically) and leave it empty
            (under torch.distributed rank r writes ``STEM.rankR.SUFFIX``, its own chunks' rows).
        chunk_objects: objects per chunk (None: one chunk per stored part).

    Returns:
        An :class:`AnchorAudit`.
    """
    kind = check_options(iou, assigner, iou_t, ratio_t, examples)
    src = open_inputs(dataset, predictions, anchors=anchors, size=size)
    grid = src.grid
    A, L = grid.num_anchors, grid.num_levels
    notes: list[str] = []
    dev = torch.device(device) if device is not None else torch.device("cpu")
    keep, sink = per_object_sink(per_object)
    has_pred = src.predictions is not None
    if has_pred and src.neighborhood == 0:
        notes.append(
            "the predictions hold only centre cells (neighborhood 0): objects_best_from_neighbor "
            "is null" + (f"; {kind.name}'s neighbour-cell positives are left out" if kind.reach(grid) > 0 else "")
        )
    if not has_pred:
        notes.append(
            "no predictions (give --predictions DIR or --cfg/--weights): only box-based figures; "
            "these need predictions: " + ", ".join(NEEDS_PREDICTIONS)
        )
    ex_cols = ["unmatched_beats_best", "unmatched_beats_worst", "unmatched"] if has_pred else ["unmatched"]
    totals = Sums()
    frames: list[pd.DataFrame] = []
    tops: list[pd.DataFrame] = []
    with sink if sink is not None else contextlib.nullcontext(), compute_threads(dev):
        for inp in rank_chunks(src, chunk_objects):
            part, frame = _audit_chunk(inp, kind, iou, iou_t, ratio_t, dev)
            totals.merge(part)
            if keep:
                frames.append(frame)
            if sink is not None:
                sink.write(frame)
            if examples:
                tops.append(_audit_examples(frame, src.file_name, examples, ex_cols))
            del frame
        totals.all_reduce()
    tops = gather_examples(tops)
    per_object = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0] if frames else pd.DataFrame()
    G = int(totals["objects"])
    n_images = int(totals["images"])
    with np.errstate(invalid="ignore", divide="ignore"):
        match_wh = totals["wh_sum"] / totals["matched"]  # (A,)
    per_anchor = pd.DataFrame(
        {
            "anchor": np.arange(A),
            "level": grid.level,
            "stride": grid.strides[grid.level],
            "w": grid.wh[:, 0],
            "h": grid.wh[:, 1],
            "matched": totals["matched"].astype(np.int64),
            "match_wh_iou": match_wh,
        }
    )
    if has_pred:
        with np.errstate(invalid="ignore", divide="ignore"):
            per_anchor["pred_iou_matched"] = totals["sum_m"] / totals["cnt_m"]
            per_anchor["pred_iou_all"] = totals["sum_a"] / totals["cnt_a"]
        per_anchor["best_when_unmatched"] = totals["best_when_unmatched"].astype(np.int64)
        per_anchor["worst_matched"] = totals["worst_matched"].astype(np.int64)
        pred_figures = {
            "feature_maps_unmatched_better": int(totals["feature_maps_unmatched_better"]),
            "objects_compared": int(totals["compared"]),
            "objects_unmatched_beats_worst_matched": int(totals["beats_worst"]),
            "objects_unmatched_beats_best_matched": int(totals["beats_best"]),
            "objects_best_from_neighbor": int(totals["from_neighbor"]) if src.neighborhood else None,
        }
    else:
        for col in _PRED_COLUMNS:
            per_anchor[col] = None
        pred_figures = dict.fromkeys(_PRED_FIGURES)
    unmatched = int(totals["unmatched"])
    if G and unmatched:
        warnings.warn(
            f"{unmatched} of {G} objects match no anchor ({kind.name} assigner)", CocostatWarning, stacklevel=2
        )
    ex = rerank(tops, [*ex_cols, "image_id"], [*([False] * len(ex_cols)), True], examples)
    if not len(ex):
        ex = pd.DataFrame(columns=["image_id", "file_name", "objects", *ex_cols])
    return AnchorAudit(
        source=src.source,
        anchors=grid.name,
        assigner=kind.name,
        iou=iou,
        iou_t=float(iou_t),
        ratio_t=float(ratio_t),
        size=grid.size,
        neighborhood=src.neighborhood,
        objects=G,
        images=n_images,
        feature_maps=n_images * L,
        unmatched_objects=unmatched,
        **pred_figures,
        per_anchor=per_anchor,
        per_object=per_object,
        examples=ex,
        notes=tuple(notes),
    )


def gather_examples(tops: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Every rank's partial top-k lists under torch.distributed (all_gather_object of small frames)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tops
    records = [t.to_dict(orient="list") for t in tops if len(t)]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, records)  # our own processes' plain lists and numbers
    return [pd.DataFrame(r) for rank_records in gathered for r in rank_records]


def _audit_chunk(inp: AuditInputs, kind, iou: str, iou_t: float, ratio_t: float, dev) -> tuple[Sums, pd.DataFrame]:
    """Partial results and the per-object rows of one chunk of whole images."""
    grid = inp.grid
    G, A, L = inp.boxes.shape[0], grid.num_anchors, grid.num_levels
    images, image_index = dense_image_index(inp.image_id)
    if inp.candidates is not None:
        ct = candidate_tensors(inp.candidates, grid, iou=iou, assigner=kind, iou_t=iou_t, ratio_t=ratio_t, device=dev)
        asg = ct.assignment
        res = audit_tensors(ct, torch.from_numpy(image_index).to(dev), L, A)
        del ct
    else:
        asg = assign(torch.from_numpy(inp.boxes).to(dev), grid, kind, iou_t=iou_t, ratio_t=ratio_t)
        res = None

    matched = asg.matched.cpu().numpy()  # (G, A)
    wh_iou = asg.wh_iou.cpu().numpy()  # (G, A)
    n_matched = matched.sum(1)  # (G,)
    best_wh_anchor = wh_iou.argmax(1) if A and G else np.zeros(G, np.int64)
    per_object = pd.DataFrame(
        {
            **inp.object_columns(),
            "matched_anchors": n_matched,
            "best_wh_anchor": best_wh_anchor,
            "best_wh_iou": wh_iou.max(1) if A and G else np.zeros(G),
        }
    )
    part = Sums(
        objects=G,
        images=images.size,
        unmatched=int((n_matched == 0).sum()),
        matched=matched.sum(0),
        wh_sum=(wh_iou * matched).sum(0),
    )
    if res is not None:
        finite = np.isfinite
        has_m, has_u = res["n_pos"] > 0, np.isfinite(res["u_max"])
        beats_worst, beats_best = res["beats_worst"], res["beats_best"]
        per_object = per_object.assign(
            matched_predictions=res["n_pos"],
            matched_min_iou=np.where(finite(res["m_min"]), res["m_min"], np.nan),
            matched_max_iou=np.where(finite(res["m_max"]), res["m_max"], np.nan),
            unmatched_max_iou=np.where(has_u, res["u_max"], np.nan),
            best_unmatched_anchor=res["u_anchor"],
            worst_matched_anchor=res["w_anchor"],
            best_iou=np.where(finite(res["best_iou"]), res["best_iou"], np.nan),
            best_anchor=res["best_anchor"],
            best_dx=res["best_dx"],
            best_dy=res["best_dy"],
            unmatched_beats_worst=beats_worst,
            unmatched_beats_best=beats_best,
            best_from_neighbor=res["from_neighbor"],
        )
        part.merge(
            Sums(
                feature_maps_unmatched_better=res["feature_maps_unmatched_better"],
                compared=int((has_m & has_u).sum()),
                beats_worst=int(beats_worst.sum()),
                beats_best=int(beats_best.sum()),
                from_neighbor=int(res["from_neighbor"].sum()),
                sum_m=res["sum_m"],
                cnt_m=res["cnt_m"],
                sum_a=res["sum_a"],
                cnt_a=res["cnt_a"],
                best_when_unmatched=res["best_when_unmatched"],
                worst_matched=res["worst_matched"],
            )
        )
    return part, per_object


def _audit_examples(per_object: pd.DataFrame, file_name: dict, k: int, order: list[str]) -> pd.DataFrame:
    """The k worst images, ranked by the columns ``order`` (descending), then image id."""
    cols = ["image_id", "file_name", "objects", *order]
    if k <= 0 or per_object.empty:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(
        {"image_id": per_object["image_id"], "objects": 1, "unmatched": per_object["matched_anchors"] == 0}
    )
    for c in order:
        if c != "unmatched":
            df[c] = per_object[c]
    g = df.groupby("image_id", sort=True).sum().reset_index()
    g = g.sort_values([*order, "image_id"], ascending=[*([False] * len(order)), True], kind="stable").head(k)
    g.insert(1, "file_name", g["image_id"].map(file_name).fillna(""))
    return g[cols].astype({c: "int64" for c in ["image_id", "objects", *order]}).reset_index(drop=True)
