"""``tal``: task-aligned assignment (TOOD, Feng et al., ICCV 2021), as YOLOv8 uses it.

Definition (prediction-aware, restricted to the stored neighbourhood), per object:

1. Candidates: stored slots with a finite prediction whose centre lies inside the object by more
   than ``eps`` (1e-9) px on every side (ultralytics' ``select_candidates_in_gts``).
2. Alignment ``t = s^alpha x u^beta`` with ``s`` the predicted score of the object's class and
   ``u`` the prediction's IoU with the object (plain IoU, clamped at 0); ``alpha = 0.5``,
   ``beta = 6.0``. A YOLOv3 head has an objectness, so ``s = objectness x class probability`` (the
   class-aware score); YOLOv8's head has class scores only.
3. Positives: the ``topk`` (10) candidates of highest alignment (ties to the lower flat slot index).
4. A slot positive for several objects of one image goes to the one of highest IoU (ties: the
   first in annotation order), as ``select_highest_overlaps`` does.

Source and defaults: ultralytics ``ultralytics/utils/loss.py`` ``v8DetectionLoss`` builds
``TaskAlignedAssigner(topk=10, num_classes=nc, alpha=0.5, beta=6.0)`` (the class's own defaults in
``ultralytics/utils/tal.py`` are ``topk=13, alpha=1.0, beta=6.0, eps=1e-9``; TOOD's paper uses
alpha 1, beta 6). One deliberate difference: ultralytics scores ``u`` with CIoU clamped at 0, the
issue's definition (and this assigner) with plain IoU.

Region: slots whose centre lies inside the object, over the whole grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cocostat.assigners._protocol import (
    Assigner,
    Slots,
    check_count,
    count_centres_in,
    resolve_conflicts,
    topk_mask,
)
from cocostat.errors import OptionError


@dataclass(frozen=True)
class TAL(Assigner):
    """The topk slots inside the object of highest s^alpha x u^beta (YOLOv8)."""

    name = "tal"
    cli_options = ()  # its defaults are its source's; --topk and --alpha belong to others
    summary = "task-aligned (YOLOv8 TaskAlignedAssigner): top 10 of score^0.5 x IoU^6 inside the object"
    needs_predictions = True

    topk: int = 10
    alpha: float = 0.5
    beta: float = 6.0
    eps: float = 1e-9

    def __post_init__(self):
        check_count(self.topk, "tal topk")
        if not (self.alpha >= 0 and self.beta >= 0):
            raise OptionError(f"tal alpha and beta must be >= 0, got {self.alpha}, {self.beta}")

    def region(self, slots: Slots) -> Tensor:
        return slots.centre_inside(self.eps) & slots.inside

    def region_size(self, boxes: Tensor, grid) -> Tensor:
        b = boxes.to(torch.float64)
        return count_centres_in(torch.cat([b[:, :2] + self.eps, b[:, 2:] - self.eps], dim=1), grid)

    def alignment(self, slots: Slots) -> Tensor:
        """(G, N) float64: ``s^alpha x u^beta`` (0 where there is no finite prediction)."""
        p = self._need_predictions(slots)
        s = p.score.to(torch.float64).clamp(min=0)
        u = p.iou.to(torch.float64).clamp(min=0)
        return torch.where(slots.valid(), s.pow(self.alpha) * u.pow(self.beta), 0.0)

    def positives(self, slots: Slots) -> Tensor:
        p = self._need_predictions(slots)
        cand = self.region(slots) & slots.valid()
        pos = topk_mask(self.alignment(slots), self.topk, cand, slots.order)
        return resolve_conflicts(slots, pos, p.iou, higher=True)


ASSIGNER = TAL
