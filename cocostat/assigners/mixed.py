"""``mixed``: the split-match family: anchor shape and prediction quality mixed by ``alpha``.

Definition (prediction-aware): at the cell holding the object's centre, every anchor whose
matching quality ``alpha x wh-IoU(object, anchor) + (1 - alpha) x IoU(prediction, object)`` exceeds
``iou_t`` (strictly; ``--alpha``, default 0.5, ``--iou-t``, default 0.225; the prediction IoU is
the ``--iou`` kind) and whose prediction is finite. ``alpha = 1`` is the ``yolov3`` assigner on the
stored slots, ``alpha = 0`` thresholds the prediction IoU alone. Users sweep alpha over 0, 0.1,
0.3, 0.5, 0.7 and 1.0. No conflict resolution.

Source: the "split-match" experiments our users run; no single reference implementation.

Region: the centre cell's anchors, always stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cocostat.assigners._protocol import Assigner, Slots, check_unit


@dataclass(frozen=True)
class Mixed(Assigner):
    """alpha x wh-IoU + (1 - alpha) x prediction IoU > iou_t, centre cell."""

    name = "mixed"
    summary = "alpha x anchor wh-IoU + (1 - alpha) x prediction IoU > iou_t, centre cell (--alpha)"
    needs_predictions = True

    alpha: float = 0.5
    iou_t: float = 0.225

    def __post_init__(self):
        check_unit(self.alpha, "alpha")
        check_unit(self.iou_t, "iou_t", closed=False)

    def quality(self, slots: Slots) -> Tensor:
        """(G, N) float64: the mixed matching quality (-inf where there is no finite prediction)."""
        q = self._need_predictions(slots).q.to(torch.float64)
        mix = self.alpha * slots.wh_iou + (1.0 - self.alpha) * torch.where(torch.isfinite(q), q, 0.0)
        return torch.where(slots.valid(), mix, -torch.inf)

    def region(self, slots: Slots) -> Tensor:
        return slots.is_centre[None, :] & slots.inside

    def region_size(self, boxes: Tensor, grid) -> Tensor:
        return torch.full((boxes.shape[0],), grid.num_anchors, dtype=torch.int64, device=boxes.device)

    def positives(self, slots: Slots) -> Tensor:
        self._need_predictions(slots)
        return (self.quality(slots) > self.iou_t) & slots.is_centre[None, :] & slots.valid()


ASSIGNER = Mixed
