"""`cocostat anchor-audit` and `cocostat mismatch` through click: outputs, files, every option, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from test_assign import ASSIGNERS  # yolov3, darknet, yolov5 (test_assigners.py has the others)

from benchmarks.bench_audit import synthetic_candidates, synthetic_dataset
from cocostat.boxes import IOU_KINDS
from cocostat.candidates import write_store
from cocostat.cli import main

PREDICTION_KEYS = (
    "feature_maps_unmatched_better",
    "objects_unmatched_beats_worst_matched",
    "objects_unmatched_beats_best_matched",
    "objects_best_from_neighbor",
)


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A predictions folder (synthetic, 150 objects, 3x3 cells) and the COCO file it was made on."""
    root = tmp_path_factory.mktemp("audit-cli")
    frame, manifest = synthetic_candidates(150, per_image=5, neighborhood=1, crowd=0.03, seed=21)
    preds = root / "preds"
    write_store(preds, frame, manifest)
    ann = root / "instances_synth.json"
    ann.write_text(json.dumps(synthetic_dataset(frame)))
    return ann, preds


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args])


def test_anchor_audit_builtin_sample_box_only(runner):
    res = run(runner, "anchor-audit", "--iou", "giou", "--format", "json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["objects"] == 929 and d["images"] == 126 and d["feature_maps"] == 378 and d["predictions"] is False
    assert d["anchors"] == "yolov3-spp" and d["iou"] == "giou" and d["unmatched_objects"] > 0
    assert all(d[k] is None for k in PREDICTION_KEYS)
    assert len(d["per_anchor"]) == 9 and d["per_anchor"][0]["pred_iou_all"] is None
    assert "per_anchor.pred_iou_matched" in d["needs_predictions"]
    assert "crowd annotation(s) left out" in res.stderr
    table = run(runner, "anchor-audit", "--iou", "giou")
    assert table.exit_code == 0 and "no predictions" in table.stdout
    assert "objects with no matched anchor" in table.stdout


def test_anchor_audit_from_folder_all_formats(runner, folder, tmp_path):
    ann, preds = folder
    res = run(
        runner,
        "anchor-audit",
        ann,
        "--predictions",
        preds,
        "--format",
        "json",
        "--examples",
        "3",
        "--per-object",
        tmp_path / "po.parquet",
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["predictions"] is True and d["source"] == f"predictions {preds}" and d["neighborhood"] == 1
    assert all(isinstance(d[k], int) for k in PREDICTION_KEYS)
    assert sum(p["best_when_unmatched"] for p in d["per_anchor"]) == d["objects_unmatched_beats_best_matched"]
    assert len(d["examples"]) == 3 and d["examples"][0]["file_name"].endswith(".jpg")
    po = pd.read_parquet(tmp_path / "po.parquet")
    assert len(po) == d["objects"] and po["unmatched_beats_best"].sum() == d["objects_unmatched_beats_best_matched"]
    csv = run(runner, "anchor-audit", ann, "--predictions", preds, "--format", "csv")
    assert csv.exit_code == 0 and csv.stdout.splitlines()[0].startswith("anchor,level,stride,w,h,matched,match_wh_iou")
    assert len(csv.stdout.splitlines()) == 10
    out = tmp_path / "audit.txt"
    table = run(runner, "anchor-audit", ann, "--predictions", preds, "-o", out)
    assert table.exit_code == 0 and "best unmatched > best matched" in out.read_text()


@pytest.mark.parametrize("assigner", ASSIGNERS)
@pytest.mark.parametrize("iou", IOU_KINDS)
def test_every_iou_and_assigner(runner, folder, iou, assigner):
    ann, preds = folder
    res = run(
        runner,
        "anchor-audit",
        ann,
        "--predictions",
        preds,
        "--iou",
        iou,
        "--assigner",
        assigner,
        "--iou-t",
        "0.3",
        "--ratio-t",
        "3",
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert (d["iou"], d["assigner"], d["iou_t"], d["ratio_t"]) == (iou, assigner, 0.3, 3.0)
    mm = run(runner, "mismatch", ann, "--predictions", preds, "--iou", iou, "--assigner", assigner, "--format", "json")
    assert mm.exit_code == 0, mm.output
    m = json.loads(mm.stdout)
    assert m["objects"] == d["objects"] and m["iou"] == iou and m["candidates_per_object"] == 9


def test_mismatch_options(runner, folder, tmp_path):
    ann, preds = folder
    res = run(
        runner,
        "mismatch",
        ann,
        "--predictions",
        preds,
        "--neighborhood",
        "1",
        "--plot",
        tmp_path / "plots",
        "--examples",
        "2",
        "--per-object",
        tmp_path / "po.csv",
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["neighborhood"] == 1 and d["candidates_per_object"] == 81 and len(d["examples"]) == 2
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["iou_vs_obj.png", "iou_vs_score.png"]
    assert d["plots"] == [str(tmp_path / "plots" / "iou_vs_obj.png"), str(tmp_path / "plots" / "iou_vs_score.png")]
    assert len(pd.read_csv(tmp_path / "po.csv")) == d["objects"]
    for key in (
        "obj_not_best",
        "obj_not_best_share",
        "score_not_best",
        "score_not_best_share",
        "obj_iou_share",
        "score_iou_share",
        "stats",
    ):
        assert key in d
    table = run(runner, "mismatch", ann, "--predictions", preds)
    assert table.exit_code == 0 and "highest objectness is not the best IoU" in table.stdout
    csv = run(runner, "mismatch", ann, "--predictions", preds, "--format", "csv")
    assert csv.stdout.splitlines()[0] == "statistic,objects,mean,var,definition"


@pytest.mark.parametrize(
    "args, message",
    [
        (["anchor-audit", "--predictions", "{preds}", "--cfg", "a.cfg", "--weights", "b.weights"], "not both"),
        (["anchor-audit", "--cfg", "a.cfg"], "--cfg and --weights go together"),
        (["anchor-audit", "--weights", "b.weights"], "--cfg and --weights go together"),
        (["anchor-audit", "--per-object", "x.txt"], "--per-object must end in .parquet or .csv"),
        (["anchor-audit", "--predictions", "{missing}"], "not a predictions folder"),
        (["anchor-audit", "--predictions", "{preds}"], "none of its annotation ids is in sample"),
        (["anchor-audit", "{ann}", "--predictions", "{preds}", "--size", "608"], "--size 608 differs"),
        (["anchor-audit", "{ann}", "--predictions", "{preds}", "--anchors", "yolov3-tiny"], "layout"),
        (["anchor-audit", "--anchors", "1,2,3"], "anchor list"),
        (["anchor-audit", "--size", "400"], "multiple of every stride"),
        (["anchor-audit", "--iou-t", "2"], "--iou-t must lie in [0, 1)"),
        (["anchor-audit", "--examples", "-1"], "--examples must be >= 0"),
        (["mismatch"], "mismatch needs predictions"),
        (["mismatch", "{ann}", "--predictions", "{preds}", "--neighborhood", "2"], "--neighborhood 2 is wider"),
        (["anchor-audit", "--device", "tpu"], "--device must be"),
    ],
)
def test_bad_input_exits_2(runner, folder, tmp_path, args, message):
    ann, preds = folder
    args = [a.format(ann=ann, preds=preds, missing=tmp_path / "nope") for a in args]
    out = tmp_path / "out.json"
    res = runner.invoke(main, [*args, "--format", "json", "-o", str(out)])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith("error: ")  # warnings may come before it
    assert sum(line.startswith("error: ") for line in lines) == 1 and "Traceback" not in res.stderr
    assert not out.exists()


def test_help_lists_options(runner):
    for cmd in ("anchor-audit", "mismatch"):
        res = run(runner, cmd, "--help")
        assert res.exit_code == 0
        for opt in (
            "--predictions",
            "--cfg",
            "--weights",
            "--anchors",
            "--size",
            "--iou",
            "--assigner",
            "--iou-t",
            "--ratio-t",
            "--per-object",
            "--examples",
            "--neighborhood",
            "--device",
        ):
            assert opt in res.stdout, (cmd, opt)
    assert "--plot" in run(runner, "mismatch", "--help").stdout


@pytest.mark.slow
@pytest.mark.realdata
def test_model_on_the_fly_real(runner, real_data, tmp_path):
    """yolov3-tiny run on the fly on coco-tiny val2017 equals the audit of a stored predictions folder."""
    models = real_data / "models"
    common = ["--root", real_data / "coco-tiny", "val2017", "--format", "json", "--device", "cpu"]
    res = run(
        runner,
        "anchor-audit",
        *common,
        "--cfg",
        models / "yolov3-tiny.cfg",
        "--weights",
        models / "yolov3-tiny.weights",
        "--iou",
        "ciou",
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["objects"] == 804 and d["feature_maps"] == 160 and d["source"] == "model yolov3-tiny.cfg"
    pred = run(
        runner,
        "predict",
        *common,
        "--cfg",
        models / "yolov3-tiny.cfg",
        "--weights",
        models / "yolov3-tiny.weights",
        "-o",
        tmp_path / "p",
    )
    assert pred.exit_code == 0, pred.output
    stored = run(runner, "anchor-audit", *common, "--predictions", tmp_path / "p", "--iou", "ciou")
    s = json.loads(stored.stdout)
    for key in ("objects", "unmatched_objects", *PREDICTION_KEYS):
        assert s[key] == d[key], key
    mm = run(
        runner,
        "mismatch",
        *common,
        "--cfg",
        models / "yolov3-tiny.cfg",
        "--weights",
        models / "yolov3-tiny.weights",
        "--neighborhood",
        "1",
    )
    assert mm.exit_code == 0 and json.loads(mm.stdout)["candidates_per_object"] == 54
