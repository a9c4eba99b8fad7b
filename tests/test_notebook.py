"""The walkthrough notebook runs end to end on the built-in sample, so it cannot rot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _builder():
    spec = importlib.util.spec_from_file_location("build_walkthrough", NOTEBOOKS / "build_walkthrough.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_walkthrough_executes(tmp_path):
    builder = _builder()
    committed = nbformat.read(NOTEBOOKS / "walkthrough.ipynb", as_version=4)
    fresh = builder.build()
    # the committed notebook is the generated one (sources equal), executed
    assert [c.source for c in committed.cells] == [c.source for c in fresh.cells]
    nb = builder.execute(fresh, tmp_path)
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "128 images, 939 annotations, 80 categories" in outputs
    assert "'annotations': 939" in outputs and "anchors: [[" in outputs
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2
    assert (tmp_path / "walkthrough_plots" / "anchors.png").stat().st_size > 10_000
