"""Result dataclasses compare by identity (eq=False) when they hold arrays, frames or tensors: `==` never
raises numpy's or pandas' "truth value is ambiguous", on every such class of the package."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import warnings

import pytest

import cocostat

HEAVY = ("DataFrame", "ndarray", "Tensor", "Dataset", "Predictions")  # a Predictions store holds frames


def _heavy_dataclasses():
    out = []
    for mod in pkgutil.iter_modules(cocostat.__path__):
        if mod.name.startswith("_"):
            continue
        m = importlib.import_module(f"cocostat.{mod.name}")
        for _, cls in inspect.getmembers(m, inspect.isclass):
            if cls.__module__ != m.__name__ or not dataclasses.is_dataclass(cls) or cls.__name__.startswith("_"):
                continue
            if any(any(h in str(f.type) for h in HEAVY) for f in dataclasses.fields(cls)):
                out.append(cls)
    return out


def test_there_are_result_classes_to_check():
    names = {c.__name__ for c in _heavy_dataclasses()}
    assert {
        "AnchorAudit",
        "Mismatch",
        "DatasetInfo",
        "OverlapReport",
        "EvalReport",
        "ErrorReport",
        "PredictResult",
        "Dataset",
    } <= names


@pytest.mark.parametrize("cls", _heavy_dataclasses(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_heavy_dataclass_compares_by_identity(cls):
    params = cls.__dataclass_params__
    assert params.frozen
    assert not params.eq, f"{cls.__name__} holds arrays/frames: declare it eq=False"
    assert cls.__eq__ is object.__eq__


def test_real_results_compare_without_raising():
    from cocostat.audit import anchor_audit
    from cocostat.data import load_dataset
    from cocostat.summary import info

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset("sample")
        a, b = info(ds), info(ds)
        x, y = anchor_audit(ds), anchor_audit(ds)
    for first, second in ((a, b), (x, y)):
        assert first == first and not (first == second) and first != second  # identity, no ValueError
        assert first.to_dict() == second.to_dict()  # the way to compare two results' contents
    assert len({a, b, x}) == 3  # hashable by identity too
