"""`cocostat eval` and `cocostat errors` through the CLI: outputs, options, bad input (exit 2)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cocostat.cli import main
from cocostat.data import load_dataset, sample_path
from cocostat.evaluate import STAT_NAMES
from tests.test_evaluate import fake_detections, pycocotools_eval, yolo_predictions


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def sample_dets(tmp_path_factory):
    coco = json.loads(sample_path().read_text())
    dets = fake_detections(coco, seed=11)
    file = tmp_path_factory.mktemp("dets") / "dets.json"
    file.write_text(json.dumps(dets))
    return coco, dets, file


def invoke(runner, *args):
    res = runner.invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def test_eval_prints_pycocotools_summary_exactly(runner, sample_dets):
    coco, dets, file = sample_dets
    _, text = pycocotools_eval(coco, dets)
    res = invoke(runner, "eval", "-d", file)
    lines = res.stdout.splitlines()
    ref = text.splitlines()
    assert len(ref) == 12
    start = lines.index(ref[0])
    assert lines[start : start + 12] == ref  # the 12 lines, consecutive, as pycocotools words them
    assert "Loading" not in res.stdout and "DONE" not in res.stdout and "index created" not in res.stdout
    header = next(line for line in lines if "Class" in line)
    assert [w for w in header.replace("┃", " ").split()] == ["Class", "Images", "Targets", "P", "R", "mAP@0.5", "F1"]


def test_eval_json(runner, sample_dets):
    coco, dets, file = sample_dets
    ev, _ = pycocotools_eval(coco, dets)
    data = json.loads(invoke(runner, "eval", "sample", "--detections", file, "--format", "json").stdout)
    assert data["stats"] == list(ev.stats) and [data[k] for k in STAT_NAMES] == list(ev.stats)
    assert data["backend"] == "pycocotools" and data["class_agnostic"] is False and data["detections"] == len(dets)
    assert len(data["best_f1"]["rows"]) == 1 and data["best_f1"]["rows"][0]["Class"] == "all"
    assert "at_conf" not in data and 0 <= data["best_f1"]["conf"] <= 1
    data = json.loads(invoke(runner, "eval", "-d", file, "--per-class", "--conf", "0.3", "--format", "json").stdout)
    names = set(load_dataset().categories["name"])
    assert {r["Class"] for r in data["at_conf"]["rows"][1:]} <= names and len(data["at_conf"]["rows"]) > 10
    assert data["at_conf"]["conf"] == 0.3


def test_eval_class_agnostic_csv_and_output_file(runner, sample_dets, tmp_path):
    coco, dets, file = sample_dets
    rewritten = copy.deepcopy(coco)
    rewritten["categories"] = [{"id": 1, "name": "object"}]
    for a in rewritten["annotations"]:
        a["category_id"] = 1
    ev, _ = pycocotools_eval(rewritten, [{**d, "category_id": 1} for d in dets])
    out = tmp_path / "sub" / "agnostic.json"
    invoke(runner, "eval", "-d", file, "--class-agnostic", "--format", "json", "-o", out)
    assert json.loads(out.read_text())["stats"] == list(ev.stats)
    res = invoke(runner, "eval", "-d", file, "--class-agnostic", "--per-class", "--format", "csv")
    lines = res.stdout.splitlines()
    assert lines[0] == "conf,Class,Images,Targets,P,R,mAP@0.5,F1" and lines[2].split(",")[1] == "object"


def test_eval_faster_backend(runner, sample_dets):
    pytest.importorskip("faster_coco_eval")
    _, _, file = sample_dets
    ref = json.loads(invoke(runner, "eval", "-d", file, "--format", "json").stdout)
    fast = json.loads(invoke(runner, "eval", "-d", file, "--backend", "faster", "--format", "json").stdout)
    assert fast["backend"] == "faster"
    np.testing.assert_allclose(fast["stats"], ref["stats"], atol=1e-12)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "the file is empty"),
        (
            '[{"image_id": 424242, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]',
            "image_id 424242 is not an image of dataset sample",
        ),
        (
            '[{"image_id": IMG, "category_id": 999, "bbox": [1, 2, 3, 4], "score": 0.5}]',
            "category_id 999 is not a category",
        ),
        ('[{"image_id": IMG, "category_id": 1, "bbox": [1, 2, 3, -4], "score": 0.5}]', "bbox must be 4 finite numbers"),
        ('[{"image_id": IMG, "category_id": 1, "bbox": [1, 2, 3], "score": 0.5}]', "not a COCO results file"),
    ],
)
@pytest.mark.parametrize("command", ["eval", "errors"])
def test_bad_detections_exit_2(runner, tmp_path, content, message, command):
    file = tmp_path / "bad.json"
    file.write_text(content.replace("IMG", str(int(load_dataset().image_id[0]))))
    out = tmp_path / "out.json"
    res = runner.invoke(main, [command, "-d", str(file), "-o", str(out)])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and message in res.stderr and len(res.stderr.splitlines()) == 1
    assert not out.exists()


def test_bad_options_exit_2(runner, sample_dets, tmp_path):
    _, _, file = sample_dets
    cases = [
        (["eval", "-d", str(tmp_path / "missing.json")], "does not exist"),
        (["eval", "-d", str(file), "--conf", "2"], "--conf must lie in [0, 1]"),
        (["errors"], "--detections FILE"),
        (["errors", "-d", str(file), "--bg-iou", "0.6"], "error: --bg-iou must lie in [0, 0.5)"),
        (["errors", "-d", str(file), "--examples", "-1"], "error: --examples must be >= 0"),
        (["errors", "-d", str(file), "--draw-dir", str(tmp_path / "draw")], "--images DIR"),
        (["errors", "--predictions", str(tmp_path)], "not a predictions folder"),
    ]
    for args, message in cases:
        res = runner.invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.stderr, (args, res.stderr)
    assert not (tmp_path / "draw").exists()
    assert runner.invoke(main, ["eval"]).exit_code == 2  # --detections is required (click usage error)


def test_errors_table_json_csv(runner, sample_dets):
    _, _, file = sample_dets
    res = invoke(runner, "errors", "-d", file)
    for word in ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FalsePos", "FalseNeg", "merged", "hard examples"):
        assert word in res.stdout
    data = json.loads(invoke(runner, "errors", "-d", file, "--format", "json", "--examples", "3").stdout)
    assert [e["type"] for e in data["errors"]] == ["Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"]
    assert all(e["dAP"] >= 0 and e["count"] >= 0 and e["description"] for e in data["errors"])
    assert data["suppressed"] is None and len(data["hard_examples"]) == 3
    assert {"count", "objects_lost", "images", "detections"} <= set(data["merged"])
    assert data["iou"] == 0.5 and data["bg_iou"] == 0.1 and data["merge_iou"] == 0.3 and data["conf"] == 0.25
    assert 0 < data["ap"] < 100
    res = invoke(runner, "errors", "-d", file, "--format", "csv")
    lines = res.stdout.splitlines()
    assert lines[0] == "kind,type,count,dAP,description" and len(lines) == 9
    other = json.loads(
        invoke(
            runner, "errors", "-d", file, "--format", "json", "--iou-t", "0.75", "--merge-iou", "0.2", "--conf", "0.1"
        ).stdout
    )
    assert other["ap"] < data["ap"] and other["merged"]["count"] >= data["merged"]["count"]


@pytest.mark.realdata
@pytest.mark.slow
def test_errors_with_real_predictions_and_draw(runner, real_data, tmp_path_factory, tmp_path):
    folder = yolo_predictions(real_data, tmp_path_factory)
    root = real_data / "coco-tiny"
    ev, _ = pycocotools_eval(
        str(root / "annotations" / "instances_val2017.json"), json.loads((folder / "detections.json").read_text())
    )
    draw = tmp_path / "draw"
    res = invoke(
        runner,
        "errors",
        "--root",
        root,
        "val2017",
        "--predictions",
        folder,
        "--conf",
        "0.05",
        "--examples",
        "2",
        "--draw-dir",
        draw,
        "--format",
        "json",
    )
    data = json.loads(res.stdout)
    assert data["ap"] == 100 * ev.stats[1]
    assert data["suppressed"]["count"] == len(data["suppressed"]["objects"]) > 0
    assert len(data["drawn"]) == 2 and len(list(draw.glob("*.png"))) == 2
    # eval on the same folder's detections: the real yolov3-tiny numbers
    out = json.loads(
        invoke(runner, "eval", "--root", root, "val2017", "-d", folder / "detections.json", "--format", "json").stdout
    )
    assert out["stats"] == list(ev.stats)
