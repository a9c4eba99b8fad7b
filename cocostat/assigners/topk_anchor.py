"""``topk-anchor``: each object's k slots of highest anchor-box IoU (the top-k anchor matching experiments).

Definition (box-only, over the whole grid): every slot is the box of its anchor's size centred at
its cell centre (as in ``atss``); an object's positives are its ``topk`` slots (``--topk``,
default 5) of highest IoU with the object, among slots of IoU > 0. IoUs are rounded to 1e-12
before ranking, so that floating-point noise does not decide between slots of equal IoU (a small
anchor inside a huge object has the same IoU at many cells); ties go to the slot whose centre is
nearer the object's centre, then to the lower flat index. No conflict resolution between objects
(each object keeps its k slots).

Source: the "top-k anchors by IoU" matching our users train with (the top-5 / top-10
experiments); no single reference implementation.

Reach: for one anchor, moving its box away from the object along a row or column never raises
the IoU; a cell k or more columns (or rows) from the centre cell has k cells of its row (or
column) at least as good and strictly nearer, so the window of radius ``k - 1`` holds the top k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cocostat.assigners._protocol import Assigner, Slots, check_count, topk_mask

#: IoUs are compared after rounding to this resolution.
RESOLUTION = 1e-12


def rounded(iou: Tensor) -> Tensor:
    """``iou`` rounded to :data:`RESOLUTION` (half to even), as a float64 count of resolutions."""
    return torch.round(iou.to(torch.float64) / RESOLUTION)


@dataclass(frozen=True)
class TopkAnchor(Assigner):
    """The k slots of highest anchor-box IoU (IoU > 0), whole grid."""

    name = "topk-anchor"
    summary = "each object's k slots of highest anchor-box IoU (--topk, default 5)"

    topk: int = 5

    def __post_init__(self):
        check_count(self.topk, "topk")

    def reach(self, grid) -> int:
        return self.topk - 1

    def positives(self, slots: Slots) -> Tensor:
        iou = slots.anchor_iou  # (G, N)
        d2 = ((slots.centre - slots.object_centre[:, None, :]) ** 2).sum(-1)  # (G, N)
        return topk_mask(rounded(iou), self.topk, slots.valid() & (iou > 0), slots.order, then=d2)


ASSIGNER = TopkAnchor
