"""cocostat: COCO dataset statistics and YOLO anchor analytics.

Dimension letters used in every docstring and shape comment:

====  =====================================================
G     ground-truth boxes (annotations)
P     predictions
A     anchors
L     output levels of a YOLO model
K     clusters (k-means anchors)
C     classes
I     images
====  =====================================================

``category_id`` is always COCO's sparse category id; ``class_idx`` is the contiguous index
``0..C-1`` in the order of the ``categories`` list sorted by id. The two are never mixed silently.

Boxes are ``float`` arrays in pixels; their format is named in every signature: ``xywh`` (COCO:
top-left corner, width, height), ``xyxy`` (corners) or ``cxcywh`` (centre, width, height).

Results are frozen dataclasses with ``to_dict()`` and ``to_frame()``. Those that hold arrays, frames or
tensors are declared ``eq=False``: they compare by identity (``==`` on numpy or pandas fields would
raise "truth value is ambiguous"); compare two results through ``to_dict()``.

One name per concept: ``image_index`` is the row of an object's (or a detection's) image in the image
arrays (never the COCO ``image_id``); identifiers spell ``neighbor``/``neighborhood`` as the
``--neighborhood`` option and the predictions manifest do (``objects_best_from_neighbor``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from cocostat.errors import CocostatError, CocostatWarning

__all__ = ["CocostatError", "CocostatWarning", "__version__", "info", "load_dataset"]


def __getattr__(name: str):
    """``cocostat.info(dataset)`` and ``cocostat.load_dataset(...)``, imported on first use.

    Lazy, so ``import cocostat`` (and the CLI's start-up) does not pay for numpy and pandas.
    """
    if name == "info":
        from cocostat.summary import info

        return info
    if name == "load_dataset":
        from cocostat.data import load_dataset

        return load_dataset
    raise AttributeError(f"module 'cocostat' has no attribute {name!r}")
