"""Rendering of analysis results: rich tables for people, JSON and CSV for machines.

Every analysis returns a frozen dataclass (a *report*) with three methods:

- ``to_dict()``: JSON-safe dict with stable keys (what ``--format json`` prints);
- ``to_frame()``: a pandas DataFrame (what ``--format csv`` prints);
- ``sections()``: a list of ``(title, DataFrame | str)`` blocks (what ``--format table`` prints).

:func:`emit` is the single place that turns a report into output, on stdout or atomically into a file.
"""

from __future__ import annotations

import io
import math
import sys
from typing import Protocol

import numpy as np
import orjson
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cocostat.atomic import write_bytes

FORMATS = ("table", "json", "csv")
#: console width of tables that go to a file or a pipe: wide enough that no real table folds.
FILE_WIDTH = 1000


class Report(Protocol):
    def to_dict(self) -> dict: ...

    def to_frame(self) -> pd.DataFrame: ...

    def sections(self) -> list[tuple[str, pd.DataFrame | str]]: ...


def json_records(frame: pd.DataFrame) -> list[dict]:
    """The rows of ``frame`` as a list of dicts of plain Python values (numpy scalars unwrapped), for ``to_dict()``."""
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def to_json(obj) -> bytes:
    """JSON bytes (indented, newline-terminated); numpy scalars and arrays allowed, NaN -> null."""
    return (
        orjson.dumps(
            obj,
            option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
            default=_json_default,
        )
        + b"\n"
    )


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (pd.DataFrame,)):
        return obj.to_dict(orient="records")
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def format_value(v) -> str:
    """How a cell is shown in a table: ints plain, floats with 4 significant digits, None/NaN as '-'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.1f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(format_value(x) for x in v)
    return str(v)


def frame_table(title: str, frame: pd.DataFrame) -> Table:
    """A rich Table of a DataFrame (numbers right-aligned).

    Cells are never cut with "...": a table wider than the console folds long cells onto more
    lines (``overflow="fold"``), every character kept; :func:`emit` gives a console that is not a
    terminal the table's full width, so files and pipes get one line per row.
    """
    table = Table(title=title, title_justify="left", title_style="bold")
    for col in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col])
        table.add_column(str(col), justify="right" if numeric else "left", overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(escape(format_value(v)) for v in row))  # cells are data, never markup
    return table


def render_text(report: Report, console: Console) -> None:
    """Print a report's sections on a rich console."""
    for i, (title, block) in enumerate(report.sections()):
        if i:
            console.print()
        if isinstance(block, pd.DataFrame):
            console.print(frame_table(title, block))
        else:
            if title:
                console.print(title, style="bold")
            # soft_wrap: text blocks (cfg lines, YAML) are for copy-paste and must never be re-wrapped
            console.print(block, markup=False, highlight=False, soft_wrap=True)


def render(report: Report, fmt: str = "table") -> bytes:
    """A report rendered as bytes in ``fmt`` (``table`` gives plain text without colour)."""
    if fmt == "json":
        return to_json(report.to_dict())
    if fmt == "csv":
        return report.to_frame().to_csv(index=False).encode()
    if fmt == "table":
        buf = io.StringIO()
        render_text(report, Console(file=buf, width=FILE_WIDTH, color_system=None, force_terminal=False))
        return buf.getvalue().encode()
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def emit(report: Report, fmt: str = "table", output: str | None = None) -> None:
    """Write a report to ``output`` (atomically) or to stdout; tables on a terminal get colour."""
    if output:
        written = write_bytes(output, render(report, fmt))
        print(f"wrote {written}", file=sys.stderr)
    elif fmt == "table":
        terminal = sys.stdout.isatty()
        render_text(report, Console(file=sys.stdout, soft_wrap=False, width=None if terminal else FILE_WIDTH))
    else:
        out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
        data = render(report, fmt)
        if out is not None:
            sys.stdout.flush()
            out.write(data)
            out.flush()
        else:
            sys.stdout.write(data.decode())
