"""``topk-iou``: each object's k slots whose predictions have the highest IoU with it.

Definition (prediction-aware, restricted to the stored neighbourhood): among the object's stored
slots with a finite prediction, the ``topk`` (``--topk``, default 5) of highest prediction IoU
(the ``--iou`` kind: IoU, GIoU, DIoU or CIoU); ties go to the lower flat slot index. No threshold
and no conflict resolution.

Source: the prediction-IoU top-k matching our users train with; no single reference implementation.

Region: the whole grid (any slot's prediction could be among the best); the stored neighbourhood
is what can be looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from cocostat.assigners._protocol import Assigner, Slots, check_count, topk_mask


@dataclass(frozen=True)
class TopkIou(Assigner):
    """The k stored slots of highest prediction IoU."""

    name = "topk-iou"
    summary = "each object's k stored slots of highest prediction IoU (--topk, --iou)"
    needs_predictions = True

    topk: int = 5

    def __post_init__(self):
        check_count(self.topk, "topk")

    def positives(self, slots: Slots) -> Tensor:
        p = self._need_predictions(slots)
        return topk_mask(p.q, self.topk, slots.valid(), slots.order)


ASSIGNER = TopkIou
