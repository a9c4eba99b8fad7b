"""Where an audit's predictions come from, and where its per-object table goes.

``anchor-audit``, ``mismatch`` and ``report`` read predictions either from a folder written by
``cocostat predict -o DIR`` or from a model run on the fly (``--cfg`` and ``--weights`` together),
and ``--per-object FILE`` writes one row per object as parquet or CSV. These checks and the model
run live here, apart from the analyses that consume them, so each analysis module holds only its
analysis.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cocostat import atomic
from cocostat.data import Dataset
from cocostat.errors import OptionError

#: Network input side (pixels) of a model run when no size is given.
DEFAULT_SIZE = 416


def check_model_source(predictions, cfg, weights) -> None:
    """Predictions come from a folder or from a model run (cfg and weights together), never both."""
    if predictions and (cfg or weights):
        raise OptionError("give either --predictions DIR or --cfg FILE --weights FILE, not both")
    if bool(cfg) != bool(weights):
        raise OptionError("--cfg and --weights go together: give both to run the model")


def check_frame_path(path: str | Path | None) -> None:
    """Refuse a ``--per-object`` path that is neither ``.parquet`` nor ``.csv`` (before any work)."""
    if path is not None and Path(path).suffix.lower() not in (".parquet", ".csv"):
        raise OptionError(f"per_object must end in .parquet or .csv, got {path}", param="per_object")


def write_frame(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame atomically as parquet (``.parquet``) or CSV (``.csv``)."""
    check_frame_path(path)
    return atomic.write_frame(frame, path)


def run_model(
    dataset: Dataset,
    cfg,
    weights,
    *,
    size: int | None = None,
    neighborhood: int = 1,
    batch_size: int = 16,
    device=None,
    progress: bool = True,
):
    """Run a Darknet model over the dataset's images (through :func:`cocostat.predict.predict`).

    Returns the :class:`~cocostat.predict.PredictResult` (``.candidates``, ``.manifest``), which
    :func:`cocostat.audit.anchor_audit` and :func:`cocostat.mismatch.mismatch` take as
    ``predictions``. Nothing is written; use ``cocostat predict -o DIR`` once to keep the candidates
    for several audits.
    """
    from cocostat.models import load_model
    from cocostat.predict import predict

    model = load_model(cfg, weights, device=device if device is not None else "cpu")
    return predict(
        dataset,
        model,
        size=DEFAULT_SIZE if size is None else int(size),
        batch_size=batch_size,
        device=device,
        neighborhood=neighborhood,
        progress=progress,
    )
