"""``darknet``: Darknet's ``yolo_layer`` (pjreddie/darknet ``src/yolo_layer.c``, ``forward_yolo_layer``).

Definition: the single anchor (over all levels) with the highest wh-IoU with the object is a
positive at the cell holding the object's centre. Ties go to the first anchor in cfg order, as
Darknet's ``if (iou > best_iou)`` loop starting from ``best_iou = 0`` does; an object whose best
wh-IoU is 0 (a zero-size box) gets no positive. No options.

Source: pjreddie/darknet ``src/yolo_layer.c`` (``forward_yolo_layer``: ``best_n`` over all
``total`` anchors, kept when it is in this layer's ``mask``).

Reach: 0 (the centre cell only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cocostat.assigners._protocol import Assigner, Slots


@dataclass(frozen=True)
class Darknet(Assigner):
    """The single best anchor by wh-IoU (first in cfg order among ties), at the centre cell."""

    name = "darknet"
    summary = "Darknet yolo_layer: the single best anchor by wh-IoU, centre cell"

    def positives(self, slots: Slots) -> Tensor:
        A = slots.grid.num_anchors
        per_anchor = torch.zeros(slots.num_objects, A, dtype=torch.float64, device=slots.device)  # (G, A)
        per_anchor[:, slots.anchor] = slots.wh_iou  # every column of an anchor has the same wh-IoU
        best, arg = per_anchor.max(dim=1)  # (G,); max returns the first index among ties
        return (slots.anchor[None, :] == arg[:, None]) & (best > 0)[:, None] & slots.is_centre[None, :] & slots.valid()


ASSIGNER = Darknet
