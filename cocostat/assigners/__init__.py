"""Label assigners: one protocol, one registry, one module per assigner.

A label assigner decides which *slots* must predict each object. A slot is one anchor at one cell
of its output level: ``(level l, cell x, cell y, anchor a)``. Every assigner is a small frozen
dataclass (its options are its fields, its definition and source are in its module docstring)
with one method::

    positives(slots: Slots) -> Tensor  # (G, N) bool: slot n of object g is a positive

:class:`Slots` is the one layout every assigner reads: G objects, N slots per object, in the
column order (anchor, dy, dx) of the predictions' candidate table. It serves both inputs:

- the *whole grid* (:func:`grid_slots`): for box-only assigners, every slot within
  ``assigner.reach(grid)`` cells of the object's centre cell at every level; ``reach`` is chosen
  so that no slot outside it can be a positive (each module says why);
- the *candidate layout* (:func:`candidate_slots`): the N slots stored per object by
  ``cocostat predict`` (its neighbourhood), with the decoded predictions and scores, for the
  prediction-aware assigners.

Registry: the assigner names are the module file names of this package (``topk_anchor.py`` is
``topk-anchor``), found without importing them, so the CLI reads its choices without paying
torch's import; :func:`load` imports one module when it is used. Modules whose name starts with
``_`` are not assigners. **Adding an assigner is one new module here plus its test**: a frozen
dataclass subclassing :class:`Assigner` with ``name``, ``summary``, ``needs_predictions`` and
``positives``, exported as the module's ``ASSIGNER``.

Shapes: G objects, N slots per object, A anchors (cfg order), L levels (``[yolo]`` layers in cfg
order). Boxes are xyxy in network-input pixels (after letterboxing).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import fields
from typing import TYPE_CHECKING

from cocostat.errors import OptionError

if TYPE_CHECKING:  # the names of _LAZY as the type checker sees them; at run time __getattr__ imports them
    from cocostat.assigners._protocol import (
        Assigner,
        Slots,
        candidate_slots,
        grid_slots,
        matched_anchors,
        positive_keys,
        resolve_conflicts,
        slot_count,
        topk_mask,
    )

#: every assigner, in the registry's order (module file names, ``_`` -> ``-``, sorted).
NAMES: tuple[str, ...] = tuple(
    sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
)

__all__ = [
    "NAMES",
    "Assigner",
    "Slots",
    "candidate_slots",
    "check_name",
    "create",
    "grid_slots",
    "load",
    "matched_anchors",
    "positive_keys",
    "resolve_conflicts",
    "slot_count",
    "topk_mask",
]

#: what :mod:`cocostat.assigners._protocol` exports here, imported on first use (it imports torch).
_LAZY = tuple(name for name in __all__ if name not in {"NAMES", "check_name", "create", "load"})


def __getattr__(name: str):
    if name in _LAZY:
        from cocostat.assigners import _protocol

        return getattr(_protocol, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_name(name: str, option: str = "assigner") -> str:
    """``name`` if it is a registered assigner, else an :class:`OptionError` naming the choices."""
    if name not in NAMES:
        raise OptionError(f"{option} must be one of {', '.join(NAMES)}, got {name!r}", param=option)
    return name


def load(name: str) -> type[Assigner]:
    """The :class:`Assigner` subclass registered as ``name`` (imports its module)."""
    module = importlib.import_module(f"{__name__}.{check_name(name).replace('-', '_')}")
    return module.ASSIGNER


def create(name: str | Assigner, **options: object) -> Assigner:
    """An assigner configured from the command line's shared options.

    The commands pass every option they have (``iou_t``, ``ratio_t``, ``topk``, ``alpha``); each
    assigner takes those of its fields it lists in ``cli_options`` (default: all of its fields)
    and ignores the rest, so ``--topk`` sets topk-anchor's k but not atss's. Build the class
    (``load(name)(...)``) to set any field. ``name`` may already be an assigner (returned as is).
    """
    if not isinstance(name, str):
        if hasattr(name, "positives"):
            return name
        raise OptionError(f"an assigner must be a name ({', '.join(NAMES)}), got {type(name).__name__}")
    cls = load(name)
    own = {f.name for f in fields(cls)}
    if cls.cli_options is not None:
        own &= set(cls.cli_options)
    return cls(**{k: v for k, v in options.items() if k in own and v is not None})
