"""``best-pred``: the single slot whose prediction has the highest IoU with the object.

Definition (prediction-aware, restricted to the stored neighbourhood): ``topk-iou`` with k = 1:
among the object's stored slots with a finite prediction, the one of highest prediction IoU (the
``--iou`` kind); ties to the lower flat slot index. An object without a finite stored prediction
gets none. No options.

Source: the "best prediction" matching of the users' prediction-aware experiments (``topk-iou``
with k = 1); no single reference implementation.

Region: the whole grid; the stored neighbourhood is what can be looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from cocostat.assigners._protocol import Assigner, Slots, topk_mask


@dataclass(frozen=True)
class BestPred(Assigner):
    """The single best-predicting stored slot."""

    name = "best-pred"
    summary = "the single stored slot of highest prediction IoU (--iou)"
    needs_predictions = True

    def positives(self, slots: Slots) -> Tensor:
        p = self._need_predictions(slots)
        return topk_mask(p.q, 1, slots.valid(), slots.order)


ASSIGNER = BestPred
