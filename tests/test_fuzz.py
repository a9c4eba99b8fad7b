"""Fuzzing every data command with broken versions of a real annotation file (issue 13).

hypothesis mutates an extract of the real coco-tiny val2017 file: wrong types, missing keys,
huge / NaN / infinite / negative numbers, huge ids, duplicated entries, empty lists, truncation.
Every command must end with exit 0 (with warnings at most) or exit 2 with exactly one
``error:`` line; never a traceback, never another exit status, and on exit 2 no output file.
Bounded to well under a minute: few derandomised examples, commands run in-process with CliRunner.
``COCOSTAT_FUZZ_EXAMPLES=500 COCOSTAT_FUZZ_RANDOM=1`` fuzzes longer, with fresh random examples.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocostat.cli import main
from tests.test_evaluate import fake_detections

IMAGES = 8  # images of the real file kept in the base extract
#: examples per test (each runs 7 commands) and whether they are the same on every run (CI: yes).
EXAMPLES = int(os.environ.get("COCOSTAT_FUZZ_EXAMPLES", "0")) or None
RANDOM = os.environ.get("COCOSTAT_FUZZ_RANDOM") == "1"


@pytest.fixture(scope="module")
def base(real_data, tmp_path_factory):
    """(base COCO dict, folder with detections.json and a real yolov3-tiny predictions folder on it)."""
    full = json.loads((real_data / "coco-tiny/annotations/instances_val2017.json").read_text())
    images = full["images"][:IMAGES]
    keep = {im["id"] for im in images}
    anns = [{k: v for k, v in a.items() if k != "segmentation"} for a in full["annotations"] if a["image_id"] in keep]
    coco = {"images": images, "annotations": anns, "categories": full["categories"]}
    folder = tmp_path_factory.mktemp("fuzz")
    ann = folder / "annotations" / "instances_base.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps(coco))
    (folder / "detections.json").write_text(json.dumps(fake_detections(coco, seed=7)))
    res = CliRunner().invoke(
        main,
        [
            "predict",
            str(ann),
            "--images",
            str(real_data / "coco-tiny/val2017"),
            "--cfg",
            str(real_data / "models/yolov3-tiny.cfg"),
            "--weights",
            str(real_data / "models/yolov3-tiny.weights"),
            "--size",
            "128",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--no-progress",
            "-o",
            str(folder / "preds"),
        ],
    )
    assert res.exit_code == 0, res.output
    return coco, folder


WEIRD = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            "x",
            "",
            [],
            {},
            [1, 2],
            0,
            -1,
            -(10**9),
            2**63,
            2**70,
            -(2**70),
            1e308,
            -1e308,
            math.nan,
            math.inf,
            -math.inf,
            0.5,
            1e-300,
            [0, 0, 0, 0],
            [1e308, 1e308, 1, 1],
            [math.nan, 0, 1, 1],
            [0, 0, -5, 3],
            [0, 0, 1],
            [0, 0, 1, 1, 1],
            ["a", 0, 1, 1],
        ]
    ),
    st.integers(-(2**66), 2**66),
    st.floats(allow_nan=True, allow_infinity=True),
)
SECTIONS = ("images", "annotations", "categories")
KEYS = {
    "images": ("id", "width", "height", "file_name"),
    "annotations": ("id", "image_id", "category_id", "bbox", "area", "iscrowd"),
    "categories": ("id", "name", "supercategory"),
}


NUMBER = st.one_of(st.integers(-5, 5000), st.floats(-1e4, 1e5), st.sampled_from([0, -1, 1e308, 2**70, 2**63 - 1]))
PLAUSIBLE = {  # values of the right type and shape, often absurd: most files stay loadable
    "id": st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-3, 10), st.sampled_from([2**63, 2**70])),
    "image_id": st.one_of(st.integers(0, 10**6), st.sampled_from([2**70, -1])),
    "category_id": st.one_of(st.integers(0, 100), st.sampled_from([2**70, -1])),
    "width": st.one_of(st.integers(-2, 10**5), st.sampled_from([2**40, 2**70])),
    "height": st.one_of(st.integers(-2, 10**5), st.sampled_from([2**40, 2**70])),
    "bbox": st.lists(st.one_of(NUMBER, st.floats(allow_nan=True, allow_infinity=True)), min_size=4, max_size=4),
    "area": st.one_of(NUMBER, st.none(), st.just(math.nan)),
    "iscrowd": st.one_of(st.integers(-1, 3), st.sampled_from([True, 2**70])),
    "file_name": st.one_of(st.text(max_size=300), st.just("../../etc/passwd")),
    "name": st.text(max_size=300),
    "supercategory": st.text(max_size=20),
}


@st.composite
def mutation(draw):
    kind = draw(
        st.sampled_from(
            ["set"] * 12
            + ["delete", "duplicate", "same id"] * 2
            + ["drop section", "empty section", "set section", "top level"]
        )
    )
    section = draw(st.sampled_from(SECTIONS))
    key = draw(st.sampled_from(KEYS[section]))
    value = draw(st.one_of(PLAUSIBLE[key], PLAUSIBLE[key], PLAUSIBLE[key], WEIRD))
    return (kind, section, draw(st.integers(0, 10**6)), key, value)


def mutate(coco: dict, mutations, truncate: float | None) -> str:
    d = copy.deepcopy(coco)
    for kind, section, index, key, value in mutations:
        items = d.get(section)
        if kind == "drop section":
            d.pop(section, None)
        elif kind == "empty section":
            d[section] = []
        elif kind == "set section":
            d[section] = value
        elif kind == "top level":
            d = value if not isinstance(value, (dict, list)) else d
            break
        elif isinstance(items, list) and items:
            item = items[index % len(items)]
            if not isinstance(item, dict):
                continue
            if kind == "set":
                item[key] = value
            elif kind == "delete":
                item.pop(key, None)
            elif kind == "duplicate":
                items.append(copy.deepcopy(item))
            elif kind == "same id":  # two entries sharing one id
                items[(index + 1) % len(items)]["id"] = item.get("id")
    text = json.dumps(d)  # NaN and Infinity as Python's json.dump writes them
    return text[: int(len(text) * truncate)] if truncate is not None else text


def run_every_command(base, text: str) -> None:
    """Write ``text`` as an annotation file and :func:`check` every data command on it."""
    with tempfile.TemporaryDirectory() as tmp:
        ann = Path(tmp) / "instances_fuzz.json"
        ann.write_text(text)
        for name, args in commands(ann, base[1]).items():
            out = Path(tmp) / f"{name}.json"
            check(CliRunner().invoke(main, [*args, "--format", "json", "-o", str(out)]), name, out)


def commands(ann: Path, folder: Path) -> dict[str, list[str]]:
    a = [str(ann), "--no-cache"]
    return {
        "info": ["info", *a],
        "kmeans": ["kmeans", *a, "-k", "3", "--evolve", "0", "--restarts", "1"],
        "overlap": ["overlap", *a, "--examples", "2"],
        "anchor-audit": ["anchor-audit", *a],
        "mismatch": ["mismatch", *a, "--predictions", str(folder / "preds")],
        "eval": ["eval", *a, "-d", str(folder / "detections.json")],
        "errors": ["errors", *a, "-d", str(folder / "detections.json"), "--examples", "2"],
    }


def check(res, name: str, out: Path) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.exit_code in (0, 2), (name, res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), (name, res.exception)
    assert "Traceback" not in res.output, (name, res.output)
    assert all(ln.startswith(("warning: ", "error: ", "wrote ")) for ln in lines), (name, res.stderr)
    errors = [ln for ln in lines if ln.startswith("error: ")]
    if res.exit_code == 2:
        assert len(errors) == 1, (name, res.stderr)
        assert not out.exists(), (name, "an output file was left behind on exit 2")
    else:
        assert not errors and out.is_file(), (name, res.output)


@pytest.mark.slow
@pytest.mark.realdata
@settings(
    max_examples=EXAMPLES or 30,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mutations=st.lists(mutation(), min_size=1, max_size=3), truncate=st.one_of(*[st.none()] * 5, st.floats(0.0, 0.999))
)
def test_every_data_command_survives_a_broken_annotation_file(base, mutations, truncate):
    run_every_command(base, mutate(base[0], mutations, truncate))


COORD = st.one_of(
    st.floats(-(2.0**24), 2.0**24), st.sampled_from([0.0, 1e-9, 0.5, 2.0**24, -(2.0**24), 1e7]), st.integers(-100, 5000)
)


@st.composite
def loadable_mutation(draw):
    """A change that keeps the file loadable, with values at the edges: boxes of any size and place
    (zero, tiny, 2**24 px, far outside the image), any area, 1 px or 2**24 px images, crowd flags."""
    section = draw(st.sampled_from(["annotations"] * 4 + ["images"]))
    if section == "images":
        return (
            "set",
            "images",
            draw(st.integers(0, 10**6)),
            draw(st.sampled_from(["width", "height"])),
            draw(st.one_of(st.integers(1, 2**24), st.sampled_from([1, 2, 2**24]))),
        )
    key = draw(st.sampled_from(["bbox", "bbox", "bbox", "area", "iscrowd"]))
    value = {
        "bbox": st.tuples(COORD, COORD, COORD.map(abs), COORD.map(abs)).map(list),
        "area": st.one_of(st.floats(0, 2.0**48), st.none()),
        "iscrowd": st.integers(0, 1),
    }[key]
    return ("set", "annotations", draw(st.integers(0, 10**6)), key, draw(value))


@pytest.mark.slow
@pytest.mark.realdata
@settings(
    max_examples=EXAMPLES or 25,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=st.lists(loadable_mutation(), min_size=1, max_size=12))
def test_every_data_command_survives_edge_values_in_a_loadable_file(base, mutations):
    run_every_command(base, mutate(base[0], mutations, None))
