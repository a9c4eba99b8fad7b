"""cocostat.report and `cocostat report`: the pages, their tables and plots, the reproducing commands (run
through the CLI they give the report's numbers), a self-contained HTML page, and the bad-input paths."""

from __future__ import annotations

import base64
import json
import re
import shlex
import warnings
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from test_predict import TINY_CFG, make_coco

from cocostat.candidates import DETECTION_COLUMNS, write_detection_part
from cocostat.cli import main
from cocostat.data import load_coco, load_dataset
from cocostat.errors import CocostatWarning, OptionError
from cocostat.models import build_model, write_weights
from cocostat.render import format_value
from cocostat.report import (
    ANALYSES,
    FOLD_ROWS,
    ReportResult,
    build_report,
    compact_png,
    dataset_args,
    html_table,
    markdown_table,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SAMPLE_DONE = {"info", "overlap", "kmeans", "anchor-audit"}


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory) -> ReportResult:
    out = tmp_path_factory.mktemp("report") / "sample"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        return build_report(load_dataset("sample"), out_dir=out)


def _strip_data_uris(text: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,DATA", text)


def _md_rows(table: str) -> list[list[str]]:
    """Split a markdown table into cells on the pipes that are not backslash-escaped."""
    return [re.split(r"(?<!\\)\|", line)[1:-1] for line in table.splitlines()]


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------
def test_markdown_table_formats_escapes_and_aligns():
    frame = pd.DataFrame(
        {
            "name": ["a|b", "x*y_z", "<b>&", "two\nlines", None],
            "count": [1, 22, 333, 4, 5],
            "share": [0.5, np.nan, 1e-5, 12345.678, 0.25],
            "flag": [True, False, True, False, True],
            "mixed": [1, None, pd.NA, 2.5, 3],
        }
    )
    md = markdown_table(frame)
    lines = md.splitlines()
    assert lines[0] == "| name | count | share | flag | mixed |"
    assert lines[1] == "|---|---:|---:|---|---:|"  # numbers right, text and bools left
    rows = _md_rows(md)
    assert all(len(r) == 5 for r in rows)
    cells = [[c.strip() for c in r] for r in rows[2:]]
    assert cells[0] == ["a\\|b", "1", "0.5", "yes", "1"]
    assert cells[1] == ["x\\*y\\_z", "22", "-", "no", "-"]  # NaN and None are '-'
    assert cells[2] == ["&lt;b&gt;&amp;", "333", format_value(1e-5), "yes", "-"]  # pd.NA is '-'
    assert cells[3][0] == "two<br>lines" and cells[3][2] == format_value(12345.678)
    assert cells[4][0] == "-"
    assert md.count("\n") == 6  # header, rule, 5 rows; no trailing newline


def test_markdown_table_empty_frames():
    assert markdown_table(pd.DataFrame()) == ""
    md = markdown_table(pd.DataFrame({"a": pd.Series([], dtype="int64"), "b": pd.Series([], dtype=object)}))
    assert md.splitlines() == ["| a | b |", "|---:|---|"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.text(max_size=12), min_size=3, max_size=3), min_size=1, max_size=6))
def test_markdown_table_any_text_keeps_its_cells(rows):
    frame = pd.DataFrame(rows, columns=["a", "b|c", "d"])
    md = markdown_table(frame)
    lines = md.splitlines()
    assert len(lines) == len(rows) + 2  # no cell can add a line
    assert all(len(r) == 3 for r in _md_rows(md))  # nor a column
    assert "<" not in md.replace("<br>", "")  # nor raw HTML


def test_html_table_escapes_cells_and_marks_numbers():
    frame = pd.DataFrame({"name": ["<script>alert(1)</script>", 'a"b'], "n": [1, 2]})
    out = html_table(frame)
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "a&quot;b" in out
    assert '<th class="num">n</th>' in out and '<td class="num">2</td>' in out and "<th>name</th>" in out


def test_dataset_args_as_typed():
    assert dataset_args() == []
    assert dataset_args("val2017", "/data/coco") == ["val2017", "--root", "/data/coco"]
    assert dataset_args("a b.json", None, "imgs") == ["a b.json", "--images", "imgs"]


def test_compact_png_keeps_the_picture(tmp_path):
    from matplotlib.figure import Figure
    from PIL import Image

    fig = Figure(figsize=(4, 3), dpi=80)
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [2, 0, 1])
    ax.set_xlabel("x")
    path = tmp_path / "p.png"
    fig.savefig(path)
    before = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    size = path.stat().st_size
    compact_png(path)
    after = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    assert path.stat().st_size < size
    assert after.shape == before.shape and np.abs(after - before).mean() < 1.0


# --------------------------------------------------------------------------------------------------
# The sample report (no model)
# --------------------------------------------------------------------------------------------------
def test_sample_report_files_and_sections(sample_report):
    res = sample_report
    assert [s.name for s in res.analyses] == list(ANALYSES)
    assert {s.name for s in res.analyses if s.status == "done"} == SAMPLE_DONE
    for s in res.analyses:
        if s.name in SAMPLE_DONE:
            assert s.argv and s.result is not None and s.plots
        else:
            assert s.status == "skipped" and s.reason and not s.argv and s.result is None
    assert res.section("mismatch").reason.startswith("needs predictions")
    assert res.markdown.is_file() and res.html.is_file()
    plots = [p for s in res.analyses for p in s.plots]
    assert {p.name for p in plots} >= {
        "info_box_sizes.png",
        "info_categories.png",
        "overlap_iou.png",
        "overlap_gap.png",
        "overlap_center.png",
        "overlap_aspect.png",
        "kmeans_anchors.png",
        "anchor_audit.png",
    }
    for p in plots:
        assert p.parent == res.out_dir / "plots" and p.read_bytes()[:8] == PNG_MAGIC
    assert set(res.files) == {res.markdown, res.html, *plots}
    assert not list(res.out_dir.rglob(".*.tmp*"))  # no temporary file left behind
    total = sum(p.stat().st_size for p in res.files)
    assert total < 2_000_000  # small enough to commit
    d = res.to_dict()
    assert [a["name"] for a in d["analyses"]] == list(ANALYSES)
    assert d["analyses"][1]["result"]["annotations"] == 939
    json.dumps(d, default=str)
    assert list(res.to_frame()["analysis"]) == list(ANALYSES)


def test_sample_markdown_page(sample_report):
    res = sample_report
    md = res.markdown.read_text()
    assert md.startswith("# cocostat report: sample\n")
    for s in res.analyses:
        assert f"\n## {s.name}\n" in md
        assert f"- [{s.name}](#{s.name})" in md
        if s.status == "done":
            assert f"```bash\n{s.command}\n```" in md
            for p in s.plots:
                assert f"]({p.relative_to(res.out_dir).as_posix()})" in md
            for _title, block in s.result.sections():  # every table is on the page, as the helper renders it
                if isinstance(block, pd.DataFrame):
                    assert markdown_table(block) in md
        else:
            assert f"*Skipped: {s.reason}.*" in md
    assert "| images | 128 |" in md and "| annotations | 939 |" in md
    assert "<summary>per category (80 rows)</summary>" in md  # long tables are folded
    assert len(res.section("info").result.per_category) > FOLD_ROWS


def test_sample_html_is_self_contained(sample_report):
    res = sample_report
    page = res.html.read_text()
    bare = _strip_data_uris(page)
    assert "<script" not in bare.lower() and "<link" not in bare.lower() and "@import" not in bare
    assert "http://" not in bare and "https://" not in bare and "url(" not in bare
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    hrefs = re.findall(r'\bhref="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert hrefs and all(h.startswith("#") for h in hrefs)
    # each plot is embedded byte for byte
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in srcs}
    assert embedded == {p.read_bytes() for s in res.analyses for p in s.plots}
    # every anchor of the contents exists; tags balance
    ids = set(re.findall(r'\bid="([^"]*)"', page))
    assert {h[1:] for h in hrefs} <= ids == set(ANALYSES)

    class Balance(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag not in {"meta", "img", "br", "hr", "link", "input"}:  # void elements
                self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
            self.stack.pop()

    parser = Balance()
    parser.feed(page)
    assert parser.stack == []
    for s in res.analyses:
        if s.status == "done":
            assert f"<code>{s.command}</code>" in page
            for _title, block in s.result.sections():
                if isinstance(block, pd.DataFrame):
                    assert html_table(block) in page


@pytest.mark.parametrize("name", ["info", "overlap", "kmeans", "anchor-audit"])
def test_listed_commands_give_the_reports_numbers(sample_report, name, tmp_path, monkeypatch):
    section = sample_report.section(name)
    argv = shlex.split(section.command)
    assert argv[0] == "cocostat"
    res = CliRunner().invoke(main, [*argv[1:], "--format", "json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    want = json.loads(json.dumps(section.result.to_dict(), default=str))
    if name == "kmeans":  # the search time and the device are not numbers of the data
        for d in (got, want):
            d.pop("seconds")
            d.pop("device")
        assert got["anchors"] == want["anchors"] and got["metrics"] == want["metrics"]
        assert got["compare"].keys() == {"yolov3", "yolov3-spp", "yolov3-tiny"}
    assert got == want


# --------------------------------------------------------------------------------------------------
# A model run on synthetic images (random weights): every section
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def synth_model(tmp_path):
    ann = make_coco(tmp_path, n_images=7)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    weights = write_weights(build_model(cfg, seed=11), tmp_path / "tiny.weights")
    return ann, cfg, weights


def _model_report(synth_model, tmp_path, out: str):
    """The synthetic dataset and a report with its model (random weights, 64 px) in tmp_path/out."""
    ann, cfg, weights = synth_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        ds = load_coco(ann, image_dir=tmp_path / "synth", cache=False)
        return ds, build_report(ds, out_dir=tmp_path / out, cfg=cfg, weights=weights, size=64, progress=False)


def test_model_report_runs_every_analysis(synth_model, tmp_path):
    ann, cfg, weights = synth_model
    _ds, res = _model_report(synth_model, tmp_path, "rep")
    status = {s.name: (s.status, s.reason) for s in res.analyses}
    assert res.predictions == tmp_path / "rep" / "predictions"
    assert (res.predictions / "manifest.json").is_file()
    for name in ("predict", "info", "overlap", "anchor-audit", "mismatch", "eval", "errors"):
        assert status[name][0] == "done", (name, status[name])
    # too few distinct boxes for the model's 6 anchors is the one thing that may skip kmeans
    assert status["kmeans"][0] == "done" or "distinct box size" in status["kmeans"][1]
    assert res.section("anchor-audit").result.has_predictions
    assert f"--predictions {res.predictions}" in res.section("mismatch").command
    assert res.section("eval").command.endswith(f"-d {res.predictions / 'detections.json'}")
    assert res.section("predict").command.startswith(f"cocostat predict {ann} --cfg {cfg} --weights {weights}")
    md = res.markdown.read_text()
    assert "Skipped" not in md.split("## kmeans")[0]
    assert {p.name for p in res.section("mismatch").plots} == {"iou_vs_obj.png", "iou_vs_score.png"}
    assert {p.name for p in res.section("eval").plots} == {"eval_summary.png", "eval_ap50_per_class.png"}
    # the eval command, run as listed, gives the report's numbers
    out = CliRunner().invoke(main, [*shlex.split(res.section("eval").command)[1:], "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["stats"] == list(res.section("eval").result.stats)


def test_predictions_without_detections_skip_eval_and_errors(synth_model, tmp_path):
    ann, cfg, weights = synth_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        ds = load_coco(ann, image_dir=tmp_path / "synth", cache=False)
        first = build_report(ds, out_dir=tmp_path / "a", cfg=cfg, weights=weights, size=64, progress=False)
        assert (tmp_path / "a/plots/eval_summary.png").is_file()
        # a folder whose run kept no detections: empty detection parts, manifest count 0, empty JSON
        for part in (first.predictions / "detections").iterdir():
            write_detection_part({c: [] for c in DETECTION_COLUMNS}, part)
        manifest = json.loads((first.predictions / "manifest.json").read_text())
        manifest["detections"]["count"] = 0
        (first.predictions / "manifest.json").write_text(json.dumps(manifest))
        (first.predictions / "detections.json").write_text("[]\n")
        (tmp_path / "a/plots/mine.png").write_bytes(b"not ours")
        res = build_report(ds, out_dir=tmp_path / "a", predictions=first.predictions)  # the same folder again
    assert not (tmp_path / "a/plots/eval_summary.png").exists()  # the earlier report's plot of a skipped analysis
    assert (tmp_path / "a/plots/mine.png").read_bytes() == b"not ours"  # a file that is not a report plot stays
    assert "eval_summary.png" not in res.html.read_text() and "eval_summary" not in res.markdown.read_text()
    status = {s.name: s for s in res.analyses}
    assert status["predict"].status == "skipped" and status["mismatch"].status == "done"
    assert status["eval"].status == status["errors"].status == "skipped"
    assert "hold no detections" in status["eval"].reason
    assert res.section("anchor-audit").command.count("--predictions") == 1
    assert "--size" not in res.section("anchor-audit").command  # the predictions' size
    with pytest.raises(OptionError, match="differs from the predictions' input size 64"):
        build_report(ds, out_dir=tmp_path / "c", predictions=first.predictions, size=416)
    assert not (tmp_path / "c").exists()
    # predictions of another dataset fail before any analysis draws anything
    with pytest.raises(OptionError, match="none of its annotation ids is in sample"):
        build_report(load_dataset("sample"), out_dir=tmp_path / "d", predictions=first.predictions)
    assert not [p for p in (tmp_path / "d").rglob("*") if p.is_file()]


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------
def test_cli_report_json_and_dataset_as_typed(tmp_path):
    make_coco(tmp_path, n_images=7)  # tmp_path/annotations/instances_synth.json, a COCO root
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["report", "synth", "--root", str(tmp_path), "-o", str(out), "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["markdown"] == str(out / "report.md") and (out / "report.html").is_file()
    cmds = {a["name"]: a["command"] for a in d["analyses"]}
    assert cmds["info"] == f"cocostat info synth --root {tmp_path}"
    assert cmds["overlap"] == f"cocostat overlap synth --root {tmp_path} --plot {out / 'plots'}"
    assert d["command"] == f"cocostat report synth --root {tmp_path} -o {out}"
    assert cmds["mismatch"] is None
    assert "warning: synth: 1 crowd annotation(s) left out" in res.stderr  # warnings reach stderr
    audit = next(a for a in d["analyses"] if a["name"] == "anchor-audit")
    assert "synth: 1 crowd annotation(s) left out" in audit["warnings"]
    assert "synth: 1 crowd annotation(s) left out" in (out / "report.md").read_text()  # and the page
    assert f"wrote {out / 'report.md'} and {out / 'report.html'}" in res.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cfg", "a.cfg"], "--cfg and --weights go together"),
        (["--weights", "a.weights"], "--cfg and --weights go together"),
        (["--predictions", "p", "--cfg", "a.cfg", "--weights", "w.weights"], "not both"),
        (["--size", "0"], "--size must be an integer >= 1, got 0"),
        (["--predictions", "nowhere"], "not a predictions folder (no manifest.json)"),
    ],
)
def test_cli_bad_inputs(tmp_path, args, message):
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["report", "-o", str(out), *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.output
    assert not (out / "report.md").exists() and not (out / "report.html").exists()


def test_cli_out_is_required_and_must_be_a_folder(tmp_path):
    res = CliRunner().invoke(main, ["report"])
    assert res.exit_code == 2 and "Missing option '-o' / '--output'" in res.stderr
    f = tmp_path / "file"
    f.write_text("x")
    res = CliRunner().invoke(main, ["report", "-o", str(f)])
    assert res.exit_code == 2 and "is a file" in res.stderr
    with pytest.raises(OptionError, match=f"^out_dir must be a folder, but {f} is a file"):
        build_report(load_dataset("sample"), out_dir=f)


# --------------------------------------------------------------------------------------------------
# Real data: the stock yolov3-tiny on the 80 real coco-tiny val2017 images
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.realdata
def test_real_yolov3_tiny_report(real_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = real_data / "coco-tiny"
    cfg, weights = real_data / "models/yolov3-tiny.cfg", real_data / "models/yolov3-tiny.weights"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        ds = load_dataset("val2017", root=root)
        res = build_report(
            ds, out_dir="rep", cfg=cfg, weights=weights, progress=False, dataset_argv=dataset_args("val2017", root)
        )
    assert all(s.status == "done" for s in res.analyses), [(s.name, s.reason) for s in res.analyses]
    assert res.section("predict").result.manifest["detections"]["count"] > 1000
    km = res.section("kmeans")
    assert "-k 6" in km.command and km.result.result.anchors.num_anchors == 6  # the model's anchor count
    audit = res.section("anchor-audit").result
    # README, anchor audits on real data, yolov3 assigner
    assert (audit.objects, audit.images, audit.unmatched_objects) == (804, 80, 23)
    ev = res.section("eval").result
    assert 0.2 < ev.stats[1] < 0.3  # AP50 of yolov3-tiny on these images (0.247)
    assert res.section("errors").result.ap == pytest.approx(100 * ev.stats[1], abs=0.01)
    # two listed commands, run as written, give the report's numbers
    runner = CliRunner()
    for name in ("eval", "errors"):
        out = runner.invoke(main, [*shlex.split(res.section(name).command)[1:], "--format", "json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout) == json.loads(json.dumps(res.section(name).result.to_dict(), default=str))
    page = _strip_data_uris(res.html.read_text())
    assert "http://" not in page and "https://" not in page and "<script" not in page
    md = res.markdown.read_text()
    assert "## errors" in md and "AP@0.5 = " in md
    size = sum(p.stat().st_size for p in res.files if "predictions" not in p.parts)
    assert size < 3_000_000


# --------------------------------------------------------------------------------------------------
# One description per call: the command line and the library keywords
# --------------------------------------------------------------------------------------------------
def test_call_renders_argv_and_kwargs_from_one_description():
    from pathlib import Path

    from cocostat.report import Call

    call = Call(
        "kmeans",
        {
            "size": 416,
            "k": None,
            "levels": 2,
            "compare": ("yolov3", "yolov3-tiny"),
            "plot": Path("o/plots/k.png"),
            "include_crowd": True,
            "per_image": None,
        },
    )
    assert call.argv(["val2017", "--root", "r"]) == (
        "kmeans",
        "val2017",
        "--root",
        "r",
        "--size",
        "416",
        "--levels",
        "2",
        "--compare",
        "yolov3",
        "--compare",
        "yolov3-tiny",
        "--plot",
        "o/plots",
        "--include-crowd",
    )
    assert call.kwargs() == {
        "size": 416,
        "levels": 2,
        "compare": ("yolov3", "yolov3-tiny"),
        "plot": Path("o/plots/k.png"),
        "include_crowd": True,
    }
    assert Call("eval", {"detections": "d.json"}).argv() == ("eval", "-d", "d.json")
    assert Call("report", {"cfg": None, "out_dir": "o"}).argv() == ("report", "-o", "o")
    assert Call("x", {"predictions": "p", "k": 4}).kwargs(lambda key, v: v * 2) == {"predictions": "pp", "k": 8}


def test_every_listed_command_parses_with_the_cli(sample_report):
    """Each reproducing command is a valid invocation of its cocostat command (click parses it)."""
    for s in sample_report.analyses:
        if s.status != "done":
            continue
        argv = shlex.split(s.command)[1:]
        cmd = main.commands[argv[0]]
        ctx = cmd.make_context(argv[0], argv[1:])  # raises on an unknown or malformed option
        assert ctx.params


# --------------------------------------------------------------------------------------------------
# kmeans is skipped on a typed condition, not on an error message's text
# --------------------------------------------------------------------------------------------------
def test_kmeans_skipped_on_too_few_distinct_boxes_and_only_then(tmp_path, monkeypatch):
    from cocostat.data import from_dict
    from cocostat.errors import TooFewBoxesError

    assert issubclass(TooFewBoxesError, OptionError)  # the CLI still exits 2 on it
    coco = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(3)],
        "annotations": [
            {
                "id": j,
                "image_id": j % 3,
                "category_id": 1,
                "bbox": [1, 1, 10 + 10 * (j % 3), 20],
                "area": 200.0,
                "iscrowd": 0,
            }
            for j in range(12)
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    ds = from_dict(coco, name="three-sizes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        res = build_report(ds, out_dir=tmp_path / "r")
    km = res.section("kmeans")
    assert km.status == "skipped" and km.reason.startswith("only 3 distinct box size(s)")
    assert "kmeans_anchors.png" not in {p.name for s in res.analyses for p in s.plots}

    import cocostat.anchors as anchors

    def fails(*a, **k):  # an error that merely mentions the words must not be taken for that condition
        raise OptionError("--size 417: no distinct box size fits")

    monkeypatch.setattr(anchors, "kmeans", fails)
    with warnings.catch_warnings(), pytest.raises(OptionError, match="417"):
        warnings.simplefilter("ignore", CocostatWarning)
        build_report(ds, out_dir=tmp_path / "s")
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------------------------------
# Bad inputs and interruptions: nothing half-written, an older report never mixed with a new one
# --------------------------------------------------------------------------------------------------
def _tree(folder):
    """{relative path: bytes} of every file under folder (symlinks as their target)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _siblings(folder):
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def test_truncated_detections_give_one_line_and_leave_nothing(synth_model, tmp_path):
    ann = synth_model[0]
    _, first = _model_report(synth_model, tmp_path, "a")
    det = first.predictions / "detections" / "rank000-chunk000000.parquet"  # what the report reads
    det.write_bytes(det.read_bytes()[: len(det.read_bytes()) // 2])  # truncated mid-way
    out = tmp_path / "b"
    res = CliRunner().invoke(
        main,
        [
            "report",
            str(ann),
            "--images",
            str(tmp_path / "synth"),
            "--predictions",
            str(first.predictions),
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and str(det) in res.stderr and "cannot read the detection part" in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("error:")]) == 1
    assert not out.exists() and _siblings(out) == []  # no plots/ with three PNGs in it, no stage


@pytest.mark.parametrize("case", ["size", "weights", "images"])
def test_early_errors_leave_no_report_folder(synth_model, tmp_path, case):
    ann, cfg, weights = synth_model
    args = ["report", str(ann), "--images", str(tmp_path / "synth"), "--cfg", str(cfg), "--weights", str(weights)]
    if case == "size":
        args += ["--size", "417"]
        message = "417"
    elif case == "weights":
        weights.write_bytes(weights.read_bytes()[:100])
        message = "tiny.weights: cfg tiny.cfg expects"
    else:
        (tmp_path / "synth" / "0003.png").unlink()
        message = "0003.png"
    out = tmp_path / "deep" / "r"
    res = CliRunner().invoke(main, [*args, "-o", str(out), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / "deep").exists()  # not even an empty OUT/plots/


def _old_report(synth_model, tmp_path):
    """A complete report (with a model) in tmp_path/a, plus a file of the user's there."""
    ds, first = _model_report(synth_model, tmp_path, "a")
    (tmp_path / "a" / "notes.txt").write_text("mine")
    return ds, first


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_interrupted_report_leaves_the_older_one_intact(synth_model, tmp_path, monkeypatch, exc):
    import cocostat.pairs

    _old_report(synth_model, tmp_path)
    before = _tree(tmp_path / "a")
    assert "plots/eval_summary.png" in before and "report.md" in before

    def crash(*a, **k):  # overlap runs after anchor-audit, mismatch, eval and errors have drawn their plots
        raise exc

    monkeypatch.setattr(cocostat.pairs, "overlap", crash)
    with warnings.catch_warnings(), pytest.raises(type(exc)):
        warnings.simplefilter("ignore", CocostatWarning)
        build_report(load_dataset("sample"), out_dir=tmp_path / "a")  # another dataset, no predictions
    assert _tree(tmp_path / "a") == before  # the old report, byte for byte: no new plot beside it
    assert _siblings(tmp_path / "a") == []


def test_new_report_replaces_the_old_one_whole_and_keeps_foreign_files(synth_model, tmp_path):
    ds, first = _old_report(synth_model, tmp_path)
    old = _tree(tmp_path / "a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        res = build_report(ds, out_dir=tmp_path / "a", predictions=first.predictions)  # the predictions in OUT
    new = _tree(tmp_path / "a")
    assert new["notes.txt"] == b"mine"  # the user's file
    assert {k: v for k, v in new.items() if k.startswith("predictions/")} == {
        k: v for k, v in old.items() if k.startswith("predictions/")
    }  # the input folder, carried over
    assert set(new) - {k for k in new if k.startswith("predictions/")} == {
        "notes.txt",
        *(p.relative_to(res.out_dir).as_posix() for p in res.files),
    }
    assert str(res.out_dir / "predictions") in res.markdown.read_text()
    assert ".staging-" not in res.markdown.read_text() + res.html.read_text()
    assert ".staging-" not in json.dumps(res.to_dict(), default=str)
    assert _siblings(tmp_path / "a") == []


def test_report_sections_never_name_the_staging_folder(synth_model, tmp_path):
    ann, cfg, weights = synth_model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CocostatWarning)
        ds = load_coco(ann, image_dir=tmp_path / "synth", cache=False)
        res = build_report(ds, out_dir=tmp_path / "rep", cfg=cfg, weights=weights, size=64, progress=False)
    text = res.markdown.read_text() + res.html.read_text() + json.dumps(res.to_dict(), default=str)
    text += " ".join(str(w.message) for w in caught)
    assert ".staging-" not in text
    assert res.section("anchor-audit").result.source == f"predictions {tmp_path / 'rep' / 'predictions'}"
    assert res.section("predict").result.out_dir == tmp_path / "rep" / "predictions"
    for s in res.analyses:
        for p in s.plots:
            assert p.parent == tmp_path / "rep" / "plots" and p.is_file()


def test_swap_killed_between_renames_is_restored(tmp_path):
    import subprocess
    import sys

    from cocostat.staging import StagedFolder

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    pid = int(dead.stdout)
    holder = tmp_path / f".rep.old-{pid}-abc"
    (holder / "rep").mkdir(parents=True)
    (holder / "rep" / "report.md").write_text("old")
    stale = tmp_path / f".rep.staging-{pid}-xyz"
    stale.mkdir()
    with StagedFolder(tmp_path / "rep", keep=lambda rel: True) as stage:
        assert (tmp_path / "rep" / "report.md").read_text() == "old"  # put back before anything else
        assert not holder.exists() and not stale.exists()
        stage.real(tmp_path / "rep" / "new.txt").write_text("new")
        stage.commit()
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["new.txt", "report.md"]
    assert _siblings(tmp_path / "rep") == []


def test_out_may_not_be_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["report", "-o", "."])
    assert res.exit_code == 2 and "current folder" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_skipped_predict_section_does_not_say_the_model_ran(sample_report):
    md = sample_report.markdown.read_text()
    section = md.split("## predict\n", 1)[1].split("\n## ", 1)[0]
    assert "*Skipped: no model" in section
    assert "ran once" not in section
