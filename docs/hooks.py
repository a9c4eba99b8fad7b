"""MkDocs hook: pages generated from the code and the benchmark reports, so neither can drift.

Two markers, each alone on its line in a page:

- ``<!-- figures ANALYSIS [GROUP] -->``: the definition table of :data:`cocostat.figures.FIGURES`
  for that analysis (``anchor-audit``, ``mismatch``), only the figures of GROUP (``top``,
  ``per_anchor[]``, ``stats``) when given.
- ``<!-- include PATH -->``: the file PATH (relative to the repository root, e.g.
  ``reports/bench_load.md``) with its headings moved one level down; a glob pattern
  (``reports/bench_*.md``) includes every matching file in name order, so a new report appears
  without another edit.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cocostat.figures import markdown_table  # noqa: E402

_MARKER = re.compile(r"^<!-- (figures|include) (\S+)(?: (\S+))? -->$", re.MULTILINE)


def _include(pattern: str) -> str:
    paths = sorted(ROOT.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"docs include: nothing matches {pattern} under {ROOT}")
    texts = [p.read_text(encoding="utf-8") for p in paths]
    return "\n\n".join(re.sub(r"^(#+) ", r"\1# ", t, flags=re.MULTILINE) for t in texts)


def expand(markdown: str) -> str:
    """Replace every marker in ``markdown`` by what it names."""

    def one(m: re.Match) -> str:
        kind, arg, group = m.groups()
        if kind == "include":
            return _include(arg)
        return markdown_table(arg, "" if group == "top" else group)

    return _MARKER.sub(one, markdown)


def on_page_markdown(markdown, page, config, files):
    return expand(markdown)
