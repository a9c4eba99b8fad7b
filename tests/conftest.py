"""Shared fixtures: the real COCO data folder, and a temporary cache folder for every test.

Hypothesis profiles: ``ci`` (the default, also under CI=true) is derandomised, so a run draws the
same examples every time and a random draw cannot fail CI; ``deep`` (``pytest
--hypothesis-profile=deep``) draws fresh random examples, ten times as many, for local hunting.
Tests that set ``max_examples`` themselves keep their count under ``ci``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("deep", derandomize=False, deadline=None, max_examples=1000, print_blob=True)

_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _data_dir() -> Path | None:
    env = os.environ.get("COCOSTAT_TEST_DATA")
    path = Path(env) if env else _DEFAULT
    # absolute, so tests that chdir (to a tmp folder) still find it when the variable is relative
    return path.resolve() if (path / "README.md").is_file() else None


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real data folder (../shared/data or $COCOSTAT_TEST_DATA).

    Skips when it is absent, unless COCOSTAT_REQUIRE_TEST_DATA=1 (CI), where its absence fails the test.
    """
    path = _data_dir()
    if path is None:
        msg = f"real test data not found (COCOSTAT_TEST_DATA={os.environ.get('COCOSTAT_TEST_DATA')!r})"
        if os.environ.get("COCOSTAT_REQUIRE_TEST_DATA") == "1":
            pytest.fail(msg + " but COCOSTAT_REQUIRE_TEST_DATA=1")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def tiny_predictions(real_data, tmp_path_factory):
    """(coco-tiny val2017 Dataset, predictions folder of the real yolov3-tiny on its 80 images),
    made once per session; tests must not write into the folder."""
    import warnings

    from cocostat.data import load_dataset
    from cocostat.errors import CocostatWarning
    from cocostat.models import load_model
    from cocostat.predict import predict

    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    models = real_data / "models"
    out = tmp_path_factory.mktemp("tiny-predictions") / "pred"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        model = load_model(models / "yolov3-tiny.cfg", models / "yolov3-tiny.weights")
        predict(ds, model, out_dir=out, progress=False, workers=0)
    return ds, out


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session writes its parsed-array cache to a temporary folder, never the user's."""
    monkeypatch.setenv("COCOSTAT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def pytest_configure(config):
    if not config.getoption("hypothesis_profile", default=None):  # no --hypothesis-profile given
        settings.load_profile("ci")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
