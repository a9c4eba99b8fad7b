"""Every figure of the audit-like analyses, defined once: its JSON key, its table label, its definition.

The docs' definition tables are generated from :data:`FIGURES` (``docs/hooks.py``); the analyses take
their table labels, share columns and printed definitions from here (:func:`label`, :func:`labels`,
:attr:`Figure.text`), and ``tests/test_docs.py`` checks that the JSON keys (``to_dict()``) and the
table labels (``sections()``) of the real outputs are exactly the figures listed here, so the code,
the tables and the docs cannot drift apart. A new figure is one :class:`Figure` here plus its code.

Keys are JSON paths: ``objects`` is a top-level key of ``to_dict()``; ``per_anchor[].matched`` a key
of each entry of the ``per_anchor`` list; ``stats.best_iou`` an entry of the ``stats`` dict.
``label`` is what the table view shows: a row of the overview table (``statistic`` column) for a
top-level figure, a column header for a ``per_anchor[]`` figure, the ``statistic`` row for a
``stats.`` figure.

Terms used in the definitions (every IoU is the chosen ``--iou`` variant between a decoded
prediction and its object, both in network-input pixels; ties go to the first candidate in the
predictions table's (anchor, dy, dx) order):

- *matched predictions* of an object: the assigner's positives, i.e. each matched anchor's
  prediction at the centre cell, and for ``yolov5`` also at its neighbour cells (when stored).
- *unmatched predictions*: every anchor (all levels) that is not matched, at the centre cell.
- *neighbourhood*: every stored cell ((2n+1)^2 per anchor) of every anchor, cells outside the
  grid left out.
- a *positive* (``assigners``): one (object, slot) pair an assigner makes positive; a slot is one
  anchor at one cell of its level.
- *candidates* (``mismatch``): all anchors of all levels at the object's centre cell, or within
  ``--neighborhood`` cells of it; *objectness* the sigmoid objectness; *class-aware score*
  objectness x the sigmoid probability of the object's class.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One figure of one analysis.

    Attributes:
        analysis: the command whose output holds it (``anchor-audit``, ``mismatch``, ``assigners``).
        key: its JSON path in ``to_dict()`` (see the module docs).
        label: its label in the table view (``sections()``); None for a figure only the JSON holds.
        definition: the exact definition (markdown).
        needs_predictions: null without predictions (``anchor-audit`` on box sizes alone).
        share_of: the figure (key) the overview table's ``share`` column divides this one by; None:
            no share. The docs add "share: of ``share_of``" to the definition.
    """

    analysis: str
    key: str
    label: str | None
    definition: str
    needs_predictions: bool = False
    share_of: str | None = None

    @property
    def text(self) -> str:
        """The definition as plain text, for tables: markdown's code marks removed."""
        return self.definition.replace("`", "")

    @property
    def name(self) -> str:
        """The last part of the key: ``per_anchor[].matched`` -> ``matched``."""
        return self.key.rsplit(".", 1)[-1]

    @property
    def group(self) -> str:
        """``""`` for a top-level key, else its first container: ``per_anchor[]``, ``stats``, ``assigners[]``."""
        return self.key.split(".", 1)[0] if "." in self.key else ""

    @property
    def path(self) -> str:
        """The key inside its group: ``assigners[].agreement.mean_jaccard`` -> ``agreement.mean_jaccard``."""
        return self.key.split(".", 1)[1] if "." in self.key else self.key


_A, _M, _L = "anchor-audit", "mismatch", "assigners"

FIGURES: tuple[Figure, ...] = (
    # ---------------------------------------------------------------- anchor-audit: overview
    Figure(_A, "objects", "objects (non-crowd)", "non-crowd objects audited"),
    Figure(_A, "images", "images", "images holding at least one audited object"),
    Figure(_A, "feature_maps", "feature maps (images x levels)", "`images x levels`"),
    Figure(
        _A,
        "unmatched_objects",
        "objects with no matched anchor",
        "objects the assigner matches to no anchor at all",
        share_of="objects",
    ),
    Figure(
        _A,
        "feature_maps_unmatched_better",
        "feature maps where an unmatched anchor beats a matched one",
        "(image, level) pairs where some object has an unmatched prediction of that level with a higher "
        "IoU than one of its matched predictions of that level (`max unmatched(level) > min matched(level)`)",
        True,
        share_of="feature_maps",
    ),
    Figure(
        _A,
        "objects_compared",
        "objects with matched and unmatched predictions",
        "objects with at least one matched and one unmatched prediction",
        True,
        share_of="objects",
    ),
    Figure(
        _A,
        "objects_unmatched_beats_worst_matched",
        "objects: best unmatched > worst matched",
        "objects with `max IoU(unmatched) > min IoU(matched)`",
        True,
        share_of="objects_compared",
    ),
    Figure(
        _A,
        "objects_unmatched_beats_best_matched",
        "objects: best unmatched > best matched",
        "objects with `max IoU(unmatched) > max IoU(matched)`",
        True,
        share_of="objects_compared",
    ),
    Figure(
        _A,
        "objects_best_from_neighbor",
        "objects: best prediction from a neighbour cell",
        "objects whose highest-IoU prediction in the whole neighbourhood lies in a neighbouring cell "
        "(`max over neighbour cells > max over centre cells`); null when the table holds centre cells only",
        True,
        share_of="objects",
    ),
    # ---------------------------------------------------------------- anchor-audit: per anchor
    Figure(_A, "per_anchor[].matched", "matched", "objects matched to this anchor"),
    Figure(
        _A, "per_anchor[].match_wh_iou", "wh_iou", "mean wh-IoU of anchor and object over the objects matched to it"
    ),
    Figure(
        _A,
        "per_anchor[].pred_iou_matched",
        "iou_m",
        "mean IoU of this anchor's matched predictions (one per object; for yolov5 usually three, up to five)",
        True,
    ),
    Figure(
        _A,
        "per_anchor[].pred_iou_all",
        "iou_all",
        "mean IoU of this anchor's centre-cell prediction over all objects, matched or not",
        True,
    ),
    Figure(
        _A,
        "per_anchor[].best_when_unmatched",
        "best_unm",
        "objects counted in `objects_unmatched_beats_best_matched` whose best unmatched prediction is "
        "this anchor's (the column sums to that count)",
        True,
    ),
    Figure(
        _A,
        "per_anchor[].worst_matched",
        "worst_m",
        "objects with at least two matched predictions whose lowest-IoU matched prediction is this anchor's",
        True,
    ),
    # ---------------------------------------------------------------- mismatch: overview
    Figure(_M, "objects", "objects", "objects with at least one candidate"),
    Figure(_M, "candidates_per_object", "candidates per object (at most)", "the most candidates any object has"),
    Figure(
        _M,
        "obj_not_best",
        "highest objectness is not the best IoU",
        "objects whose highest-objectness candidate has a lower IoU than their best candidate (a tie in "
        "IoU is no mismatch); the JSON holds the share as `obj_not_best_share`",
        share_of="objects",
    ),
    Figure(
        _M,
        "score_not_best",
        "highest class-aware score is not the best IoU",
        "the same with the class-aware score; the JSON holds the share as `score_not_best_share`",
        share_of="objects",
    ),
    Figure(
        _M,
        "obj_iou_share",
        "IoU of highest objectness / best IoU (mean)",
        "mean over objects with best IoU > 0 of `IoU(highest objectness) / best IoU`",
    ),
    Figure(
        _M,
        "score_iou_share",
        "IoU of highest score / best IoU (mean)",
        "mean over objects with best IoU > 0 of `IoU(highest class-aware score) / best IoU`",
    ),
    # ---------------------------------------------------------------- mismatch: per-object statistics
    # stats.NAME = {mean, var (population, ddof 0), objects (where NAME is defined)}
    Figure(_M, "stats.best_iou", "best_iou", "highest IoU among the candidates"),
    Figure(_M, "stats.obj_iou", "obj_iou", "IoU of the highest-objectness candidate"),
    Figure(_M, "stats.score_iou", "score_iou", "IoU of the highest class-aware-score candidate"),
    Figure(
        _M,
        "stats.matched_iou",
        "matched_iou",
        "mean IoU of the object's matched predictions (as in `anchor-audit`)",
    ),
    Figure(_M, "stats.max_obj", "max_obj", "highest objectness"),
    Figure(_M, "stats.best_obj", "best_obj", "objectness of the highest-IoU candidate"),
    Figure(_M, "stats.max_score", "max_score", "highest class-aware score"),
    Figure(_M, "stats.best_score", "best_score", "class-aware score of the highest-IoU candidate"),
    Figure(_M, "stats.matched_anchors", "matched_anchors", "anchors matched by the assigner"),
    Figure(
        _M, "stats.best_area", "best_area", "area of the highest-IoU box in grid cells of its level (`w h / stride²`)"
    ),
    Figure(
        _M,
        "stats.obj_area",
        "obj_area",
        "area of the highest-objectness box in grid cells of its level (`w h / stride²`)",
    ),
    Figure(_M, "stats.area_ratio", "area_ratio", "`obj_area / best_area`"),
    Figure(
        _M,
        "stats.best_offset",
        "best_offset",
        "centre offset of the highest-IoU box from the object, in grid cells of its level",
    ),
    Figure(
        _M,
        "stats.obj_offset",
        "obj_offset",
        "centre offset of the highest-objectness box from the object, in grid cells of its level",
    ),
    # ---------------------------------------------------------------- assigners: per entry of assigners[]
    # "positive": one (object, slot) pair; labels are the overview table's column headers, in order,
    # then the titles of the per-level and per-anchor tables.
    Figure(_L, "assigners[].positives", "positives", "positives in all"),
    Figure(_L, "assigners[].positives_per_object.mean", "per_obj", "mean positives per object, over every object"),
    Figure(
        _L,
        "assigners[].positives_per_object.p50",
        "p50",
        "median positives per object (numpy's linear-interpolation percentile)",
    ),
    Figure(
        _L,
        "assigners[].positives_per_object.p90",
        "p90",
        "90th percentile of positives per object (numpy's linear interpolation)",
    ),
    Figure(_L, "assigners[].positives_per_object.max", "max", "most positives of any object"),
    Figure(_L, "assigners[].objects_without_positive", "no_pos", "objects with no positive"),
    Figure(_L, "assigners[].mean_anchor_wh_iou", "wh_iou", "mean wh-IoU of object and anchor over the positives"),
    Figure(
        _L,
        "assigners[].agreement.mean_jaccard",
        "jaccard",
        "with the `reference` assigner (default yolov3), each object's positive sets compared as sets of "
        "slots (level, cell, anchor): mean over objects with a positive in either set of `|A & R| / |A | R|`",
    ),
    Figure(
        _L,
        "assigners[].agreement.disjoint_objects",
        "disjoint",
        "objects with a positive in either set and none in common (Jaccard 0)",
    ),
    Figure(
        _L,
        "assigners[].mean_pred_iou",
        "pred_iou",
        "mean prediction IoU (the `--iou` kind) over the positives in the stored neighbourhood that have a "
        "finite prediction",
        True,
    ),
    Figure(
        _L,
        "assigners[].best_pred_positive",
        None,
        "objects whose best stored prediction (highest IoU, ties to the lower slot index) is one of their positives",
        True,
    ),
    Figure(
        _L,
        "assigners[].best_pred_positive_share",
        "best_pos",
        "`best_pred_positive` over the objects with a finite stored prediction",
        True,
    ),
    Figure(
        _L,
        "assigners[].score_iou_mismatch",
        None,
        "objects with at least two scored positives whose most confident positive (objectness x class "
        "probability) has a lower IoU than their best-localised positive",
        True,
    ),
    Figure(
        _L,
        "assigners[].score_iou_mismatch_share",
        "mismatch",
        "`score_iou_mismatch` over the objects with at least two scored positives",
        True,
    ),
    Figure(
        _L,
        "assigners[].positives_not_stored",
        "not_stored",
        "box-only assigners: positives outside the stored neighbourhood, which have no prediction to score",
        True,
    ),
    Figure(
        _L,
        "assigners[].region_slots_outside.mean",
        "outside",
        "prediction-aware assigners: mean per object of the slots of the assigner's region on the whole "
        "grid that are not stored (null for box-only assigners)",
        True,
    ),
    Figure(_L, "assigners[].region_slots_outside.total", None, "prediction-aware assigners: those slots in all", True),
    Figure(_L, "assigners[].per_level[].positives", "positives per level", "positives at that level"),
    Figure(_L, "assigners[].per_anchor[].positives", "positives per anchor (cfg order)", "positives at that anchor"),
    Figure(
        _L,
        "assigners[].per_anchor[].objects",
        None,
        "objects with at least one positive at that anchor (for yolov3, darknet and yolov5: "
        "`anchor-audit`'s `matched`)",
    ),
)

#: keys of ``to_dict()`` that echo the settings or hold listings, not figures (per analysis, per group).
CONTEXT: dict[tuple[str, str], tuple[str, ...]] = {
    (_A, ""): (
        "source",
        "anchors",
        "assigner",
        "iou",
        "iou_t",
        "ratio_t",
        "size",
        "neighborhood",
        "predictions",
        "per_anchor",
        "needs_predictions",
        "examples",
        "notes",
    ),
    (_A, "per_anchor[]"): ("anchor_index", "level", "stride", "anchor"),
    (_M, ""): (
        "source",
        "anchors",
        "assigner",
        "iou",
        "iou_t",
        "ratio_t",
        "neighborhood",
        "stats",
        "examples",
        "plots",
        "obj_not_best_share",
        "score_not_best_share",
    ),
    (_M, "stats"): (),
    (_L, ""): (
        "source",
        "anchors",
        "size",
        "iou",
        "reference",
        "predictions",
        "neighborhood",
        "objects",
        "images",
        "options",
        "assigners",
        "notes",
    ),
    (_L, "assigners[]"): (
        "name",
        "definition",
        "needs_predictions",
        "where",
        "agreement.reference",
        "per_level[].level",
        "per_level[].stride",
        "per_anchor[].anchor_index",
        "per_anchor[].level",
        "per_anchor[].anchor",
    ),
}

#: columns of the table view that name the row rather than hold a figure.
TABLE_CONTEXT: dict[tuple[str, str], tuple[str, ...]] = {
    (_A, "per_anchor[]"): ("anchor", "size", "level"),
    (_L, "assigners[]"): ("name", "where"),
}


def figures(analysis: str, group: str | None = None) -> tuple[Figure, ...]:
    """The figures of ``analysis`` (in output order), only those of ``group`` when given."""
    found = tuple(f for f in FIGURES if f.analysis == analysis and (group is None or f.group == group))
    if not found:
        raise KeyError(f"no figures for analysis {analysis!r}" + (f", group {group!r}" if group else ""))
    return found


def label(analysis: str, key: str) -> str:
    """The table label of figure ``key`` of ``analysis`` (a KeyError if it has none)."""
    for f in figures(analysis):
        if f.key == key:
            if f.label is None:
                raise KeyError(f"figure {key!r} of {analysis!r} has no table label")
            return f.label
    raise KeyError(f"no figure {key!r} in {analysis!r}")


def labels(analysis: str, group: str) -> dict[str, str]:
    """Figure path in ``group`` (:attr:`Figure.path`) -> table label, for the labelled figures, in order."""
    return {f.path: f.label for f in figures(analysis, group) if f.label is not None}


def overview_rows(result: object, analysis: str) -> list[tuple[str, object, float | None]]:
    """The overview table of ``result``: ``(label, value, share)`` of each labelled top-level figure.

    ``value`` is the result's attribute of the figure's name; ``share`` is it over the attribute
    :attr:`Figure.share_of` names (None without one, for a null value or a zero denominator)."""
    rows: list[tuple[str, object, float | None]] = []
    for f in figures(analysis, ""):
        if f.label is None:
            continue
        value = getattr(result, f.name)
        of = getattr(result, f.share_of) if f.share_of is not None else None
        rows.append((f.label, value, value / of if value is not None and of else None))
    return rows


def needs_predictions(analysis: str = _A) -> tuple[str, ...]:
    """Keys (``per_anchor.NAME`` for per-anchor ones) of the figures that are null without predictions."""
    return tuple(f.key.replace("[]", "") for f in figures(analysis) if f.needs_predictions)


def markdown_table(analysis: str, group: str | None = None) -> str:
    """The definition table of ``analysis`` as markdown: JSON key, table label, definition."""

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| JSON key | table label | definition |", "|---|---|---|"]
    for f in figures(analysis, group):
        mark = " *(needs predictions)*" if f.needs_predictions else ""
        shown = "-" if f.label is None else esc(f.label)
        share = "" if f.share_of is None else f"; share: of `{f.share_of}`"
        lines.append(f"| `{f.key}` | {shown} | {esc(f.definition)}{share}{mark} |")
    return "\n".join(lines) + "\n"
