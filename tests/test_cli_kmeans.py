"""`cocostat kmeans` through click's CliRunner: every option, the outputs, and the bad-input paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cocostat import anchors as A
from cocostat.cli import main

FAST = ["--evolve", "50", "--restarts", "2"]


def run(args, **kw):
    return CliRunner().invoke(main, ["kmeans", *args], **kw)


def run_json(args):
    res = run([*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_default_table_on_the_sample():
    res = run(["--size", "416"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "kmeans anchors for sample" in out
    assert "letterbox to 416 px" in out
    assert "iscrowd box(es) left out" in res.stderr and "under 2 px" in res.stderr
    for line in (
        "anchors = ",
        "num = 9",
        "mask = 6,7,8",
        "mask = 3,4,5",
        "mask = 0,1,2",
        "anchors:",
        "# P3/8",
        "# P5/32",
    ):
        assert line in out, line
    assert "k-means start" in out and "avg_iou" in out and "bpr_iou" in out
    assert "fitness (iou-bpr) start -> final" in out


def test_json_keys_seed_determinism_and_csv():
    d1 = run_json(FAST)
    d2 = run_json(FAST)
    assert d1["anchors"] == d2["anchors"] and d1["seed"] == 0
    for key in ("size", "resize", "k", "seed", "boxes", "anchors", "metrics", "compare"):
        assert key in d1
    assert set(d1["metrics"]) == set(A.METRIC_KEYS)
    assert d1["size"] == 416 and d1["resize"] == "letterbox" and d1["k"] == 9 and len(d1["anchors"]) == 9
    areas = [w * h for w, h in d1["anchors"]]
    assert areas == sorted(areas)
    d3 = run_json([*FAST, "--seed", "5"])
    assert d3["seed"] == 5
    res = run([*FAST, "--format", "csv"])
    assert res.exit_code == 0
    assert res.stdout.splitlines()[0] == "set,anchor,level,stride,w,h,aspect,best_for,share"
    assert len(res.stdout.splitlines()) == 1 + 9


def test_every_option(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(
        "[yolo]\nmask = 1,2\nanchors = 10,14, 23,27, 37,58\n[yolo]\nmask = 0\nanchors = 10,14, 23,27, 37,58\n"
    )
    plot = tmp_path / "plots" / "kmeans_anchors.png"
    out = tmp_path / "out.json"
    res = run(
        [
            "sample",
            "--size",
            "320",
            "--resize",
            "stretch",
            "--multi-scale",
            "320",
            "480",
            "-k",
            "6",
            "--levels",
            "3",
            "--restarts",
            "3",
            "--seed",
            "2",
            "--evolve",
            "30",
            "--fitness",
            "ratio",
            "--iou-t",
            "0.3",
            "--ratio-t",
            "3",
            "--include-crowd",
            "--compare",
            "yolov3",
            "--compare",
            str(cfg),
            "--compare",
            "10,13, 16,30, 33,23",
            "--plot",
            str(plot.parent),
            "--device",
            "cpu",
            "--format",
            "json",
            "-o",
            str(out),
        ]
    )
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and f"wrote {plot}" in res.stderr
    assert plot.read_bytes()[:4] == b"\x89PNG"
    d = json.loads(out.read_text())
    assert (d["size"], d["resize"], d["multi_scale"], d["k"], d["seed"], d["restarts"], d["evolve"]) == (
        320,
        "stretch",
        [320, 480],
        6,
        2,
        3,
        30,
    )
    assert (d["fitness"], d["iou_t"], d["ratio_t"], d["excluded"]["crowd"]) == ("ratio", 0.3, 3.0, 0)
    assert d["masks"] == [[4, 5], [2, 3], [0, 1]]
    assert list(d["compare"]) == ["yolov3", str(cfg), "10,13,16,30,33,23"]
    assert d["compare"][str(cfg)]["masks"] == [[1, 2], [0]]
    assert d["plot"] == str(plot) and d["device"] == "cpu"
    assert d["evolution"]["fitness"] >= d["evolution"]["start_fitness"]


def test_table_with_compare_and_k_means_only():
    res = run(["--evolve", "0", "--compare", "yolov3-tiny", "--compare", "yolov3-spp"])
    assert res.exit_code == 0, res.output
    assert "anchors of yolov3-tiny" in res.stdout and "anchors of yolov3-spp" in res.stdout
    assert "evolution generations" in res.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["-k", "0"], "error: --num-anchors must be an integer >= 1, got 0"),
        (["-k", "5000"], "fewer than the 5000 anchors asked for (k); lower k"),
        (["--levels", "10"], "error: --levels must be at most k=9, got 10"),
        (["--size", "0"], "error: --size must be an integer >= 1"),
        (["--multi-scale", "700", "600"], "error: --multi-scale (MIN, MAX) needs MIN <= MAX, got 700 600"),
        (["--multi-scale", "330", "350"], "must contain a multiple of 32"),
        (["--iou-t", "1.5"], "error: --iou-t must be a number in [0, 1)"),
        (["--ratio-t", "0.5"], "error: --ratio-t must be a number >= 1"),
        (["--restarts", "0"], "error: --restarts must be an integer >= 1"),
        (["--evolve", "-1"], "error: --evolve must be an integer >= 0"),
        (["--compare", "yolov9"], "unknown anchor set 'yolov9'"),
        (["--compare", "10,13,16"], "even, non-zero count"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
        (["no_such_split", "--root", "/nonexistent"], "dataset 'no_such_split' not found"),
    ],
)
def test_bad_input_exit_2(args, message, tmp_path):
    res = run([*args, "--evolve", "5"] if "--evolve" not in args else args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output


def test_bad_cfg_and_cuda_without_cuda(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[yolo]\nanchors = 1,2\nmask = 4\n")
    res = run(["--compare", str(cfg)])
    assert res.exit_code == 2 and "mask indices must be in 0..0" in res.stderr
    import torch

    if not torch.cuda.is_available():
        res = run(["--device", "cuda"])
        assert res.exit_code == 2 and "no CUDA device" in res.stderr


def test_no_half_written_file_on_error(tmp_path):
    out = tmp_path / "o.json"
    res = run(["--compare", "nope", "-o", str(out), "--format", "json"])
    assert res.exit_code == 2 and not out.exists()


@pytest.mark.realdata
def test_real_subset_with_presets(real_data, tmp_path):
    plot = tmp_path / "kmeans_anchors.png"
    res = run(
        [
            "--root",
            str(real_data / "coco-tiny"),
            "val2017",
            "--compare",
            "yolov3",
            "--compare",
            "yolov3-tiny",
            "--evolve",
            "200",
            "--plot",
            str(tmp_path),
        ]
    )
    assert res.exit_code == 0, res.output
    assert plot.is_file()  # --plot DIRECTORY gets kmeans_anchors.png
    assert "804 of 815 annotations" in res.stdout and "anchors of yolov3-tiny" in res.stdout
    d = run_json(
        [
            "--root",
            str(real_data / "coco-tiny"),
            "val2017",
            "--compare",
            "yolov3",
            "--compare",
            str(real_data / "cfg" / "yolov3-tiny.cfg"),
            "--evolve",
            "200",
        ]
    )
    assert d["boxes"] == 804 and d["excluded"]["crowd"] == 11
    y3 = d["compare"]["yolov3"]["metrics"]
    assert y3["avg_iou"] == pytest.approx(0.6225, abs=5e-5)
    tiny = d["compare"][str(real_data / "cfg" / "yolov3-tiny.cfg")]
    assert tiny["masks"] == [[3, 4, 5], [0, 1, 2]] and sum(tiny["best_for"]) == 804
    assert d["metrics"]["avg_iou"] > y3["avg_iou"] and d["metrics"]["bpr_iou"] >= y3["bpr_iou"]
    assert np.isclose(sum(d["best_for"]), 804)
