"""The CLI skeleton and `cocostat info`: formats, atomic output, one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cocostat import __version__
from cocostat.cli import main


@pytest.fixture
def runner():
    return CliRunner()


def test_version_and_help(runner):
    res = runner.invoke(main, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    res = runner.invoke(main, ["-h"])
    assert res.exit_code == 0 and "info" in res.output


def test_info_sample_json(runner):
    res = runner.invoke(main, ["info", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["images"] == 128 and data["annotations"] == 939 and data["crowd"] == 10
    assert data["images_with_annotations"] == 126 and data["categories"] == 80
    assert sum(data["size_buckets"].values()) == 939
    person = next(c for c in data["per_category"] if c["name"] == "person")
    assert person["category_id"] == 1 and person["annotations"] == 259 and person["images"] == 61
    assert set(data["box_percentiles"]) == {"width", "height", "aspect"}


def test_info_table_and_csv(runner):
    res = runner.invoke(main, ["info"])
    assert res.exit_code == 0 and "annotations" in res.stdout and "person" in res.stdout
    res = runner.invoke(main, ["info", "sample", "--format", "csv"])
    lines = res.stdout.splitlines()
    assert lines[0].startswith("scope,category_id,name,images,") and len(lines) == 82  # dataset row + 80


@pytest.mark.realdata
def test_info_real_root(runner, real_data):
    res = runner.invoke(main, ["info", "--root", str(real_data / "coco-tiny"), "val2017", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    raw = json.loads((real_data / "coco-tiny/annotations/instances_val2017.json").read_text())
    assert data["images"] == len(raw["images"]) == 80
    assert data["annotations"] == len(raw["annotations"]) == 815
    assert data["crowd"] == sum(a["iscrowd"] for a in raw["annotations"]) == 11


def test_output_file_is_written(runner, tmp_path):
    out = tmp_path / "sub" / "info.json"
    res = runner.invoke(main, ["info", "--format", "json", "-o", str(out)])
    assert res.exit_code == 0 and res.stdout == ""
    assert json.loads(out.read_text())["annotations"] == 939
    res = runner.invoke(main, ["info", "-o", str(tmp_path / "info.txt")])
    assert "person" in (tmp_path / "info.txt").read_text()


def _write(tmp_path, text, name="instances_bad.json"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_FILES = {
    "invalid json": ('{"images": [', "invalid JSON"),
    "missing key": ('{"images": []}', "missing required field `categories`"),
    "unknown image": (
        json.dumps(
            {
                "images": [{"id": 1, "width": 9, "height": 9}],
                "categories": [{"id": 1}],
                "annotations": [{"id": 5, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}],
            }
        ),
        "annotation 5 in instances_bad.json: image_id 2",
    ),
    "negative box": (
        json.dumps(
            {
                "images": [{"id": 1, "width": 9, "height": 9}],
                "categories": [{"id": 1}],
                "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1]}],
            }
        ),
        "bbox must be 4 finite numbers with w, h >= 0",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_exit_2_one_line_no_output_file(runner, tmp_path, case):
    text, message = BAD_FILES[case]
    out = tmp_path / "out.json"
    res = runner.invoke(main, ["info", _write(tmp_path, text), "--format", "json", "-o", str(out)])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not out.exists() and not list(tmp_path.glob(".out.json*"))


def test_missing_dataset_and_file(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COCOSTAT_ROOT", raising=False)
    res = runner.invoke(main, ["info", "val2017"])
    assert res.exit_code == 2 and "tried datasets/coco/annotations/instances_val2017.json" in res.stderr
    res = runner.invoke(main, ["info", "nothing.json"])
    assert res.exit_code == 2 and "nothing.json does not exist" in res.stderr


def test_debug_shows_traceback(runner, tmp_path):
    res = runner.invoke(main, ["--debug", "info", _write(tmp_path, "{")])
    assert res.exit_code != 2 and res.exception is not None


def test_zero_size_warning_goes_to_stderr(runner, tmp_path):
    coco = {
        "images": [{"id": 1, "width": 9, "height": 9}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 1]}],
    }
    res = runner.invoke(main, ["info", _write(tmp_path, json.dumps(coco)), "--format", "json"])
    assert res.exit_code == 0
    assert "warning: " in res.stderr and "1 annotation(s) have zero width or height" in res.stderr
    assert json.loads(res.stdout)["annotations"] == 1


def test_python_dash_m(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "cocostat", "info", "--format", "json"], capture_output=True, text=True, check=True
    )
    assert json.loads(res.stdout)["images"] == 128


def test_cli_choices_are_the_library_ones():
    from cocostat import assigners
    from cocostat.assign import ASSIGNERS
    from cocostat.boxes import IOU_KINDS
    from cocostat.cli import ASSIGNER_CHOICES, IOU_CHOICES

    assert IOU_CHOICES == IOU_KINDS and ASSIGNER_CHOICES == ASSIGNERS == assigners.NAMES
    # the registry is every module of the package, each exporting the assigner of its name
    assert {"yolov3", "darknet", "yolov5"} <= set(ASSIGNERS)
    assert all(assigners.load(name).name == name for name in ASSIGNERS)


def test_cli_start_up_does_not_import_torch():
    code = "import sys, cocostat.cli; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
