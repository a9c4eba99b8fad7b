"""Errors and data-quality warnings raised at cocostat's public boundary.

Every error a user can cause by giving bad input is a :class:`CocostatError`. The CLI turns it into
one line on stderr and exit status 2 (``--debug`` shows the traceback instead). Messages say what
was expected, what arrived, and where.

Data-quality findings that do not stop an analysis (zero-size boxes, crowd boxes skipped, ...) are
emitted as :class:`CocostatWarning` with :func:`warnings.warn`; the CLI prints them on stderr.
"""

from __future__ import annotations


class CocostatError(Exception):
    """Base class of every error caused by bad input; the CLI exits with status 2."""


class DatasetNotFoundError(CocostatError):
    """No annotation file could be found for the dataset the user named."""


class DatasetFormatError(CocostatError):
    """A COCO JSON file is malformed: invalid JSON, missing keys, bad ids or boxes."""


class ModelFormatError(CocostatError):
    """A Darknet cfg, weights file or checkpoint is malformed or unsupported."""


class OptionError(CocostatError):
    """An option value is out of range or inconsistent with another option or with the data.

    ``param`` is the Python parameter the message starts with (``OptionError("iou_t must lie in (0, 1),
    got 2.0", param="iou_t")``): called from Python, the message names the parameter; the CLI's error
    boundary (``cocostat.cli.CocostatGroup``) spells it as the running command's flag (``--iou-t``).
    """

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param


class TooFewBoxesError(OptionError):
    """Fewer distinct box sizes than the anchors asked for: the data cannot give that many clusters
    (``cocostat report`` skips kmeans on it instead of failing)."""


class CocostatWarning(UserWarning):
    """A data-quality finding that does not stop the analysis (shown on stderr by the CLI)."""


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int, or an OptionError naming ``name`` when it is not an integer >= ``minimum``.

    ``name`` is the Python parameter (``"k"``); the CLI shows its flag (``-k/--num-anchors`` -> ``--num-anchors``).

    bool is refused although it is an int subclass (``--k True`` is a mistake, not 1).
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise OptionError(f"{name} must be an integer >= {minimum}, got {value!r}", param=name)
    return int(value)
