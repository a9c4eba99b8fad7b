"""`cocostat overlap` through the CLI: every option, every output, the bad-input paths (exit 2)."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from cocostat.cli import main
from cocostat.data import load_dataset
from cocostat.pairs import overlap


@pytest.fixture
def runner():
    return CliRunner()


def run_json(runner, *args):
    res = runner.invoke(main, ["overlap", *args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_default_json_keys_and_counts(runner):
    d = run_json(runner)
    assert {"images", "objects", "pairs", "gap", "iou", "center", "crowded", "elongated"} <= set(d)
    assert d["gap"]["threshold"] == 10.0 and d["iou"]["threshold"] == 0.6 and d["iou"]["metric"] == "iou"
    assert d["center"]["threshold"] == 10.0 and d["crowded"]["min_pairs"] == 7
    assert d["elongated"]["threshold"] == 4.0
    assert (d["images"], d["objects"]) == (126, 939)  # the sample: COCO128, iscrowd included
    rep = overlap(load_dataset("sample"))
    assert d["pairs"] == rep.pairs and d["gap"]["pairs"] == rep.gap_pairs
    assert d["iou"]["images"] == rep.iou_images and d["crowded"]["images"] == rep.crowded_images
    assert d["elongated"]["objects"] == rep.elongated_objects
    assert "by_category" not in d and "examples" not in d


def test_thresholds_reach_the_library(runner):
    args = [
        "--gap",
        "3",
        "--iou-t",
        "0.2",
        "--pair-metric",
        "ioa",
        "--center",
        "40",
        "--crowd-pairs",
        "2",
        "--aspect",
        "2.5",
        "--size",
        "320",
        "--exclude-crowd",
    ]
    d = run_json(runner, "sample", *args)
    rep = overlap(
        load_dataset("sample"),
        gap=3,
        iou=0.2,
        pair_metric="ioa",
        center=40,
        crowd_pairs=2,
        aspect=2.5,
        size=320,
        exclude_crowd=True,
    )
    assert d == json.loads(json.dumps(rep.to_dict()))
    assert d["objects"] == 939 - 10 and d["exclude_crowd"] is True and d["size"] == 320
    assert d["iou"]["metric"] == "ioa" and d["crowded"]["min_pairs"] == 2
    # each option changes what it should
    base = run_json(runner)
    assert run_json(runner, "--gap", "30")["gap"]["pairs"] > base["gap"]["pairs"]
    assert run_json(runner, "--iou-t", "0.3")["iou"]["pairs"] > base["iou"]["pairs"]
    assert run_json(runner, "--pair-metric", "ioa")["iou"]["pairs"] > base["iou"]["pairs"]
    assert run_json(runner, "--center", "40")["center"]["pairs"] > base["center"]["pairs"]
    assert run_json(runner, "--crowd-pairs", "1")["crowded"]["images"] == base["center"]["images"]
    assert run_json(runner, "--aspect", "2")["elongated"]["objects"] > base["elongated"]["objects"]
    assert run_json(runner, "--size", "64")["gap"]["pairs"] > base["gap"]["pairs"]  # everything closer


def test_table_csv_and_output_file(runner, tmp_path):
    res = runner.invoke(main, ["overlap"])
    assert res.exit_code == 0 and "pair criteria" in res.stdout and "IoU > 0.6" in res.stdout
    res = runner.invoke(main, ["overlap", "--format", "csv"])
    lines = res.stdout.splitlines()
    assert lines[0].startswith("criterion,definition,threshold,pairs") and len(lines) == 6
    out = tmp_path / "o.json"
    res = runner.invoke(main, ["overlap", "--format", "json", "-o", str(out)])
    assert res.exit_code == 0 and res.stdout == ""
    assert json.loads(out.read_text())["objects"] == 939


def test_by_category_and_examples(runner):
    d = run_json(runner, "--by-category", "--examples", "4")
    person = d["by_category"]["gap"][0]
    assert (person["category_a"], person["category_b"]) == ("person", "person")
    assert person["pairs"] <= person["all_pairs"] and 0 < person["share"] <= 1
    assert all(len(d["examples"][c]) == 4 for c in ("gap", "iou", "center", "elongated"))
    top = d["examples"]["gap"][0]
    assert top["file_name"].endswith(".jpg") and top["count"] >= d["examples"]["gap"][1]["count"]
    res = CliRunner().invoke(main, ["overlap", "--by-category", "--examples", "2"])
    assert "person" in res.stdout and "most extreme images" in res.stdout


@pytest.mark.parametrize("name", ["per.csv", "per.parquet", "per.pq"])
def test_per_image_file(runner, tmp_path, name):
    path = tmp_path / name
    res = runner.invoke(main, ["overlap", "--per-image", str(path), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert f"wrote {path}" in res.stderr and json.loads(res.stdout)["objects"] == 939
    frame = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
    assert len(frame) == 128 and frame["objects"].sum() == 939
    assert {"image_id", "file_name", "gap_pairs", "iou_pairs", "center_pairs", "max_iou", "min_gap"} <= set(frame)


def test_plot_dir(runner, tmp_path):
    res = runner.invoke(
        main, ["overlap", "--plot", str(tmp_path / "plots"), "--pair-metric", "ioa", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    json.loads(res.stdout)  # the "wrote" lines go to stderr, stdout stays JSON
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["overlap_aspect.png", "overlap_center.png", "overlap_gap.png", "overlap_ioa.png"]
    for n in names:
        assert f"overlap_{n.split('_')[1]}" in res.stderr
        with Image.open(tmp_path / "plots" / n) as im:
            assert im.format == "PNG"


@pytest.mark.realdata
def test_real_root(runner, real_data):
    d = run_json(runner, "--root", str(real_data / "coco-tiny"), "val2017")
    raw = json.loads((real_data / "coco-tiny/annotations/instances_val2017.json").read_text())
    assert d["objects"] == len(raw["annotations"]) == 815
    assert d["images"] == len({a["image_id"] for a in raw["annotations"]})
    ex = run_json(runner, "--root", str(real_data / "coco-tiny"), "val2017", "--exclude-crowd")
    assert ex["objects"] == 815 - 11


@pytest.mark.parametrize(
    "args,message",
    [
        (["--iou-t", "1.5"], "error: --iou-t must be a finite number in [0, 1], got 1.5"),
        (["--gap", "-1"], "error: --gap must be a finite number >= 0 (pixels), got -1.0"),
        (["--center", "nan"], "error: --center must be a finite number >= 0 (pixels), got nan"),
        (["--aspect", "0.5"], "error: --aspect must be a finite number >= 1, got 0.5"),
        (["--crowd-pairs", "0"], "error: --crowd-pairs must be an integer >= 1, got 0"),
        (["--size", "0"], "error: --size must be a finite number > 0 (pixels), got 0"),
        (["--examples", "-1"], "error: --examples must be an integer >= 0, got -1"),
        (["--per-image", "per.xlsx"], "error: --per-image file must end in .csv, .parquet or .pq, got 'per.xlsx'"),
        (["nosuchsplit", "--root", "."], "error: dataset 'nosuchsplit' not found"),
    ],
)
def test_bad_input_exits_2(runner, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)  # (click 8.5 deprecates runner.isolated_filesystem)
    res = runner.invoke(main, ["overlap", *args, "--plot", "plots", "-o", "out.json"])
    assert res.exit_code == 2
    assert message in res.stderr and res.stderr.count("\n") == 1
    assert os.listdir(".") == []  # nothing written: no plots, no output, no per-image file


def test_bad_choice_is_a_usage_error(runner):
    res = runner.invoke(main, ["overlap", "--pair-metric", "giou"])
    assert res.exit_code == 2 and "'giou' is not one of 'iou', 'ioa'" in res.stderr
