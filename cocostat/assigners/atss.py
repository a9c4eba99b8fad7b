"""``atss``: Adaptive Training Sample Selection (Zhang et al., CVPR 2020), as mmdetection's ``ATSSAssigner``.

Definition (box-only, over the whole grid):

1. Each slot (level l, cell (i, j), anchor a) is the box of the anchor's size centred at the cell
   centre ``((j + 0.5) s_l, (i + 0.5) s_l)``, input pixels.
2. Per object and level, the ``topk`` slots whose centres are nearest the object's centre (squared
   L2 distance, input pixels; ties to the lower flat index in (row, column, anchor) order) are its
   candidates.
3. Over the union of those candidates, ``threshold = mean + std`` of their IoUs with the object
   (``std`` unbiased, n - 1, as torch's ``std``); a single candidate gives no threshold (NaN) and
   no positive.
4. Positive where ``IoU >= threshold - 1e-12`` (the tolerance keeps candidates of equal IoU, std 0,
   positive as in exact arithmetic, instead of leaving it to rounding) and the slot's centre lies
   inside the object by more than ``0.01`` px on every side (mmdetection's ``is_in_gts ... > 0.01``).
5. A slot positive for several objects of one image goes to the object with the highest IoU (ties:
   the first in annotation order), as ``overlaps_inf.max(dim=1)`` does.

Source: open-mmlab/mmdetection ``mmdet/models/task_modules/assigners/atss_assigner.py``
(``ATSSAssigner(topk=9)`` in the ATSS configs).

Reach: with A_l anchors per cell, the k nearest slots of a level lie in the ``ceil(k / A_l)``
nearest cells; a cell ``ceil(k / A_l)`` or more columns (or rows) away from the centre cell has at
least that many cells of its row strictly nearer, so the window of radius ``ceil(k / min A_l) - 1``
holds every candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cocostat.assigners._protocol import Assigner, Slots, check_count, resolve_conflicts, topk_mask

#: IoU >= threshold - TOLERANCE counts as reaching the threshold.
TOLERANCE = 1e-12


@dataclass(frozen=True)
class ATSS(Assigner):
    """mean + std of the candidates' IoUs, candidates the topk nearest slots per level."""

    name = "atss"
    cli_options = ()  # its defaults are its source's; --topk and --alpha belong to others
    summary = "ATSS (mmdetection ATSSAssigner): IoU >= mean + std over the topk nearest slots per level"

    topk: int = 9
    eps: float = 0.01

    def __post_init__(self):
        check_count(self.topk, "topk")

    def reach(self, grid) -> int:
        per_level = np.bincount(grid.level, minlength=grid.num_levels)
        return max(1, math.ceil(self.topk / max(int(per_level.min()), 1))) - 1

    def candidates(self, slots: Slots) -> Tensor:
        """(G, N) bool: the topk nearest slots of each level."""
        d2 = ((slots.centre - slots.object_centre[:, None, :]) ** 2).sum(-1)  # (G, N), px^2
        cand = torch.zeros_like(slots.inside)
        for lv in range(slots.grid.num_levels):  # a handful of levels, each vectorised over objects
            allowed = slots.inside & (slots.level == lv)[None, :]
            cand |= topk_mask(-d2, self.topk, allowed, slots.order)
        return cand

    def positives(self, slots: Slots) -> Tensor:
        cand = self.candidates(slots)  # (G, N)
        iou = slots.anchor_iou  # (G, N) float64
        n = cand.sum(1, dtype=torch.float64)  # (G,)
        x = torch.where(cand, iou, torch.zeros_like(iou))
        mean = x.sum(1) / n
        var = torch.where(cand, (iou - mean[:, None]) ** 2, torch.zeros_like(iou)).sum(1) / (n - 1)
        thr = mean + var.sqrt()  # (G,); NaN with fewer than two candidates
        pos = cand & (iou >= (thr - TOLERANCE)[:, None]) & slots.centre_inside(self.eps) & slots.valid()
        return resolve_conflicts(slots, pos, iou, higher=True)


ASSIGNER = ATSS
