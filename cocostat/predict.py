"""``cocostat predict``: run a Darknet YOLOv3 model over a dataset's images once, store what the audits need.

:func:`predict` letterboxes every image (decoded with pillow in DataLoader worker processes), runs
the model in batches and keeps two things (folder format: :mod:`cocostat.candidates`):

- **detections**: every (box, class) pair with ``score = objectness * class probability > conf``
  (several classes per box may pass, as in Darknet), class-aware greedy NMS per image
  (:func:`batched_nms`, a pair is suppressed when IoU > ``nms_iou``), then the ``max_det`` best per
  image. Boxes are mapped back to the annotation file's pixel coordinates, clipped to the image, and
  written in COCO results format (``bbox`` xywh rounded to 3 decimals, ``score`` to 5); boxes that
  end up with zero width or height after clipping (wholly inside the letterbox padding) are dropped.
- **candidates**: for every annotation (crowd ones included, see the ``iscrowd`` column), every
  anchor of every level, and every cell of the ``(2n+1) x (2n+1)`` block around the cell holding the
  annotation's centre, the decoded prediction there. The centre cell of level l is
  ``(floor(cx / stride_l), floor(cy / stride_l))`` with ``(cx, cy)`` the annotation's centre in input
  pixels, clamped into the grid: an annotation whose centre lies outside the image (or in the
  letterbox padding) still gets its rows, around the nearest grid cell. Neighbour cells that fall
  outside the grid keep their rows with ``valid = False`` and NaN predictions.

Coordinates: annotations map from the file's pixel coordinates to input pixels with the letterbox of
:mod:`cocostat.models`. When an image file's size differs from the ``width``/``height`` the JSON
declares (a resized copy), the annotations are scaled by file size / declared size and a warning
counts such images. EXIF orientation is ignored, as COCO's annotations and pycocotools do.

Resume and sharding: with ``out_dir`` the images are processed in chunks of 256 (per rank); each
finished chunk is stored under ``out_dir/.partial/`` so ``resume=True`` skips it after an
interruption. Under ``torchrun`` (or any initialised ``torch.distributed`` process group) rank r of
W takes images ``r, r + W, r + 2W ...`` (in image-id order) and writes ``candidates-rankR.parquet`` and
``detections-rankR.json``; rank 0 writes ``manifest.json`` last. A folder is complete when its
manifest exists.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor

from cocostat.atomic import write_text
from cocostat.boxes import matched_iou, valid_predictions
from cocostat.candidates import (
    CANDIDATES_DIR,
    COLUMNS,
    DETECTION_COLUMNS,
    DETECTIONS_DIR,
    DETECTIONS_JSON,
    FORMAT_NAME,
    FORMAT_VERSION,
    CandidateArrays,
    Layout,
    Predictions,
    candidate_order,
    concat_arrays,
    detection_records,
    empty_arrays,
    in_memory,
    make_layout,
    part_name,
    read_detection_part,
    read_predictions,
    to_table,
    write_detection_part,
    write_detections_json,
    write_manifest,
    write_part,
)
from cocostat.data import Dataset
from cocostat.draw import draw_detections
from cocostat.errors import CocostatWarning, DatasetFormatError, OptionError
from cocostat.models import DarknetModel, Letterbox, LetterboxParams

__all__ = [
    "STAGES",
    "PredictResult",
    "RunSettings",
    "batched_nms",
    "default_batch_size",
    "default_workers",
    "distributed",
    "gather_candidates",
    "image_loader",
    "predict",
    "speed",
]

#: images per resumable chunk (per rank) unless ``chunk_images`` says otherwise.
CHUNK_IMAGES = 256
#: largest letterbox side accepted, in pixels. One image costs 3 S^2 bytes decoded and the first conv
#: of YOLOv3 holds 32 S^2 float32 values: 2 GB per image at 4096, far beyond any published YOLOv3
#: setting (320..1536). A larger --size is refused before any image is decoded.
MAX_SIZE = 4096
#: detections drawn by ``--draw`` have at least this score.
DRAW_SCORE = 0.25
_PARTIAL = ".partial"


# --------------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PredictResult:
    """What :func:`predict` produced (this rank's share when distributed; the manifest is global).

    Nothing is held in memory beyond a chunk while predicting: :attr:`candidates` and
    :attr:`detections` are read back from the store (this rank's parts) when first used.

    Attributes:
        predictions: the store, a :class:`~cocostat.candidates.Predictions` (the folder, or in memory
            when nothing was written).
        manifest: the manifest dict (as written to ``manifest.json``).
        out_dir: the predictions folder, or None when nothing was written.
        timings: wall seconds per stage of this rank, :data:`STAGES` in pipeline order: ``setup``
            (checks, hashes, fusing the model, until the first image is asked for), ``loading``
            (waiting for decoded images, worker start-up included), ``copy`` (host to device, uint8 to
            float), ``forward`` (the network), ``decode`` (YOLO decoding of its outputs), ``candidates``
            (gathers, to numpy), ``detections`` (threshold, NMS, mapping to file pixels), ``writing``
            (time the run waited on writing: chunks are written in a background thread; the joined
            detections.json and the manifest); then ``total``, the whole call (rank 0: until every
            rank finished). On CUDA each stage ends with a synchronisation, so its time is its own.
        settings: the run's :class:`RunSettings`, defaults filled in (None when read back by resume).
        images: images processed by this call on this rank (0 when everything was resumed).
        resumed_images: images of this rank whose results were already stored.
        drawn: paths of the images written by ``draw``.
        image_ids: COCO ids of this rank's images.
        images_all_ranks: images processed by this call on all ranks together.
    """

    predictions: Predictions
    manifest: dict
    out_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    images: int = 0
    resumed_images: int = 0
    rank: int = 0
    world_size: int = 1
    drawn: tuple[Path, ...] = ()
    image_ids: tuple[int, ...] = ()
    images_all_ranks: int | None = None
    settings: RunSettings | None = None

    @property
    def speed(self) -> dict | None:
        """:func:`speed` of this call on this rank (None when no image was processed)."""
        if self.settings is None or self.settings.batch_size is None:
            return None
        return speed(self.timings, self.images, self.settings.size, self.settings.batch_size)

    @functools.cached_property
    def candidates(self) -> pd.DataFrame:
        """This rank's candidate table, one row per candidate (:data:`~cocostat.candidates.COLUMNS`),
        canonical order. Built from the store when first used; holds everything in memory."""
        rank = self.rank if self.world_size > 1 and self.out_dir is not None else None
        blocks = list(self.predictions.iter_chunks(None, rank=rank))
        if not blocks or not sum(len(b) for b in blocks):
            return _empty_candidates()
        return candidate_order(to_table(concat_arrays(blocks)))

    @functools.cached_property
    def detections(self) -> list[dict]:
        """This rank's detections as COCO results dicts (image_id, category_id, bbox xywh in file
        pixels, score), in store order. Built from the store when first used."""
        rank = self.rank if self.world_size > 1 and self.out_dir is not None else None
        parts = list(self.predictions.iter_detections(rank=rank))
        return [d for p in parts for d in detection_records(p)]

    def to_dict(self) -> dict:
        total = self.timings.get("total", 0.0)
        done = self.images if self.images_all_ranks is None else self.images_all_ranks
        return {
            "out_dir": str(self.out_dir) if self.out_dir else None,
            "dataset": self.manifest.get("dataset", {}).get("name"),
            "cfg": self.manifest.get("cfg"),
            "weights": self.manifest.get("weights"),
            "size": self.manifest.get("size"),
            "images": self.manifest.get("images"),
            "annotations": self.manifest.get("annotations"),
            "detections": self.manifest.get("detections", {}).get("count"),
            "candidate_rows": self.manifest.get("candidate_rows"),
            "candidates_per_annotation": self.manifest.get("candidates_per_annotation"),
            "images_processed": done,
            "images_resumed": (self.manifest.get("images") or 0) - done if self.world_size > 1 else self.resumed_images,
            "images_skipped": len(self.manifest.get("skipped_images") or ()),
            "world_size": self.world_size,
            "seconds": round(total, 3),
            "images_per_second": round(done / total, 2) if total > 0 and done else None,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "speed": self.speed,
            "drawn": [str(p) for p in self.drawn],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per image of this rank: image_id, annotations, detections (after NMS)."""
        rank = self.rank if self.world_size > 1 and self.out_dir is not None else None
        ann_blocks = [b.image_id for b in self.predictions.iter_chunks(None, rank=rank)]
        det_blocks = [p["image_id"] for p in self.predictions.iter_detections(rank=rank)]
        ann_img = np.concatenate(ann_blocks) if ann_blocks else np.zeros(0, np.int64)
        det_img = np.concatenate(det_blocks) if det_blocks else np.zeros(0, np.int64)
        ids = np.union1d(np.asarray(self.image_ids, np.int64), np.union1d(ann_img, det_img))
        frame = pd.DataFrame({"image_id": ids})
        frame["annotations"] = np.bincount(np.searchsorted(ids, ann_img), minlength=ids.size)
        frame["detections"] = np.bincount(np.searchsorted(ids, det_img), minlength=ids.size)
        return frame

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]:
        d = self.to_dict()
        rows = [
            ("predictions folder", d["out_dir"] or "-"),
            ("dataset", d["dataset"]),
            ("cfg", d["cfg"]),
            ("weights", d["weights"] or "random"),
            ("input size", d["size"]),
            ("images", d["images"]),
            ("annotations", d["annotations"]),
            ("detections (after NMS)", d["detections"]),
            ("candidate rows", d["candidate_rows"]),
            ("candidates per annotation", d["candidates_per_annotation"]),
            ("images processed / resumed", f"{d['images_processed']} / {d['images_resumed']}"),
            ("images skipped (unreadable)", d["images_skipped"]),
            ("processes", self.world_size),
            ("seconds", d["seconds"]),
            ("images per second", d["images_per_second"]),
        ]
        t = self.timings
        timing = pd.DataFrame(
            {
                "stage": list(t),
                "seconds": list(t.values()),
                "ms per image": [1000 * v / self.images if self.images else np.nan for v in t.values()],
                "share of total": [v / t["total"] if t.get("total") else np.nan for v in t.values()],
            }
        )
        out: list[tuple[str, pd.DataFrame | str]] = [
            ("cocostat predict", pd.DataFrame(rows, columns=["field", "value"])),
            ("time per stage", timing),
        ]
        if self.speed is not None:
            out.append(("", self.speed["line"]))
        if self.drawn:
            out.append(("drawn images", "\n".join(str(p) for p in self.drawn)))
        return out


# --------------------------------------------------------------------------------------------------
# NMS
# --------------------------------------------------------------------------------------------------
def batched_nms(
    boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float, *, max_pairs: int = 1 << 22
) -> Tensor:
    """Greedy NMS within each group (exactly torchvision's ``batched_nms`` result).

    Hand-written because torchvision cannot be installed beside this torch build. Within a group,
    boxes are visited by descending score (ties: lower index first) and a box is dropped when its
    IoU with an already kept box exceeds ``iou_threshold``. Vectorised as follows, with no loop over
    boxes: sort by (group, -score); list every (earlier j, later i) pair inside each group (in
    chunks of ``max_pairs``; groups are (image, class), so pairs stay few); keep the pairs with
    IoU > threshold as edges j -> i; then iterate ``keep[i] = no kept j with an edge j -> i``
    starting from all-kept. The greedy result is the unique fixed point of that rule, and the
    iteration reaches it after (longest chain of edges + 1) rounds, each one scatter over the
    edges. (The coordinate-offset trick with a dense IoU matrix would need P x P memory per image at
    conf 0.001.)

    Args:
        boxes: (P, 4) float, xyxy. scores: (P,) float. groups: (P,) int64, e.g. ``image * C + class``.
        iou_threshold: a box is suppressed when IoU > this.

    Returns:
        (K,) int64 indices of the kept boxes, by descending score (ties: lower index first).
    """
    p = boxes.shape[0]
    dev = boxes.device
    if p == 0:
        return torch.zeros(0, dtype=torch.int64, device=dev)
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]  # by group, then score desc
    g, b = groups[order], boxes[order]
    first = torch.ones(p, dtype=torch.bool, device=dev)
    first[1:] = g[1:] != g[:-1]
    starts = torch.nonzero(first).squeeze(1)  # (n_groups,)
    start_of = starts[torch.cumsum(first.long(), 0) - 1]  # (P,) first position of each box's group
    pos = torch.arange(p, device=dev) - start_of  # (P,) boxes before this one in its group
    cum = torch.cumsum(pos, 0)  # (P,) pairs up to and including box i
    total = int(cum[-1])
    src: list[Tensor] = []
    dst: list[Tensor] = []
    if total:
        # chunk boundaries: the first box whose cumulative pair count passes each multiple of max_pairs
        cuts: list[int] = []
        if total > max_pairs:
            marks = torch.arange(max_pairs, total, max_pairs, device=dev)
            cuts = sorted(set(torch.searchsorted(cum, marks, right=True).tolist()))
        edges = [0, *cuts, p]
        for lo, hi in itertools.pairwise(edges):
            if lo >= hi:
                continue
            counts = pos[lo:hi]
            n = int(counts.sum())
            if n == 0:
                continue
            i = torch.repeat_interleave(torch.arange(lo, hi, device=dev), counts)  # (n,)
            offs = torch.cumsum(counts, 0) - counts  # (hi - lo,) exclusive prefix sums
            j = start_of[i] + torch.arange(n, device=dev) - torch.repeat_interleave(offs, counts)  # (n,)
            hit = matched_iou(b[j], b[i]) > iou_threshold  # (n,)
            src.append(j[hit])
            dst.append(i[hit])
    keep = torch.ones(p, dtype=torch.bool, device=dev)
    if src:
        ej, ei = torch.cat(src), torch.cat(dst)
        if ej.numel():
            for _ in range(p + 1):
                suppressed = torch.zeros(p, dtype=torch.int32, device=dev).index_add_(0, ei, keep[ej].int())
                new = suppressed == 0
                if torch.equal(new, keep):
                    break
                keep = new
    kept = torch.sort(order[keep]).values  # index order, so that score ties keep it
    return kept[torch.argsort(scores[kept], descending=True, stable=True)]


def _top_per_image(image: Tensor, scores: Tensor, max_det: int) -> Tensor:
    """Indices of the ``max_det`` highest scores of each image, ordered by (image, -score)."""
    if image.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=image.device)
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(image[order], stable=True)]
    img = image[order]
    first = torch.ones_like(img, dtype=torch.bool)
    first[1:] = img[1:] != img[:-1]
    starts = torch.nonzero(first).squeeze(1)
    rank = torch.arange(img.numel(), device=img.device) - starts[torch.cumsum(first.long(), 0) - 1]
    return order[rank < max_det]


# --------------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Slots:
    """(S,) per (anchor, level) pair, sorted by (anchor, level): where its predictions lie in a flat
    per-image row layout (level blocks in cfg order, rows ``(k * H + gy) * W + gx`` inside)."""

    level: Tensor
    anchor: Tensor
    k: Tensor
    stride: Tensor
    grid_h: Tensor
    grid_w: Tensor
    offset: Tensor
    anchor_wh: Tensor  # (S, 2)

    @staticmethod
    def build(model: DarknetModel, size: int, device) -> _Slots:
        grids = model.grid_sizes(size)
        rows, offset = [], 0
        for lvl, g in zip(model.levels, grids, strict=False):
            for k, a in enumerate(lvl.mask):
                rows.append((a, lvl.level, k, size / g, g, g, offset, *model.cfg.anchors[a]))
            offset += len(lvl.mask) * g * g
        rows.sort(key=lambda r: (r[0], r[1]))
        cols = list(zip(*rows, strict=False))

        def t(i, dt):
            return torch.tensor(cols[i], dtype=dt, device=device)

        return _Slots(
            level=t(1, torch.int64),
            anchor=t(0, torch.int64),
            k=t(2, torch.int64),
            stride=t(3, torch.float32),
            grid_h=t(4, torch.int64),
            grid_w=t(5, torch.int64),
            offset=t(6, torch.int64),
            anchor_wh=torch.stack([t(7, torch.float32), t(8, torch.float32)], 1),
        )


def _flatten(decoded: Sequence[Tensor]) -> Tensor:
    """Per-level (B, A_l, H, W, K) -> (B, R, K), level blocks in cfg order."""
    return torch.cat([d.reshape(d.shape[0], -1, d.shape[-1]) for d in decoded], dim=1)


def gather_candidates(
    flat: Tensor, slots: _Slots, gt: Tensor, batch_index: Tensor, class_idx: Tensor, neighborhood: int
) -> dict[str, Tensor]:
    """Predictions around each annotation's centre cell, by vectorised gathers (no loop over objects).

    Args:
        flat: (B, R, 5 + C) decoded outputs of a batch, :func:`_flatten` layout.
        slots: per (anchor, level) constants (S of them), see :class:`_Slots`.
        gt: (G, 4) float32, annotations xyxy in input pixels. batch_index: (G,) int64 image in the
            batch. class_idx: (G,) int64.
        neighborhood: n; cells with ``|dx|, |dy| <= n`` around the centre cell.

    Returns:
        column name -> (G * N,) tensor with N = S x (2n+1)^2, rows ordered (annotation, anchor, dy, dx);
        columns ``level anchor anchor_w anchor_h stride dx dy gx gy valid px1 py1 px2 py2 obj cls_prob
        max_cls_prob max_cls_idx``.
    """
    dev = flat.device
    g_count, s_count = gt.shape[0], slots.level.shape[0]
    d = torch.arange(-neighborhood, neighborhood + 1, device=dev)  # (D,)
    nd = d.numel()
    cx = (gt[:, 0] + gt[:, 2]) / 2  # (G,)
    cy = (gt[:, 1] + gt[:, 3]) / 2  # (G,)
    cgx = torch.floor(cx[:, None] / slots.stride).long().clamp(min=0)  # (G, S)
    cgx = torch.minimum(cgx, slots.grid_w - 1)
    cgy = torch.floor(cy[:, None] / slots.stride).long().clamp(min=0)  # (G, S)
    cgy = torch.minimum(cgy, slots.grid_h - 1)
    shape = (g_count, s_count, nd, nd)
    gx = (cgx[:, :, None, None] + d[None, None, None, :]).expand(shape)  # (G, S, D, D)
    gy = (cgy[:, :, None, None] + d[None, None, :, None]).expand(shape)  # (G, S, D, D)
    w = slots.grid_w[None, :, None, None]
    h = slots.grid_h[None, :, None, None]
    valid = (gx >= 0) & (gx < w) & (gy >= 0) & (gy < h)  # (G, S, D, D)
    row = (
        slots.offset[None, :, None, None]
        + (slots.k[None, :, None, None] * h + gy.clamp(min=0).minimum(h - 1)) * w
        + gx.clamp(min=0).minimum(w - 1)
    )  # (G, S, D, D)
    sel = flat[batch_index[:, None, None, None].expand(shape), row]  # (G, S, D, D, 5 + C)
    sel = sel.reshape(-1, sel.shape[-1])  # (G*N, 5 + C)
    valid = valid.reshape(-1)
    nan = torch.tensor(float("nan"), device=dev)
    half = sel[:, 2:4] / 2
    box = torch.cat([sel[:, :2] - half, sel[:, :2] + half], 1)  # (G*N, 4) xyxy
    box = torch.where(valid[:, None], box, nan)
    cls = sel[:, 5:]
    n = s_count * nd * nd
    cls_prob = cls.gather(1, class_idx.repeat_interleave(n)[:, None]).squeeze(1)
    max_prob, max_idx = cls.max(dim=1) if cls.shape[1] else (torch.zeros_like(cls_prob), torch.zeros_like(row))

    def per_slot(v):  # (S,) -> (G*N,)
        return v[None, :, None, None].expand(shape).reshape(-1)

    return {
        "level": per_slot(slots.level),
        "anchor": per_slot(slots.anchor),
        "anchor_w": per_slot(slots.anchor_wh[:, 0]),
        "anchor_h": per_slot(slots.anchor_wh[:, 1]),
        "stride": per_slot(slots.stride),
        "dx": d[None, None, None, :].expand(shape).reshape(-1),
        "dy": d[None, None, :, None].expand(shape).reshape(-1),
        "gx": gx.reshape(-1),
        "gy": gy.reshape(-1),
        "valid": valid,
        "px1": box[:, 0],
        "py1": box[:, 1],
        "px2": box[:, 2],
        "py2": box[:, 3],
        "obj": torch.where(valid, sel[:, 4], nan),
        "cls_prob": torch.where(valid, cls_prob, nan),
        "max_cls_prob": torch.where(valid, max_prob, nan),
        "max_cls_idx": torch.where(valid, max_idx.reshape(-1), torch.full_like(max_idx.reshape(-1), -1)),
    }


def _empty_candidates() -> pd.DataFrame:
    return pd.DataFrame({c: np.zeros(0, dtype=t) for c, t in COLUMNS.items()})


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------
class ImageFiles(torch.utils.data.Dataset):
    """Decodes and letterboxes images with pillow (run in DataLoader worker processes).

    Item i -> ``(i, (S, S, 3) uint8 RGB array or None, file width, file height, error message or "")``.
    Errors are returned, not raised, so the main process can report them in one clean line.
    """

    def __init__(self, paths: Sequence[str], letterbox: Letterbox):
        self.paths = list(paths)
        self.letterbox = letterbox

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        try:
            with Image.open(self.paths[i]) as im:
                im.load()
                return i, self.letterbox.apply(im), im.width, im.height, ""
        except Exception as exc:
            return i, None, 0, 0, f"{type(exc).__name__}: {exc}"


def _collate(items):
    """Items of :class:`ImageFiles` -> (idx (B,), imgs (B, S, S, 3) uint8 or None, wh (B, 2), errors).

    The images that failed to decode are left out of ``idx``, ``imgs`` and ``wh`` (B counts the
    good ones) and listed in ``errors`` as ``(position, message)``; ``imgs`` is None when B is 0.
    """
    good = [it for it in items if not it[4]]
    idx = torch.tensor([it[0] for it in good], dtype=torch.int64)
    wh = torch.tensor([[it[2], it[3]] for it in good], dtype=torch.int64).reshape(-1, 2)
    errors = [(it[0], it[4]) for it in items if it[4]]
    imgs = torch.from_numpy(np.stack([it[1] for it in good])) if good else None  # (B, S, S, 3) uint8
    return idx, imgs, wh, errors


def image_loader(
    paths: Sequence[str], letterbox: Letterbox, batches: list[list[int]], workers: int, device: torch.device
) -> torch.utils.data.DataLoader:
    """The loader :func:`predict` decodes with: ``workers`` processes (0: this one) decode and letterbox
    ``paths[i]`` for each batch of positions in ``batches``, in order; items are :func:`_collate`'s
    ``(idx, imgs, wh, errors)``, ``imgs`` in pinned memory when ``device`` is CUDA (so the copy to the
    device can be asynchronous). Worker processes are forked (Linux's default start method), which
    starts them in milliseconds instead of re-importing torch in each."""
    return torch.utils.data.DataLoader(
        ImageFiles(paths, letterbox),
        batch_sampler=batches,
        num_workers=workers if batches else 0,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )


def _bad_images(errors: list[tuple[int, str]], dataset: Dataset, paths: Sequence[str], skip: bool) -> list[dict]:
    """The manifest's entries for images that could not be read; a DatasetFormatError unless ``skip``."""
    if errors and not skip:
        i, msg = errors[0]
        raise DatasetFormatError(
            f"image {int(dataset.image_id[i])} of {dataset.name}: cannot decode {paths[i]}: "
            f"{msg} (--skip-bad-images goes on without such images)"
        )
    return [{"image_id": int(dataset.image_id[i]), "file": str(paths[i]), "error": msg} for i, msg in errors]


# --------------------------------------------------------------------------------------------------
# Distributed
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def distributed(device: torch.device) -> Iterator[torch.device]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1) for the duration of the block.

    Backend: nccl for CUDA, gloo for CPU. Yields the device this rank should use: ``cuda:LOCAL_RANK``
    when ``device`` is CUDA without an index, else ``device``. Without torchrun (or when a process
    group already exists) it only yields ``device``; a group it created is destroyed on exit.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available() or dist.is_initialized():
        yield device
        return
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _all_gather_lists(items: list, world: int) -> list:
    """Every rank's ``items`` concatenated in rank order (JSON-safe values)."""
    if world == 1:
        return items
    gathered: list = [None] * world
    dist.all_gather_object(gathered, items)
    return [x for part in gathered for x in part]


def _all_sum(values: list[int], world: int, device: torch.device) -> list[int]:
    if world == 1:
        return values
    dev = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.int64, device=dev)
    dist.all_reduce(t)
    return [int(v) for v in t.tolist()]


# --------------------------------------------------------------------------------------------------
# Run settings
# --------------------------------------------------------------------------------------------------
def default_batch_size(device: torch.device) -> int:
    """Images per forward pass when ``batch_size`` is None: 32 on CUDA, 4 on the CPU.

    Measured (``benchmarks/bench_predict.py``, yolov3-tiny at 416 on a 2-core CPU): per image the CPU
    forward pass is fastest at small batches (24 ms at batch 1 and 4, 32 ms at batch 16, where one
    batch's activations no longer fit the caches); batch 4 keeps that speed while amortising the
    per-batch work (worker hand-off, NMS and candidate gathers). A GPU needs large batches to fill it.
    """
    return 32 if device.type == "cuda" else 4


def default_workers(device: torch.device) -> int:
    """Decoding processes when ``workers`` is None: min(8, cores) on CUDA; on the CPU, where torch needs
    the cores, cores // 4 clipped to 1..4 (decoding and letterboxing a COCO image takes about a fifth
    of a yolov3-tiny forward pass on one core)."""
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, cores)
    return max(1, min(4, cores // 4))


@dataclass(frozen=True)
class RunSettings:
    """What the user asked of one :func:`predict` run; :meth:`check` validates it once.

    Attributes:
        size: S, letterbox side in pixels (a multiple of the model's largest stride, at most :data:`MAX_SIZE`).
        batch_size: images per forward pass; None: :func:`default_batch_size` of the device.
        conf: keep (box, class) pairs with objectness * class probability > conf.
        nms_iou: class-aware NMS suppresses IoU > nms_iou. max_det: detections kept per image.
        neighborhood: n; candidates cover the (2n+1) x (2n+1) cells around each annotation's centre.
        workers: image-decoding processes (0: in this process); None: :func:`default_workers`.
        half: float16 inference (CUDA only).
        chunk_images: images per resumable chunk; None: :data:`CHUNK_IMAGES`.
        skip_bad_images: go on without missing or undecodable image files.
        draw: images of rank 0 saved with their detections drawn.
    """

    size: int = 416
    batch_size: int | None = None
    conf: float = 0.001
    nms_iou: float = 0.6
    max_det: int = 100
    neighborhood: int = 1
    workers: int | None = None
    half: bool = False
    chunk_images: int | None = None
    skip_bad_images: bool = False
    draw: int = 0

    def for_device(self, device: torch.device) -> RunSettings:
        """These settings with the defaults left open (batch size, workers, chunk size) filled in."""
        return dataclasses.replace(
            self,
            batch_size=default_batch_size(device) if self.batch_size is None else self.batch_size,
            workers=default_workers(device) if self.workers is None else self.workers,
            chunk_images=CHUNK_IMAGES if self.chunk_images is None else self.chunk_images,
        )

    def check(self, dataset: Dataset, model: DarknetModel, device: torch.device) -> list[int]:
        """Raise :class:`OptionError` for the first bad setting; return the model's strides at ``size``."""
        size = self.size
        if isinstance(size, int) and size > MAX_SIZE:
            raise OptionError(
                f"size must be at most {MAX_SIZE} px (one {size} x {size} image needs "
                f"{3 * size * size / 2**30:.1f} GiB decoded and far more in the network), got {size}",
                param="size",
            )
        strides = model.check_size(size)
        checks = [
            (
                isinstance(self.chunk_images, int) and self.chunk_images >= 1,
                f"chunk_images must be a positive integer, got {self.chunk_images}",
            ),
            (
                isinstance(self.batch_size, int) and self.batch_size >= 1,
                f"batch_size must be a positive integer, got {self.batch_size}",
            ),
            (0 <= self.conf <= 1, f"conf must lie in [0, 1], got {self.conf}"),
            (0 <= self.nms_iou <= 1, f"nms_iou must lie in [0, 1], got {self.nms_iou}"),
            (
                isinstance(self.max_det, int) and self.max_det >= 1,
                f"max_det must be a positive integer, got {self.max_det}",
            ),
            (
                isinstance(self.neighborhood, int) and 0 <= self.neighborhood <= 100,
                f"neighborhood must be an integer in 0..100 cells, got {self.neighborhood}",
            ),
            (
                self.workers is None or (isinstance(self.workers, int) and self.workers >= 0),
                f"workers must be 0 or more, got {self.workers}",
            ),
            (isinstance(self.draw, int) and self.draw >= 0, f"draw must be 0 or more, got {self.draw}"),
            (
                device.type != "cuda" or torch.cuda.is_available(),
                f"device {device} was asked for, but torch sees no CUDA device; use cpu",
            ),
            (
                not self.half or device.type == "cuda",
                f"half needs a CUDA device (float16 convolutions on the CPU are slow and inexact); got device {device}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise OptionError(msg, param=msg.split(" ", 1)[0])
        if model.num_classes != dataset.num_classes:
            raise OptionError(
                f"{model.cfg.name} predicts {model.num_classes} classes but dataset {dataset.name} has "
                f"{dataset.num_classes} categories; class indices would not line up"
            )
        if dataset.num_images and dataset.image_dir is None:
            raise OptionError(
                f"dataset {dataset.name} has no image folder; give it with --images DIR (or use a COCO "
                f"root laid out as ROOT/annotations/instances_SPLIT.json beside ROOT/SPLIT/)"
            )
        return strides

    def resume_key(self, dataset: Dataset, model: DarknetModel, world: int, pad_value: int) -> dict:
        """What a resumed run must share with the run it continues (``--resume`` compares these).

        The dataset is identified by what it is, not by how it was spelt: the SHA-256 hash of the
        annotation file's bytes (a dataset built in memory: its name), the image folder's resolved path
        (``--root coco`` and ``--root /abs/coco`` are the same), and hashes of the image ids and file
        names. Batch size and workers are not part of it: they do not change the results.
        """
        from cocostat.data import content_key

        ids = np.ascontiguousarray(dataset.image_id)
        names = "\n".join(str(f) for f in dataset.file_name).encode()
        return {
            "cfg_sha256": model.cfg.text_sha256,
            "weights_sha256": model.weights_sha256,
            "size": self.size,
            "conf": self.conf,
            "nms_iou": self.nms_iou,
            "max_det": self.max_det,
            "neighborhood": self.neighborhood,
            "half": bool(self.half),
            "world_size": world,
            "chunk_images": self.chunk_images,
            "pad_value": pad_value,
            "skip_bad_images": bool(self.skip_bad_images),
            "annotations_sha256": content_key(path=dataset.path) if dataset.path else f"in memory: {dataset.name}",
            "image_dir": os.path.realpath(dataset.image_dir) if dataset.image_dir else None,
            "image_ids_sha256": hashlib.sha256(ids.tobytes()).hexdigest(),
            "file_names_sha256": hashlib.sha256(names).hexdigest(),
            "annotations": dataset.num_annotations,
        }


# --------------------------------------------------------------------------------------------------
# Stage timing and the speed line
# --------------------------------------------------------------------------------------------------
#: the stages :attr:`PredictResult.timings` holds, in pipeline order (``total`` comes last).
STAGES = ("setup", "loading", "copy", "forward", "decode", "candidates", "detections", "writing")


class _Stages:
    """Wall seconds per stage (:data:`STAGES`); :meth:`lap` ends the stage that began at the last lap."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self.t
        self.t = now


def speed(timings: dict[str, float], images: int, size: int, batch_size: int) -> dict | None:
    """The figures of the line users know from YOLOv3's ``test.py``, in milliseconds per image.

    ``inference`` = forward pass + YOLO decoding (stages ``forward`` + ``decode``); ``nms`` =
    thresholding, NMS and mapping to file pixels (stage ``detections``); ``total`` = the whole
    :func:`predict` call's wall time (setup, decoding waits, copies, candidates and writing included)
    divided by the images it processed. None when no image was processed (a resumed, complete folder).
    """
    if not images:
        return None
    ms = {
        "inference": 1000 * (timings.get("forward", 0.0) + timings.get("decode", 0.0)) / images,
        "nms": 1000 * timings.get("detections", 0.0) / images,
        "total": 1000 * timings.get("total", 0.0) / images,
    }
    line = (
        f"Speed: {ms['inference']:.1f}/{ms['nms']:.1f}/{ms['total']:.1f} ms inference/NMS/total "
        f"per {size}x{size} image at batch-size {batch_size}"
    )
    return {**{k: round(v, 3) for k, v in ms.items()}, "size": size, "batch_size": batch_size, "line": line}


# --------------------------------------------------------------------------------------------------
# One batch
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Inference:
    """What every batch of a run shares: the fused model on its device, its grid and the dataset's columns.

    Attributes:
        runner: the batch-norm-fused, channels-last copy of the model, float16 with ``settings.half``.
        boxes_xyxy: (G, 4) float64, every annotation xyxy in file pixels.
        cat_ids: (C,) int64, COCO category id of each class index.
    """

    runner: DarknetModel
    settings: RunSettings
    device: torch.device
    letterbox: Letterbox
    slots: _Slots
    layout: Layout
    dataset: Dataset
    boxes_xyxy: np.ndarray
    cat_ids: np.ndarray

    @staticmethod
    def build(
        model: DarknetModel, dataset: Dataset, settings: RunSettings, device: torch.device, layout: Layout
    ) -> _Inference:
        runner = model.fuse().to(device)
        runner = runner.half() if settings.half else runner.float()
        runner = runner.to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]  # not in the stubs
        return _Inference(
            runner=runner,
            settings=settings,
            device=device,
            letterbox=Letterbox(settings.size),
            slots=_Slots.build(model, settings.size, device),
            layout=layout,
            dataset=dataset,
            boxes_xyxy=dataset.boxes_xyxy(),
            cat_ids=dataset.categories["category_id"].to_numpy(np.int64),
        )

    def sync(self) -> None:
        """Wait for the device's queued work, so that a stage's time is its own (CUDA only)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@dataclass(frozen=True, eq=False)
class _Batch:
    """One decoded batch. idx: (B,) int64 dataset positions; imgs: (B, S, S, 3) uint8 RGB letterboxed
    (pinned on CUDA); wh: (B, 2) int64, each file's width and height in pixels."""

    idx: np.ndarray
    imgs: Tensor
    wh: np.ndarray


def _run_batch(inf: _Inference, batch: _Batch, stages: _Stages) -> tuple[CandidateArrays, dict[str, np.ndarray]]:
    """Inference, candidate extraction and detections for one batch; adds each stage's seconds to ``stages``.

    Returns:
        the dense candidate arrays of the batch's annotations, and its detection columns
        (:data:`~cocostat.candidates.DETECTION_COLUMNS`), numpy on the CPU.
    """
    with torch.inference_mode():
        x = _to_device(inf, batch.imgs)
        inf.sync()
        stages.lap("copy")
        raw = inf.runner(x)
        inf.sync()
        stages.lap("forward")
        flat = _flatten(inf.runner.decode(raw, inf.settings.size))  # (B, R, 5 + C)
        inf.sync()
        stages.lap("decode")
        geo = _geometry(inf, batch)
        arrays = _candidates(inf, batch, flat, geo)
        stages.lap("candidates")
        dets = _detections(inf, batch, flat, geo)
        stages.lap("detections")
    return arrays, dets


def _to_device(inf: _Inference, imgs: Tensor) -> Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float in [0, 1] on the device (channels-last memory, a view
    of the uint8 layout); the copy is asynchronous from pinned memory on CUDA."""
    x = imgs.to(inf.device, non_blocking=inf.device.type == "cuda").permute(0, 3, 1, 2)
    x = x.half() if inf.settings.half else x.float()
    return x.mul_(1 / 255)


def _geometry(inf: _Inference, batch: _Batch) -> LetterboxParams:
    """Letterbox geometry of the batch from each file's size, scaled to the JSON's declared coordinates."""
    ds, idx = inf.dataset, batch.idx
    geo = inf.letterbox.params(batch.wh[:, 0], batch.wh[:, 1])
    return LetterboxParams(
        geo.new_w / ds.width[idx], geo.new_h / ds.height[idx], geo.pad_x, geo.pad_y, geo.new_w, geo.new_h
    )


def _candidates(inf: _Inference, batch: _Batch, flat: Tensor, geo: LetterboxParams) -> CandidateArrays:
    """The candidate arrays of the batch's annotations (G of them, N slots each), numpy."""
    ds, idx, layout = inf.dataset, batch.idx, inf.layout
    ann, bidx = ds.annotation_rows(idx)  # (G,) rows, (G,) image in batch
    gt = geo.to_input(inf.boxes_xyxy[ann], bidx).astype(np.float32)  # (G, 4)
    dev = inf.device
    cols = gather_candidates(
        flat,
        inf.slots,
        torch.from_numpy(gt).to(dev),
        torch.from_numpy(bidx).to(dev),
        torch.from_numpy(ds.class_idx[ann]).to(dev),
        inf.settings.neighborhood,
    )
    g, n = ann.shape[0], layout.size

    def gn(name: str) -> np.ndarray:  # (G * N,) -> (G, N)
        return cols[name].cpu().numpy().reshape(g, n)

    return CandidateArrays.of(
        layout,
        ann_id=ds.ann_id[ann].astype(np.int64),
        image_id=ds.image_id[idx][bidx].astype(np.int64),
        class_idx=ds.class_idx[ann].astype(np.int64),
        iscrowd=ds.iscrowd[ann].astype(bool),
        gt=gt,
        gx=gn("gx"),
        gy=gn("gy"),
        valid=gn("valid"),
        pred=np.stack([gn(c) for c in ("px1", "py1", "px2", "py2")], axis=-1),
        obj=gn("obj"),
        cls_prob=gn("cls_prob"),
        max_cls_prob=gn("max_cls_prob"),
        max_cls_idx=gn("max_cls_idx").astype(np.int16),
    )


def _detections(inf: _Inference, batch: _Batch, flat: Tensor, geo: LetterboxParams) -> dict[str, np.ndarray]:
    """The batch's detections as columns: thresholded, NMS'd, mapped to file pixels, clipped, rounded."""
    ds, idx, opts = inf.dataset, batch.idx, inf.settings
    b, cls, box, score = (v.cpu().numpy() for v in _detect(flat, opts.conf, opts.nms_iou, opts.max_det))
    box = geo.to_image(box.astype(np.float64), b)
    w_img, h_img = ds.width[idx][b], ds.height[idx][b]
    box = np.clip(box, 0, np.stack([w_img, h_img, w_img, h_img], 1))
    keep = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
    b, cls, box, score = b[keep], cls[keep], box[keep], score[keep]
    xywh = np.round(np.concatenate([box[:, :2], box[:, 2:] - box[:, :2]], 1), 3)
    return {
        "image_id": ds.image_id[idx][b].astype(np.int64),
        "category_id": inf.cat_ids[cls].astype(np.int64),
        "x": xywh[:, 0],
        "y": xywh[:, 1],
        "w": xywh[:, 2],
        "h": xywh[:, 3],
        "score": np.round(score.astype(np.float64), 5),
    }


def _detect(flat: Tensor, conf: float, nms_iou: float, max_det: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Threshold, class-aware NMS and top-``max_det`` per image.

    Args:
        flat: (B, R, 5 + C) decoded outputs.

    Returns:
        image index in the batch (P,) int64, class index (P,) int64, boxes (P, 4) xyxy input pixels,
        scores (P,) float32; ordered by (image, -score).
    """
    c = flat.shape[-1] - 5
    # score <= objectness: a cheap first cut; then drop invalid (non-finite) predictions, one rule
    b, r = torch.nonzero(flat[..., 4] > conf, as_tuple=True)
    rows = flat[b, r]  # (Q, 5 + C)
    ok = valid_predictions(rows[:, :4], rows[:, 4:])  # (Q,) finite box, objectness and classes
    b, r, rows = b[ok], r[ok], rows[ok]
    scores = rows[:, 4:5] * rows[:, 5:]  # (Q, C)
    q, cls = torch.nonzero(scores > conf, as_tuple=True)
    score = scores[q, cls]
    half = rows[q, 2:4] / 2
    box = torch.cat([rows[q, :2] - half, rows[q, :2] + half], 1)  # (P, 4) xyxy
    img = b[q]
    keep = batched_nms(box, score, img * c + cls, nms_iou)
    keep = keep[_top_per_image(img[keep], score[keep], max_det)]
    return img[keep], cls[keep], box[keep], score[keep]


# --------------------------------------------------------------------------------------------------
# Chunks: the plan, and the writer
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Plan:
    """This rank's images in chunks, and which chunks are left to do.

    Attributes:
        positions: (I,) int64 dataset positions of this rank's images.
        chunks: per chunk, its (n,) int64 positions.
        files: per chunk, its (candidates, detections) part files, or None when nothing is written.
        done: chunks an earlier run finished (``resume``); todo: the others, in order.
        batches: lists of positions, one per forward pass; a batch never spans two chunks.
    """

    positions: np.ndarray
    chunks: list[np.ndarray]
    files: list[tuple[Path, Path] | None]
    done: set[int]
    todo: list[int]
    batches: list[list[int]]

    @staticmethod
    def build(positions: np.ndarray, opts: RunSettings, out: Path | None, rank: int, resume: bool) -> _Plan:
        n, bs = opts.chunk_images, opts.batch_size
        assert n is not None and bs is not None  # filled in by RunSettings.for_device
        chunks = [positions[k : k + n] for k in range(0, len(positions), n)]
        # a chunk's two parts: candidates first, then detections, whose file marks the chunk finished
        files = [
            (out / CANDIDATES_DIR / part_name(rank, c), out / DETECTIONS_DIR / part_name(rank, c))
            if out is not None
            else None
            for c in range(len(chunks))
        ]
        done = {c for c, f in enumerate(files) if resume and f is not None and f[0].is_file() and f[1].is_file()}
        todo = [c for c in range(len(chunks)) if c not in done]
        batches = [chunks[c][k : k + bs].tolist() for c in todo for k in range(0, len(chunks[c]), bs)]
        return _Plan(positions, chunks, files, done, todo, batches)

    def chunk_of(self) -> dict[int, int]:
        """Dataset position -> its chunk, for the chunks to do."""
        return {int(p): c for c in self.todo for p in self.chunks[c]}


class _ChunkWriter:
    """Collects each chunk's batch outputs and stores the chunk once every one of its images is done.

    With part files, a finished chunk is joined and written by one background thread (at most one
    chunk waits behind the one being written), so the next batches run meanwhile; an error there is
    raised at the next :meth:`add` or at :meth:`close`. Without files the chunks are kept in memory.

    Attributes:
        counts: (3,) int64, objects, detections and chunks stored by this run.
        kept: chunk -> (candidate arrays, detection columns), only when nothing is written.
        skipped: chunk -> the manifest entries of its unreadable images.
    """

    def __init__(self, plan: _Plan, layout: Layout, stages: _Stages) -> None:
        self.plan, self.layout, self.stages = plan, layout, stages
        self.pending: dict[int, list] = {c: [] for c in plan.todo}
        self.left = {c: len(plan.chunks[c]) for c in plan.todo}
        self.skipped: dict[int, list[dict]] = {c: [] for c in range(len(plan.chunks))}
        self.kept: dict[int, tuple[CandidateArrays, dict]] = {}
        self.counts = np.zeros(3, np.int64)
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.futures: list[concurrent.futures.Future] = []

    def add(self, c: int, output: tuple[CandidateArrays, dict] | None, images: int, bad: list[dict]) -> None:
        """Add ``images`` finished images of chunk ``c`` (``output``: their results; ``bad``: the unreadable ones)."""
        if output is not None:
            self.pending[c].append(output)
        self.skipped[c].extend(bad)
        self.left[c] -= images
        if self.left[c] == 0:
            self._close_chunk(c)
            self.stages.lap("writing")

    def _close_chunk(self, c: int) -> None:
        parts, files, skipped = self.pending.pop(c), self.plan.files[c], self.skipped[c]
        if files is None:
            arrays, dets = _finish_chunk(parts, self.layout, None)
            self.counts[:] += (len(arrays), len(dets["score"]), 1)
            self.kept[c] = (arrays, dets)
            return
        if self.pool is None:
            self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cocostat-writer")
        while len(self.futures) >= 2:  # one being written, one waiting: wait for the oldest
            self._collect(self.futures.pop(0))
        self.futures.append(self.pool.submit(_finish_chunk, parts, self.layout, files, skipped))

    def _collect(self, future: concurrent.futures.Future) -> None:
        arrays, dets = future.result()
        self.counts[:] += (len(arrays), len(dets["score"]), 1)

    def close(self) -> None:
        """Wait until every submitted chunk is written (raising the first error)."""
        try:
            while self.futures:
                self._collect(self.futures.pop(0))
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
                self.pool = None


def _skipped_file(files: tuple[Path, Path]) -> Path:
    """Where a chunk's list of images skipped by --skip-bad-images waits until the manifest holds it."""
    return files[0].parent.parent / _PARTIAL / files[0].name.replace(".parquet", ".skipped.json")


def _finish_chunk(
    parts: list, layout: Layout, files: tuple[Path, Path] | None, skipped: Sequence[dict] = ()
) -> tuple[CandidateArrays, dict]:
    """Join a chunk's batches; with ``files``, write its skipped-image list (if any), its candidate part,
    then its detection part (which marks the chunk finished)."""
    blocks = [p[0] for p in parts]
    arrays = concat_arrays(blocks) if blocks else empty_arrays(layout)
    dets = (
        {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
        if parts
        else {c: np.zeros(0, t) for c, t in DETECTION_COLUMNS.items()}
    )
    if files is not None:
        if skipped:
            write_text(_skipped_file(files), json.dumps(list(skipped)))
        write_part(arrays, layout, files[0])
        write_detection_part(dets, files[1])
    return arrays, dets


def _predict_batches(
    inf: _Inference, plan: _Plan, writer: _ChunkWriter, paths: Sequence[str], progress: bool, stages: _Stages
) -> tuple[int, int]:
    """Decode (in worker processes), run and store every batch of the plan.

    Returns:
        (images processed, images whose file size differs from the JSON's width/height).
    """
    opts, ds = inf.settings, inf.dataset
    loader = image_loader(paths, inf.letterbox, plan.batches, opts.workers or 0, inf.device)
    chunk_of = plan.chunk_of()
    n_done = size_mismatch = 0
    rank = _dist_info()[0]
    resumed = sum(len(plan.chunks[c]) for c in plan.done)
    with _progress_bar(progress and rank == 0, len(plan.positions), resumed) as bar:
        stages.lap("setup")
        try:
            for idx, imgs, wh, errors in loader:
                stages.lap("loading")
                bad = _bad_images(errors, ds, paths, opts.skip_bad_images)
                c = chunk_of[int(idx[0]) if len(idx) else errors[0][0]]
                batch = _Batch(idx.numpy(), imgs, wh.numpy()) if len(idx) else None
                output = _run_batch(inf, batch, stages) if batch is not None else None
                if batch is not None:
                    size_mismatch += int(
                        ((batch.wh[:, 0] != ds.width[batch.idx]) | (batch.wh[:, 1] != ds.height[batch.idx])).sum()
                    )
                    n_done += len(batch.idx)
                writer.add(c, output, len(idx) + len(errors), bad)
                bar(len(idx) + len(errors))
        finally:
            writer.close()
        stages.lap("writing")
    return n_done, size_mismatch


# --------------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------------
def _check_files(dataset: Dataset, positions: np.ndarray, paths: Sequence[str], skip: bool) -> None:
    """A DatasetFormatError naming the first missing image file (unless ``skip``: it is skipped later)."""
    missing = [i for i in positions if not os.path.isfile(paths[i])]
    if missing and not skip:
        i = missing[0]
        raise DatasetFormatError(
            f"image {int(dataset.image_id[i])} of {dataset.name}: file {paths[i]} not found "
            f"({len(missing)} of {len(positions)} image file(s) missing; "
            f"--skip-bad-images goes on without them)"
        )


def _level_info(model: DarknetModel, size: int, strides: list[int]) -> list[dict]:
    grids = model.grid_sizes(size)
    return [
        {"level": lv.level, "layer": lv.layer, "mask": list(lv.mask), "stride": s, "grid": g}
        for lv, s, g in zip(model.levels, strides, grids, strict=False)
    ]


def _manifest(
    dataset: Dataset, model: DarknetModel, opts: RunSettings, strides: list[int], layout: Layout, settings: dict
) -> dict:
    """The manifest's fields known before any image is run (counts, skipped images, speed come later)."""
    letterbox = Letterbox(opts.size)
    return {
        "cfg": str(model.cfg.name),
        "weights": model.weights_path,
        "weights_sha256": model.weights_sha256,
        "size": opts.size,
        "letterbox": letterbox.to_dict(),
        "anchors": [list(a) for a in model.cfg.anchors],
        "levels": _level_info(model, opts.size, strides),
        "num_classes": model.num_classes,
        "neighborhood": opts.neighborhood,
        "dataset": {
            "name": dataset.name,
            "annotations": str(dataset.path) if dataset.path else None,
            "image_dir": str(dataset.image_dir) if dataset.image_dir else None,
        },
        "images": dataset.num_images,
        "annotations": dataset.num_annotations,
        "candidates_per_annotation": sum(len(lv.mask) for lv in model.levels) * (2 * opts.neighborhood + 1) ** 2,
        "detections": {
            "conf": opts.conf,
            "nms_iou": opts.nms_iou,
            "max_det": opts.max_det,
            "score": "objectness * class probability",
            "nms": "greedy, per image and class",
        },
        "settings": settings,
        "layout": layout.to_dict(),
    }


def _prepare_folder(out: Path, settings: dict, resume: bool, rank: int, world: int) -> tuple[Predictions | None, bool]:
    """Check a resumed folder, or clear ``out`` for a fresh run.

    Returns:
        (the store when ``out`` already holds a complete run of these settings and ``resume`` is set,
        else None; whether an unfinished run is being resumed).
    """
    partial = out / _PARTIAL
    if resume and (out / "manifest.json").is_file():
        done = read_predictions(out)
        _check_same(done.manifest.get("settings", {}), settings, out)
        return done, True
    if resume and (partial / "run.json").is_file():
        _check_same(json.loads((partial / "run.json").read_text()), settings, out)
    elif resume:
        warnings.warn(
            f"{out}: nothing to resume (no unfinished run found); starting from the first image",
            CocostatWarning,
            stacklevel=3,
        )
        resume = False
    if not resume and rank == 0:
        _clear_folder(out)
        partial.mkdir(parents=True)
        write_text(partial / "run.json", json.dumps(settings, indent=2) + "\n")
    _barrier(world)
    return None, resume


def _finish_store(
    manifest: dict,
    plan: _Plan,
    writer: _ChunkWriter,
    out: Path | None,
    n_done: int,
    device: torch.device,
    opts: RunSettings,
    stages: _Stages,
    t_start: float,
) -> tuple[Predictions, dict, int]:
    """Fill in the manifest's counts, join the ranks' parts (rank 0 writes detections.json, then the
    manifest), and return (the store, the manifest, images processed on all ranks)."""
    rank, world = _dist_info()
    counts, skipped = writer.counts.copy(), writer.skipped
    for c in sorted(plan.done):  # chunks stored by an earlier run: their counts from the parquet footers
        files = plan.files[c]
        assert files is not None
        counts += (_parquet_rows(files[0]), _parquet_rows(files[1]), 1)
        skipped_file = _skipped_file(files)
        skipped[c] = json.loads(skipped_file.read_text()) if skipped_file.is_file() else []
    bad_images = _all_gather_lists([d for c in range(len(plan.chunks)) for d in skipped[c]], world)
    if bad_images:
        warnings.warn(
            f"{len(bad_images)} image(s) of {manifest['dataset']['name']} could not be read and were skipped "
            f"(e.g. {bad_images[0]['file']}: {bad_images[0]['error']}); the manifest lists them",
            CocostatWarning,
            stacklevel=3,
        )
    manifest["skipped_images"] = bad_images
    n_objects, n_dets, n_parts, n_done_all = _all_sum([*counts.tolist(), n_done], world, device)
    manifest["detections"]["count"] = n_dets
    manifest["candidate_rows"] = n_objects * writer.layout.size
    manifest["parts"] = n_parts
    manifest["world_size"] = world
    manifest["device"] = str(device)
    manifest["half"] = bool(opts.half)
    if out is None:
        manifest["speed"] = _speed_now(stages, t_start, n_done, opts)
        kept = writer.kept
        store = in_memory(manifest, [kept[c][0] for c in sorted(kept)], [kept[c][1] for c in sorted(kept)])
        return store, {"format": FORMAT_NAME, "version": FORMAT_VERSION, **manifest}, n_done_all
    _barrier(world)
    if rank == 0:  # every rank's parts are final: join the detections into one JSON, then the manifest
        for sub in (CANDIDATES_DIR, DETECTIONS_DIR):
            (out / sub).mkdir(exist_ok=True)
        det_parts = sorted((out / DETECTIONS_DIR).glob("rank*-chunk*.parquet"))
        write_detections_json((read_detection_part(f) for f in det_parts), out / DETECTIONS_JSON)
        manifest["speed"] = _speed_now(stages, t_start, n_done, opts)
        write_manifest(manifest, out)
        shutil.rmtree(out / _PARTIAL, ignore_errors=True)
    _barrier(world)
    store = read_predictions(out)
    return store, {"format": FORMAT_NAME, "version": FORMAT_VERSION, **manifest}, n_done_all


def _speed_now(stages: _Stages, t_start: float, images: int, opts: RunSettings) -> dict | None:
    """:func:`speed` of this rank as of now (what the manifest records: all but writing the manifest itself)."""
    assert opts.batch_size is not None
    return speed({**stages.seconds, "total": time.perf_counter() - t_start}, images, opts.size, opts.batch_size)


def predict(
    dataset: Dataset,
    model: DarknetModel,
    *,
    size: int = 416,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    conf: float = 0.001,
    nms_iou: float = 0.6,
    max_det: int = 100,
    neighborhood: int = 1,
    workers: int | None = None,
    half: bool = False,
    progress: bool = True,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    draw: int = 0,
    skip_bad_images: bool = False,
    chunk_images: int | None = None,
) -> PredictResult:
    """Run ``model`` over ``dataset``'s images; return (and with ``out_dir``, write) detections and candidates.

    Args:
        dataset: a loaded dataset with an image folder (``dataset.image_dir``).
        model: a :class:`~cocostat.models.DarknetModel` (see :func:`cocostat.models.load_model`); it
            is not modified (inference runs on a batch-norm-fused copy).
        size: S, letterbox side in pixels. The settings ``batch_size``, ``conf``, ``nms_iou``,
            ``max_det``, ``neighborhood``, ``workers``, ``half``, ``draw``, ``skip_bad_images`` and
            ``chunk_images`` are those of :class:`RunSettings` (None: the device's default).
        device: where inference runs; None follows the model's device.
        progress: a progress bar on stderr (rank 0 only).
        out_dir: write the predictions folder there (see :mod:`cocostat.candidates`).
        resume: continue an interrupted run in ``out_dir`` (same settings required), skipping its
            finished chunks; a complete folder is read back instead of recomputed.

    ``skip_bad_images``: image files that are missing or cannot be decoded are counted in a warning
    and listed in the manifest (``skipped_images``: image_id, file, error); their annotations get no
    candidate rows and no detections. Default: the first such file is an error, before any output is
    written when the file is missing. ``draw`` saves rank 0's first images to ``out_dir/draw``.

    Returns:
        a :class:`PredictResult`.

    Raises:
        OptionError: a bad option, ``half`` without CUDA, a class-count mismatch, ``resume`` with
            other settings, ``draw`` without ``out_dir``.
        DatasetFormatError: a missing or undecodable image file.
    """
    t_start = time.perf_counter()
    stages = _Stages()
    device = torch.device(device) if device is not None else model.device
    opts = RunSettings(
        size, batch_size, conf, nms_iou, max_det, neighborhood, workers, half, chunk_images, skip_bad_images, draw
    ).for_device(device)
    strides = opts.check(dataset, model, device)
    if (draw or resume) and out_dir is None:
        raise OptionError("draw and resume need an output folder (out_dir)", param="draw")
    rank, world = _dist_info()
    settings = opts.resume_key(dataset, model, world, Letterbox(opts.size).pad_value)
    layout = make_layout(model.cfg.anchors, [lv.mask for lv in model.levels], strides, opts.size, opts.neighborhood)
    manifest = _manifest(dataset, model, opts, strides, layout, settings)
    out = Path(out_dir) if out_dir is not None else None
    mine = tuple(dataset.image_id[rank::world].tolist())
    # this rank's images; a missing file is an error before anything is written (unless skipped)
    positions = np.arange(dataset.num_images)[rank::world]
    paths = [str(dataset.image_dir / str(f)) if dataset.image_dir else "" for f in dataset.file_name]
    _check_files(dataset, positions, paths, opts.skip_bad_images)

    if out is not None:
        complete, resume = _prepare_folder(out, settings, resume, rank, world)
        if complete is not None:
            res = PredictResult(
                complete, complete.manifest, out, {"total": time.perf_counter() - t_start}, 0, len(mine), rank, world,
                (), mine, 0, opts,
            )  # fmt: skip
            return dataclasses.replace(res, drawn=_maybe_draw(dataset, res, out, draw, rank))

    plan = _Plan.build(positions, opts, out, rank, resume)
    inf = _Inference.build(model, dataset, opts, device, layout)
    writer = _ChunkWriter(plan, layout, stages)
    n_done, size_mismatch = _predict_batches(inf, plan, writer, paths, progress, stages)
    if size_mismatch:
        warnings.warn(
            f"{size_mismatch} image file(s) differ in size from the width/height of {dataset.name}; "
            f"their annotations were scaled by file size / declared size",
            CocostatWarning,
            stacklevel=2,
        )
    store, manifest, n_done_all = _finish_store(manifest, plan, writer, out, n_done, device, opts, stages, t_start)
    stages.lap("writing")
    timings = {**stages.seconds, "total": time.perf_counter() - t_start}
    res = PredictResult(
        store, manifest, out, timings, n_done, len(positions) - n_done, rank, world, (), mine, n_done_all, opts
    )
    if out is not None and draw:
        res = dataclasses.replace(res, drawn=_maybe_draw(dataset, res, out, draw, rank))
    return res


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _clear_folder(out: Path) -> None:
    """Remove every output of an earlier run in ``out`` (either format version), before a fresh one."""
    (out / "manifest.json").unlink(missing_ok=True)
    (out / DETECTIONS_JSON).unlink(missing_ok=True)
    for f in [*out.glob("candidates*.parquet"), *out.glob("detections*.json")]:
        f.unlink()
    for sub in (CANDIDATES_DIR, DETECTIONS_DIR, _PARTIAL):
        shutil.rmtree(out / sub, ignore_errors=True)


def _check_same(old: dict, new: dict, out: Path) -> None:
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in diff[:4])
        raise OptionError(
            f"{out}: cannot resume, the run there used other settings ({shown}); run without --resume to start over"
        )


class _progress_bar:
    """A rich progress bar on stderr, or a no-op."""

    def __init__(self, enabled: bool, total: int, completed: int):
        self.enabled, self.total, self.completed = enabled, total, completed

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("predict"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("images"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.progress.__enter__()
        task = self.progress.add_task("predict", total=self.total, completed=self.completed)
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------
def _maybe_draw(dataset: Dataset, res: PredictResult, out: Path, k: int, rank: int) -> tuple[Path, ...]:
    """Draw rank 0's first ``k`` images; only their detections are turned into dicts."""
    if not k or rank != 0:
        return ()
    ids = dataset.image_id[:: max(1, _dist_info()[1])][:k]
    detections = [
        d
        for cols in res.predictions.iter_detections(rank=0 if res.world_size > 1 else None)
        for d in detection_records({c: v[np.isin(cols["image_id"], ids)] for c, v in cols.items()})
    ]
    return tuple(draw_detections(dataset, detections, ids, out / "draw", min_score=DRAW_SCORE))
