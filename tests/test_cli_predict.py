"""`cocostat predict` on the command line: outputs, summary formats, resume, drawing, one-line errors (exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from cocostat.candidates import read_predictions
from cocostat.cli import main
from cocostat.models import build_model, write_weights

TINY_CFG = Path(__file__).with_name("test_models.py").read_text().split('TINY_CFG = """\\\n')[1].split('"""')[0]


def _coco(root: Path, n: int = 3) -> Path:
    """ROOT/annotations/instances_mini.json with n plain images in ROOT/mini/ (2 categories)."""
    (root / "mini").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        Image.new("RGB", (80, 60), (40 * i, 100, 200)).save(root / "mini" / f"{i}.jpg")
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 80, "height": 60})
        anns.append(
            {
                "id": 10 + i,
                "image_id": i + 1,
                "category_id": 1 + i % 2,
                "bbox": [10, 10, 30, 20],
                "area": 600,
                "iscrowd": 0,
            }
        )
    path = root / "annotations" / "instances_mini.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
        )
    )
    return path


@pytest.fixture
def files(tmp_path):
    _coco(tmp_path / "data")
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    weights = write_weights(build_model(cfg, seed=3), tmp_path / "tiny.weights")
    return tmp_path, cfg, weights


def _args(files, *extra):
    tmp, cfg, weights = files
    return [
        "predict",
        "--root",
        str(tmp / "data"),
        "mini",
        "--cfg",
        str(cfg),
        "--weights",
        str(weights),
        "--size",
        "64",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--no-progress",
        *extra,
    ]


def test_predict_writes_the_folder_and_a_json_summary(files):
    tmp = files[0]
    res = CliRunner().invoke(
        main, _args(files, "-o", str(tmp / "out"), "--format", "json", "--draw", "2", "--conf", "0.2")
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["images"] == 3 and summary["annotations"] == 3 and summary["images_processed"] == 3
    assert summary["candidates_per_annotation"] == 54 and summary["candidate_rows"] == 3 * 54
    pred = read_predictions(tmp / "out")
    assert len(pred.candidates) == 162 and summary["detections"] == len(pred.detections())
    assert pred.manifest["detections"]["conf"] == 0.2
    assert sorted(p.name for p in (tmp / "out" / "draw").iterdir()) == ["1.png", "2.png"]
    assert summary["drawn"] == [str(tmp / "out" / "draw" / n) for n in ("1.png", "2.png")]
    # --resume on a complete folder: nothing recomputed; the table format names the folder
    again = CliRunner().invoke(main, _args(files, "-o", str(tmp / "out"), "--resume", "--conf", "0.2"))
    assert again.exit_code == 0, again.output
    assert re.search(r"images processed / resumed\s*│\s*0 / 3", again.stdout)
    csv = CliRunner().invoke(main, _args(files, "-o", str(tmp / "out2"), "--format", "csv"))
    assert csv.stdout.splitlines()[0] == "image_id,annotations,detections" and len(csv.stdout.splitlines()) == 4


def _fails(args, pattern):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), res.stderr
    return res


def test_bad_cfg_weights_and_options_exit_2(files):
    tmp, cfg, weights = files
    out = ["-o", str(tmp / "out")]
    bad_cfg = tmp / "bad.cfg"
    bad_cfg.write_text(cfg.read_text().replace("activation=mish", "activation=swish"))
    args = _args(files, *out)
    _fails(
        [a if a != str(cfg) else str(bad_cfg) for a in args],
        r"^error: bad.cfg line \d+, section \[convolutional\] \(layer 2\): unsupported activation 'swish'",
    )
    short = tmp / "short.weights"
    short.write_bytes(weights.read_bytes()[:-40])
    _fails(
        [a if a != str(weights) else str(short) for a in args],
        r"^error: short.weights: cfg tiny.cfg expects \d+ values, file holds \d+",
    )
    _fails(_args(files, *out, "--half"), r"^error: --half needs a CUDA device")
    _fails(_args(files, *out, "--size", "60"), r"^error: --size must be a multiple of 8 for tiny.cfg")
    _fails(_args(files, *out, "--device", "tpu"), r"^error: --device must be auto, cpu, cuda or cuda:N")
    (tmp / "data" / "mini" / "1.jpg").unlink()
    _fails(_args(files, *out), r"^error: image 2 of mini: file .*1.jpg not found")
    assert not (tmp / "out" / "manifest.json").exists()


def test_missing_required_options(files):
    res = CliRunner().invoke(main, ["predict", "--cfg", str(files[1]), "-o", "x"])
    assert res.exit_code == 2 and "--weights" in res.output


@pytest.mark.realdata
def test_real_yolov3_tiny_on_coco_tiny(real_data, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "predict",
            "--root",
            str(real_data / "coco-tiny"),
            "val2017",
            "--cfg",
            str(real_data / "models/yolov3-tiny.cfg"),
            "--weights",
            str(real_data / "models/yolov3-tiny.weights"),
            "--size",
            "256",
            "-o",
            str(tmp_path / "p"),
            "--draw",
            "1",
            "--device",
            "cpu",
            "--no-progress",
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["images"] == 80 and s["annotations"] == 815 and s["candidate_rows"] == 815 * 54
    dets = read_predictions(tmp_path / "p").detections()
    assert max(d["score"] for d in dets if d["category_id"] == 1) > 0.5  # a confident person somewhere
    assert len(s["drawn"]) == 1
    with Image.open(s["drawn"][0]) as im:
        assert im.format == "PNG" and im.size[0] > 100


@pytest.mark.gpu
def test_cuda_half_on_the_command_line(files):
    tmp = files[0]
    args = [a if a != "cpu" else "cuda" for a in _args(files, "-o", str(tmp / "gpu"), "--half", "--format", "json")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    pred = read_predictions(tmp / "gpu")
    assert pred.manifest["half"] and pred.manifest["device"].startswith("cuda") and len(pred.candidates) == 162
