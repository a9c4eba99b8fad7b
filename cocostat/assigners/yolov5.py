"""``yolov5``: ultralytics YOLOv5 ``build_targets`` (``utils/loss.py``, ``ComputeLoss``).

Definition: every anchor whose width and height ratios to the object are both within
``ratio_t`` (``max(r, 1/r) < ratio_t`` for ``r = w / w_a`` and ``r = h / h_a``; YOLOv5's
``anchor_t``, default 4.0; computed as side ratio ``> 1 / ratio_t`` with
:func:`cocostat.boxes.pairwise_side_ratio`) is a positive at the cell holding the object's centre
and at the (usually two) neighbour cells nearest the centre: the horizontal one to the left when
``x mod 1 < 0.5`` and ``x > 1``, to the right when ``(W - x) mod 1 < 0.5`` and ``W - x > 1``, the
vertical one likewise (``x`` the centre in grid cells of that level, ``W`` the grid width; a
centre exactly on a cell border gets both sides, as in YOLOv5). A zero-size side has side ratio 0:
no positive. Conflicts are kept, as YOLOv5 keeps both targets.

Source: ultralytics/yolov5 ``utils/loss.py`` ``ComputeLoss.build_targets`` (``anchor_t`` of
``data/hyps/hyp.scratch-low.yaml``, 4.0; ``g = 0.5`` bias with the ``j, k, l, m`` offsets).

Reach: 1 (the centre cell and its four edge neighbours).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cocostat.assigners._protocol import Assigner, Slots
from cocostat.boxes import pairwise_side_ratio
from cocostat.errors import OptionError


def neighbour_cells(boxes: Tensor, grid) -> Tensor:
    """(G, L, 4) bool: YOLOv5's extra cells at each level, in the order of its ``j, k, l, m`` masks.

    left ``(dx, dy) = (-1, 0)``, above ``(0, -1)``, right ``(+1, 0)``, below ``(0, +1)``.
    """
    strides = torch.as_tensor(grid.strides, dtype=torch.float64, device=boxes.device)  # (L,)
    side = torch.as_tensor(grid.grid, dtype=torch.float64, device=boxes.device)  # (L,)
    b = boxes.to(torch.float64)
    gxy = (0.5 * (b[:, :2] + b[:, 2:]))[:, None, :] / strides[None, :, None]  # (G, L, 2), grid units
    gxi = side[None, :, None] - gxy  # (G, L, 2), distance to the far edge
    low = (torch.remainder(gxy, 1.0) < 0.5) & (gxy > 1.0)  # the cell before
    high = (torch.remainder(gxi, 1.0) < 0.5) & (gxi > 1.0)  # the cell after
    return torch.cat([low, high], dim=2)


def ratio_metric(slots: Slots) -> Tensor:
    """(G, N) float64 in [0, 1]: the side ratio (:mod:`cocostat.boxes`) of object and column anchor.

    ``min(w/w_a, w_a/w, h/h_a, h_a/h)``; YOLOv5's ``max(r, 1/r) < ratio_t`` is ``side ratio > 1 / ratio_t``.
    """
    per_anchor = pairwise_side_ratio(
        slots.object_wh, torch.as_tensor(slots.grid.wh, dtype=torch.float64, device=slots.device)
    )  # (G, A)
    return per_anchor[:, slots.anchor]


@dataclass(frozen=True)
class YoloV5(Assigner):
    """Anchors with both side ratios < ratio_t, at the centre cell and its two nearest neighbours."""

    name = "yolov5"
    summary = "ultralytics YOLOv5: anchors with w and h ratios < ratio_t, centre + 2 neighbour cells"

    ratio_t: float = 4.0

    def __post_init__(self):
        if not (isinstance(self.ratio_t, (int, float)) and self.ratio_t > 1.0):
            raise OptionError(f"ratio_t must be greater than 1, got {self.ratio_t}", param="ratio_t")

    def reach(self, grid) -> int:
        return 1

    def positives(self, slots: Slots) -> Tensor:
        nb = neighbour_cells(slots.boxes, slots.grid)[:, slots.level, :]  # (G, N, 4)
        dx, dy = slots.dx, slots.dy
        side = torch.stack(
            [(dx == -1) & (dy == 0), (dx == 0) & (dy == -1), (dx == 1) & (dy == 0), (dx == 0) & (dy == 1)], dim=1
        )  # (N, 4)
        near = (nb & side[None]).any(-1)  # (G, N)
        cell = slots.is_centre[None, :] | near
        return (ratio_metric(slots) > 1.0 / self.ratio_t) & cell & slots.valid()


ASSIGNER = YoloV5
