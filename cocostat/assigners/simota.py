"""``simota``: YOLOX's SimOTA (Ge et al., "YOLOX: Exceeding YOLO Series in 2021").

Definition (prediction-aware, restricted to the stored neighbourhood), per object:

1. Candidates: stored slots with a finite prediction whose centre lies strictly inside the object
   (``in_box``) or strictly inside the square of half-side ``center_radius`` strides (2.5) around
   the object's centre (``in_centre``).
2. Cost of a candidate: ``-log(sqrt(obj x p_cls))`` (the binary cross-entropy of the object's
   class against the score YOLOX uses, ``sqrt(sigmoid(cls) x sigmoid(obj))``, log clamped at -100
   as torch's BCE does) ``+ iou_weight (3) x -log(IoU + 1e-8)`` ``+ penalty (1e5)`` unless the slot
   is in both regions. IoU is plain IoU (YOLOX's ``bboxes_iou``), whatever ``--iou``.
3. Dynamic k: ``max(1, floor(sum of the object's top-10 candidate IoUs))`` (fewer when it has
   fewer candidates).
4. Positives: its k candidates of lowest cost (ties to the lower flat slot index).
5. A slot positive for several objects of one image goes to the one of lowest cost (ties: the
   first in annotation order).

Source: Megvii-BaseDetection/YOLOX ``yolox/models/yolo_head.py`` (``get_in_boxes_info`` with
``center_radius = 2.5``, ``get_assignments``, ``dynamic_k_matching``; release 0.1-0.3). Two
decisions where a stored neighbourhood differs from YOLOX's full head: the class cost keeps only
the object's class term (the predictions folder stores that class's probability, not every
class's), and candidates are the object's own region (YOLOX takes the union of every object's
regions of the image, where slots outside the object's own region cost the 1e5 penalty anyway).

Region: in_box or in_centre over the whole grid; slots of it outside the stored neighbourhood
are counted, not seen.
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
class SimOTA(Assigner):
    """Dynamic-k lowest-cost candidates inside the object or near its centre (YOLOX)."""

    name = "simota"
    cli_options = ()  # its defaults are its source's; --topk and --alpha belong to others
    summary = "YOLOX SimOTA: dynamic-k lowest cls + 3 x -log IoU cost, centre radius 2.5 strides"
    needs_predictions = True

    center_radius: float = 2.5
    candidate_topk: int = 10
    iou_weight: float = 3.0
    penalty: float = 1e5

    def __post_init__(self):
        if not self.center_radius > 0:
            raise OptionError(f"simota center_radius must be > 0, got {self.center_radius}")
        check_count(self.candidate_topk, "simota candidate_topk")

    def _centre_square(self, boxes: Tensor, grid) -> Tensor:
        """(G, L, 4) float64: the square of half-side center_radius x stride around each centre."""
        c = 0.5 * (boxes[:, :2] + boxes[:, 2:])  # (G, 2)
        r = self.center_radius * torch.as_tensor(grid.strides, dtype=torch.float64, device=boxes.device)  # (L,)
        return torch.cat([c[:, None, :] - r[None, :, None], c[:, None, :] + r[None, :, None]], dim=-1)

    def in_regions(self, slots: Slots) -> tuple[Tensor, Tensor]:
        """(in_box, in_centre), each (G, N) bool."""
        in_box = slots.centre_inside(0.0)
        sq = self._centre_square(slots.boxes, slots.grid)[:, slots.level, :]  # (G, N, 4)
        c = slots.centre
        in_centre = ((c - sq[..., :2]).amin(-1) > 0) & ((sq[..., 2:] - c).amin(-1) > 0)
        return in_box, in_centre

    def region(self, slots: Slots) -> Tensor:
        in_box, in_centre = self.in_regions(slots)
        return (in_box | in_centre) & slots.inside

    def region_size(self, boxes: Tensor, grid) -> Tensor:
        b = boxes.to(torch.float64)
        sq = self._centre_square(b, grid)  # (G, L, 4)
        both = torch.cat([torch.maximum(sq[..., :2], b[:, None, :2]), torch.minimum(sq[..., 2:], b[:, None, 2:])], -1)
        return count_centres_in(b, grid) + count_centres_in(sq, grid) - count_centres_in(both, grid)

    def cost(self, slots: Slots) -> Tensor:
        """(G, N) float64: the SimOTA cost of every slot (inf where there is no finite prediction)."""
        pred = self._need_predictions(slots)
        in_box, in_centre = self.in_regions(slots)
        p = (pred.obj.to(torch.float64) * pred.cls_prob.to(torch.float64)).clamp(min=0).sqrt()
        cls_cost = -torch.log(p).clamp(min=-100.0)
        iou = pred.iou.to(torch.float64).clamp(min=0)
        cost = cls_cost + self.iou_weight * -torch.log(iou + 1e-8) + self.penalty * ~(in_box & in_centre)
        return torch.where(slots.valid(), cost, torch.inf)

    def positives(self, slots: Slots) -> Tensor:
        pred = self._need_predictions(slots)
        cand = self.region(slots) & slots.valid()  # (G, N)
        iou = torch.where(cand, pred.iou.to(torch.float64).clamp(min=0), 0.0)
        top = topk_mask(iou, self.candidate_topk, cand, slots.order)  # (G, N)
        k = torch.where(top, iou, 0.0).sum(1).floor().long().clamp(min=1)  # (G,), dynamic k
        cost = self.cost(slots)
        pos = topk_mask(-cost, k, cand, slots.order)
        return resolve_conflicts(slots, pos, cost, higher=False)


ASSIGNER = SimOTA
