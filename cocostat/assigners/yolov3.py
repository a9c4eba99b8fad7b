"""``yolov3``: ultralytics YOLOv3 (2019-2020) ``build_targets``.

Definition: every anchor of every level whose wh-IoU with the object exceeds ``iou_t``
(strictly, ``wh_iou > iou_t``) is a positive at the cell holding the object's centre; nothing
else. wh-IoU compares sizes only (both boxes centred), so pixel sizes give what the trainer
computes in grid units. Conflicts (one slot positive for two objects) are kept, as the trainer
keeps both targets.

Source: ultralytics/yolov3 ``utils/utils.py`` ``build_targets`` with ``use_all_anchors = True``
and ``reject = True`` (``j = iou.view(-1) > model.hyp['iou_t']``), default ``iou_t = 0.225``
(``hyp['iou_t']`` of train.py in 2019-2020).

Reach: 0 (the centre cell only).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from cocostat.assigners._protocol import Assigner, Slots, check_unit


@dataclass(frozen=True)
class YoloV3(Assigner):
    """Every anchor with ``wh_iou > iou_t``, at the centre cell."""

    name = "yolov3"
    summary = "ultralytics YOLOv3 2019-2020: every anchor with wh-IoU > iou_t, centre cell"

    iou_t: float = 0.225

    def __post_init__(self):
        check_unit(self.iou_t, "iou_t", closed=False)

    def positives(self, slots: Slots) -> Tensor:
        return (slots.wh_iou > self.iou_t) & slots.is_centre[None, :] & slots.valid()


ASSIGNER = YoloV3
