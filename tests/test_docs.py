"""The docs say what the code does: their shell examples run, their figure tables match the real outputs.

Examples (as sqlite-utils tests its docs): every fenced ```` ```console ```` block in ``docs/`` and
in ``README.md`` is executed. Its ``$ cocostat ...`` lines are commands, run in-process with click's ``CliRunner`` in
one scratch folder per page (so a page's later commands see what its earlier ones wrote). The scratch folder
has the layout of a checkout, its ``../shared/data`` a link to the real data folder, so the commands run
verbatim and print the paths, and table widths, a user sees; each must exit 0. The lines under a command,
up to the next ``$`` line, are its output as shown: they must appear in the command's stdout, in
order and contiguous, where a line ``...`` stands for any number of lines left out. Examples that
need data a fresh machine lacks (a full COCO, a GPU) are written as ```` ```bash ```` blocks
instead, which are never run.

Figures: :data:`cocostat.figures.FIGURES` must list exactly the JSON keys and the table labels of the
real ``anchor-audit``, ``mismatch`` and ``assigners`` outputs (yolov3-tiny on coco-tiny val2017).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from cocostat import figures as F
from cocostat.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)


def console_examples(path: Path) -> list[tuple[str, list[str]]]:
    """(command line, shown output lines) of every ``$`` line in the ``console`` blocks of ``path``."""
    out: list[tuple[str, list[str]]] = []
    for block in _FENCE.findall(path.read_text(encoding="utf-8")):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif out:
                out[-1][1].append(line.rstrip())
            elif line.strip():
                raise AssertionError(f"{path.name}: console block text before its first '$ ' line: {line!r}")
    return out


PAGES = sorted(p for p in [*DOCS.rglob("*.md"), ROOT / "README.md"] if console_examples(p))


def shown_in(shown: list[str], actual: list[str]) -> str | None:
    """None when ``shown`` (with ``...`` gaps) appears in ``actual`` in order, else what is missing."""
    segments: list[list[str]] = [[]]
    for line in shown:
        if line.strip() == "...":
            segments.append([])
        else:
            segments[-1].append(line)
    at = 0
    for seg in (s for s in segments if s):
        n = len(seg)
        for i in range(at, len(actual) - n + 1):
            if actual[i : i + n] == seg:
                at = i + n
                break
        else:
            return "\n".join(seg)
    return None


def test_docs_have_runnable_examples():
    # the pages a newcomer reads first, and a page per command family, carry executed examples
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {
        "README.md",
        "docs/getting-started.md",
        "docs/commands/info.md",
        "docs/commands/kmeans.md",
        "docs/commands/overlap.md",
        "docs/commands/anchor-audit.md",
        "docs/commands/predict.md",
    } <= names
    assert sum(len(console_examples(p)) for p in PAGES) >= 12


def test_readme_is_short_and_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 12 * 1024
    for page in DOCS.rglob("*.md"):
        assert f"(docs/{page.relative_to(DOCS).as_posix()})" in readme, f"README.md does not link {page}"
    assert 'pip install -e ".[test]"' in readme and "python -m pytest -q" in readme  # .ci/run's commands


def test_console_parsing_and_matching():
    assert shown_in(["a", "...", "d"], ["x", "a", "b", "c", "d"]) is None
    assert shown_in(["a", "b"], ["a", "x", "b"]) == "a\nb"  # contiguous unless a '...' says otherwise
    assert shown_in(["b", "...", "a"], ["a", "b"]) == "a"  # in order


def checkout_layout(tmp: Path, real_data: Path) -> Path:
    """A scratch folder where ``../shared/data`` is the real data folder, as it is from a checkout."""
    (tmp / "shared").mkdir()
    (tmp / "shared" / "data").symlink_to(real_data, target_is_directory=True)
    (tmp / "work").mkdir()
    return tmp / "work"


PREDS = "coco-tiny-preds"  # the folder the predict page's example writes; other pages' examples read it


@pytest.fixture(scope="session")
def coco_tiny_preds(real_data, tmp_path_factory) -> Path:
    """The predictions folder of the predict page's example, made once for the pages that read it."""
    page = DOCS / "commands" / "predict.md"
    command = next(c for c, _ in console_examples(page) if c.startswith("cocostat predict") and PREDS in c)
    cwd = checkout_layout(tmp_path_factory.mktemp("docs-preds"), real_data)
    argv = shlex.split(command, comments=True)[1:]
    here = Path.cwd()
    try:
        os.chdir(cwd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = CliRunner().invoke(main, argv, catch_exceptions=False)
    finally:
        os.chdir(here)
    assert res.exit_code == 0, res.output
    return cwd / PREDS


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_console_examples_run(page, real_data, tmp_path, monkeypatch, request):
    cwd = checkout_layout(tmp_path, real_data)
    monkeypatch.chdir(cwd)
    commands = " ".join(c for c, _ in console_examples(page))
    if PREDS in commands and f"-o {PREDS}" not in commands:
        (cwd / PREDS).symlink_to(request.getfixturevalue("coco_tiny_preds"), target_is_directory=True)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    for command, shown in console_examples(page):
        argv = shlex.split(command, comments=True)
        assert argv[0] == "cocostat", f"{page.name}: a console example runs cocostat, got {command!r}"
        assert not any(a.startswith("~") for a in argv), (
            f"{page.name}: {command!r} needs data a fresh machine lacks: write it in a ```bash block"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = runner.invoke(main, argv[1:], catch_exceptions=False)
        assert res.exit_code == 0, f"{page.name}: `{command}` exited {res.exit_code}:\n{res.output}"
        actual = [line.rstrip() for line in res.stdout.splitlines()]
        missing = shown_in(shown, actual)
        assert missing is None, (
            f"{page.name}: `{command}` no longer prints what the page shows; missing:\n"
            f"{missing}\n--- actual stdout:\n" + "\n".join(actual)
        )


# --------------------------------------------------------------------------------------------------
# one table of figures: the real outputs' keys and labels are exactly the figures it lists
# --------------------------------------------------------------------------------------------------
def test_figure_table_is_well_formed():
    keys = [(f.analysis, f.key) for f in F.FIGURES]
    assert len(keys) == len(set(keys))
    for analysis in ("anchor-audit", "mismatch", "assigners"):
        labels = [(f.group, f.label) for f in F.figures(analysis) if f.label is not None]
        assert len(labels) == len(set(labels)), f"{analysis}: two figures share a table label"
    assert all(f.definition.strip() and (f.label is None or f.label.strip()) for f in F.FIGURES)
    table = F.markdown_table("anchor-audit")
    assert table.count("\n") == len(F.figures("anchor-audit")) + 2
    # a figure's share column is documented from the same field the table divides by
    assert "| objects the assigner matches to no anchor at all; share: of `objects` |" in table
    with pytest.raises(KeyError, match="has no table label"):
        F.label("assigners", "assigners[].best_pred_positive")
    with pytest.raises(KeyError):
        F.figures("no-such-analysis")


def _renamed(analysis: str, key: str, **changes) -> tuple[F.Figure, ...]:
    """FIGURES with figure ``key`` of ``analysis`` changed (``label``, ``share_of``)."""
    out = tuple(dataclasses.replace(f, **changes) if (f.analysis, f.key) == (analysis, key) else f for f in F.FIGURES)
    assert out != F.FIGURES
    return out


def test_a_label_changed_in_the_figures_changes_the_tables(monkeypatch):
    """The tables read their labels and share columns from cocostat.figures (one place to change them)."""
    from cocostat.audit import anchor_audit
    from cocostat.data import load_dataset
    from cocostat.lab import assigner_lab

    ds = load_dataset("sample")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        audit = anchor_audit(ds, anchors="yolov3-tiny")
        lab = assigner_lab(ds, anchors="yolov3-tiny", assigners="yolov3,atss")
    a = "anchor-audit"
    monkeypatch.setattr(
        F, "FIGURES", _renamed(a, "unmatched_objects", label="objects nobody matches", share_of="images")
    )
    overview = audit.sections()[0][1].set_index("statistic")
    assert "objects with no matched anchor" not in overview.index
    assert overview.loc["objects nobody matches", "value"] == audit.unmatched_objects
    assert overview.loc["objects nobody matches", "share"] == audit.unmatched_objects / audit.images
    monkeypatch.setattr(F, "FIGURES", _renamed("assigners", "assigners[].agreement.mean_jaccard", label="J"))
    sections = lab.sections()
    assert "J" in sections[0][1].columns and "jaccard" not in sections[0][1].columns
    assert "J = mean_jaccard" in sections[1][0]
    monkeypatch.setattr(
        F, "FIGURES", _renamed("assigners", "assigners[].per_level[].positives", label="per level, renamed")
    )
    assert "per level, renamed" in [title for title, _ in lab.sections()]


def test_docs_hook_expands_every_marker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = (DOCS / "figures.md").read_text(encoding="utf-8")
    out = hooks.expand(page)
    assert "<!-- figures" not in out
    for f in F.FIGURES:
        assert f"`{f.key}`" in out
    perf = hooks.expand((DOCS / "performance.md").read_text(encoding="utf-8"))
    for report in sorted((ROOT / "reports").glob("bench_*.md")):
        text = report.read_text(encoding="utf-8")
        title = next(line for line in text.splitlines() if line.startswith("# "))
        last_row = [line for line in text.splitlines() if line.startswith("|")][-1]
        assert "#" + title in perf and last_row in perf, f"performance.md does not include {report.name}"


def _names(analysis: str, group: str) -> list[str]:
    return [f.name for f in F.figures(analysis, group)]


def _labels(analysis: str, group: str) -> list[str]:
    return [f.label for f in F.figures(analysis, group)]


@pytest.fixture(scope="module")
def real_inputs(real_data):
    """coco-tiny val2017 and the real yolov3-tiny's predictions on it (run once for this module)."""
    from cocostat.data import load_dataset
    from cocostat.errors import CocostatWarning
    from cocostat.sources import run_model

    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    models = real_data / "models"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        preds = run_model(ds, models / "yolov3-tiny.cfg", models / "yolov3-tiny.weights", progress=False)
    return ds, preds


@pytest.fixture(scope="module")
def real_audits(real_inputs):
    from cocostat.audit import anchor_audit
    from cocostat.errors import CocostatWarning
    from cocostat.mismatch import mismatch

    ds, preds = real_inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        return {
            "audit": anchor_audit(ds, preds, examples=2),
            "box_only": anchor_audit(ds, anchors="yolov3-tiny"),
            "mismatch": mismatch(ds, preds, examples=2),
        }


@pytest.mark.slow
@pytest.mark.realdata
def test_anchor_audit_keys_and_labels_are_the_figures(real_audits):
    from cocostat.audit import NEEDS_PREDICTIONS

    a = "anchor-audit"
    rep = real_audits["audit"]
    d = rep.to_dict()
    assert sorted(d) == sorted(_names(a, "") + list(F.CONTEXT[(a, "")]))
    for entry in d["per_anchor"]:
        assert sorted(entry) == sorted(_names(a, "per_anchor[]") + list(F.CONTEXT[(a, "per_anchor[]")]))
    (_, overview), (_, per_anchor) = rep.sections()[:2]
    assert overview["statistic"].tolist() == _labels(a, "")
    assert [c for c in per_anchor.columns if c not in F.TABLE_CONTEXT[(a, "per_anchor[]")]] == _labels(
        a, "per_anchor[]"
    )
    # NEEDS_PREDICTIONS is the table's list, and exactly those figures are null on box sizes alone
    assert tuple(NEEDS_PREDICTIONS) == F.needs_predictions(a)
    box = real_audits["box_only"].to_dict()
    assert box["needs_predictions"] == list(F.needs_predictions(a))
    for f in F.figures(a, ""):
        assert (box[f.name] is None) == f.needs_predictions, f.key
        assert d[f.name] is not None, f.key
    for f in F.figures(a, "per_anchor[]"):
        assert all((e[f.name] is None) == f.needs_predictions for e in box["per_anchor"]), f.key
    box_table = real_audits["box_only"].sections()[1][1]
    assert [c for c in box_table.columns if c not in F.TABLE_CONTEXT[(a, "per_anchor[]")]] == [
        f.label for f in F.figures(a, "per_anchor[]") if not f.needs_predictions
    ]


@pytest.mark.slow
@pytest.mark.realdata
def test_mismatch_keys_and_labels_are_the_figures(real_audits):
    from cocostat.mismatch import STATS

    m = "mismatch"
    rep = real_audits["mismatch"]
    d = rep.to_dict()
    assert sorted(d) == sorted(_names(m, "") + list(F.CONTEXT[(m, "")]))
    assert list(d["stats"]) == _names(m, "stats")
    assert list(STATS) == _names(m, "stats")
    (_, overview), (_, stats) = rep.sections()[:2]
    assert overview["statistic"].tolist() == _labels(m, "")
    assert stats["statistic"].tolist() == _labels(m, "stats")
    # the definitions the table prints are the figures' own (markdown code marks dropped)
    assert stats["definition"].tolist() == [f.definition.replace("`", "") for f in F.figures(m, "stats")]
    assert (
        rep.to_dict()["obj_not_best_share"]
        == dict(zip(overview["statistic"], overview["share"]))[F.label(m, "obj_not_best")]
    )
    for f in F.figures(m, ""):
        assert d[f.name] is not None, f.key


def _paths(value, prefix: str = "") -> set[str]:
    """Every leaf key of a JSON value as a dotted path; list entries as ``[]``; leaves are non-dicts."""
    if isinstance(value, dict):
        return (
            set().union(*(_paths(v, f"{prefix}.{k}" if prefix else k) for k, v in value.items())) if value else {prefix}
        )
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return set().union(*(_paths(v, prefix + "[]") for v in value))
    return {prefix}


@pytest.fixture(scope="module")
def real_lab(real_inputs):
    from cocostat.errors import CocostatWarning
    from cocostat.lab import assigner_lab

    ds, preds = real_inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        return {"lab": assigner_lab(ds, preds), "box_only": assigner_lab(ds, anchors="yolov3-tiny")}


@pytest.mark.slow
@pytest.mark.realdata
def test_assigners_keys_and_labels_are_the_figures(real_lab):
    a = "assigners"
    figs = F.figures(a, "assigners[]")
    context = set(F.CONTEXT[(a, "assigners[]")])
    for which, rep in real_lab.items():
        d = rep.to_dict()
        assert sorted(d) == sorted(F.CONTEXT[(a, "")]), which
        wanted = {f.path for f in figs if which == "lab" or not f.needs_predictions}
        for entry in d["assigners"]:
            paths = _paths(entry)
            if entry.get("region_slots_outside", {}) is None:  # null stands for both of its figures
                paths = (paths - {"region_slots_outside"}) | {"region_slots_outside.mean", "region_slots_outside.total"}
            assert paths == wanted | context, (which, entry["name"], sorted(paths ^ (wanted | context)))
        sections = rep.sections()
        overview = sections[0][1]
        columns = [c for c in overview.columns if c not in F.TABLE_CONTEXT[(a, "assigners[]")]]
        in_table = [
            f.label for f in figs if f.label and "[]" not in f.path and (which == "lab" or not f.needs_predictions)
        ]
        assert columns == in_table, which
        titles = [t for t, _ in sections]
        for f in figs:
            if f.label and "[]" in f.path:
                assert f.label in titles, (which, f.key)
