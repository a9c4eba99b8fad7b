"""Every bad input and every interruption (issue 13): one `error:` line, exit 2 (130 for Ctrl-C), no
traceback, nothing half-written or stale. One test (or group) per numbered case of the issue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.bench_audit import synthetic_candidates, synthetic_dataset
from cocostat.atomic import TMP_TAG, FrameWriter, atomic_path, write_text
from cocostat.candidates import read_predictions, write_candidates, write_manifest
from cocostat.cli import OutputPath, main
from cocostat.data import cache_dir, load_coco, sample_path
from cocostat.models import build_model, write_weights
from tests.test_cli_predict import TINY_CFG, _args, _coco, files  # noqa: F401 - files is a fixture
from tests.test_evaluate import fake_detections

ROOT = Path(__file__).resolve().parents[1]


def run(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def error_line(res, code: int = 2) -> str:
    """The single `error:` line of a failed command; every other stderr line is a warning or 'wrote'."""
    assert res.exit_code == code, (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output and "Usage:" not in res.output and "Aborted" not in res.output
    lines = res.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    assert all(ln.startswith(("error: ", "warning: ")) for ln in lines), res.stderr
    return errors[0]


def coco(**change) -> dict:
    """A small valid COCO dict: 2 images (640 x 480), 3 annotations, 2 categories."""
    d = {
        "images": [
            {"id": 1, "width": 640, "height": 480, "file_name": "a.jpg"},
            {"id": 2, "width": 640, "height": 480, "file_name": "b.jpg"},
        ],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 20], "area": 600, "iscrowd": 0},
            {"id": 6, "image_id": 1, "category_id": 2, "bbox": [100, 50, 40, 80], "area": 3200, "iscrowd": 0},
            {"id": 7, "image_id": 2, "category_id": 1, "bbox": [200, 100, 60, 60], "area": 3600, "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    d.update(change)
    return d


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))  # Python's json.dump: NaN and Infinity as bare tokens
    return path


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def tiny(files):  # noqa: F811 - pytest passes the imported fixture by name
    """A COCO root with 3 small images and a tiny random Darknet model: (tmp, predict args without -o)."""
    return files[0], _args(files)


# --------------------------------------------------------------------------------------------------
# 1. resume compares what the dataset is, not how its path was spelt
# --------------------------------------------------------------------------------------------------
def test_resume_accepts_the_same_dataset_spelt_otherwise(tiny, monkeypatch):
    tmp, args = tiny
    monkeypatch.chdir(tmp)
    relative = [a if a != str(tmp / "data") else "data" for a in args]
    first = run(*relative, "-o", "out", "--format", "json")
    assert first.exit_code == 0, first.output
    again = run(*args, "-o", tmp / "out", "--resume", "--format", "json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["images_resumed"] == 3
    # a different annotation file (one box moved) is still refused
    ann = tmp / "data" / "annotations" / "instances_mini.json"
    d = json.loads(ann.read_text())
    d["annotations"][0]["bbox"] = [11, 10, 30, 20]
    ann.write_text(json.dumps(d))
    assert "cannot resume" in error_line(run(*args, "-o", tmp / "out", "--resume"))


# --------------------------------------------------------------------------------------------------
# 2 (and the boundary). Every output option of every command, unwritable: one line, exit 2, nothing written
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory, real_data):
    """What each command needs besides its output options: {command: [args]}."""
    root = tmp_path_factory.mktemp("inputs")
    _coco(root / "data")
    cfg = root / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    weights = write_weights(build_model(cfg, seed=3), root / "tiny.weights")
    frame, manifest = synthetic_candidates(40, per_image=5, neighborhood=1, seed=3)
    preds = root / "preds"
    write_candidates(frame, preds / "candidates.parquet")
    write_manifest({k: v for k, v in manifest.items() if k not in ("format", "version")}, preds, version=1)
    synth = write_json(root / "instances_synth.json", synthetic_dataset(frame))
    sample_dets = write_json(root / "sample_dets.json", fake_detections(json.loads(sample_path().read_text()), 1))
    tiny_ann = real_data / "coco-tiny" / "annotations" / "instances_val2017.json"
    tiny_dets = write_json(root / "tiny_dets.json", fake_detections(json.loads(tiny_ann.read_text()), 2))
    return {
        "info": [],
        "kmeans": ["--evolve", "0", "--restarts", "1"],
        "overlap": [],
        "predict": [
            "--root",
            root / "data",
            "mini",
            "--cfg",
            cfg,
            "--weights",
            weights,
            "--size",
            "64",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--no-progress",
        ],
        "anchor-audit": [],
        "mismatch": [synth, "--predictions", preds],
        "assigners": [synth, "--predictions", preds],
        "eval": ["-d", sample_dets],
        "errors": ["--root", real_data / "coco-tiny", "val2017", "-d", tiny_dets, "--examples", "2"],
        "report": ["--no-progress"],
        "convert": ["--root", root / "data", "mini"],
        "convert-predictions": [preds],  # with -o always in these tests: the v1 fixture stays as it is
    }


def _output_options(command) -> list[tuple[str, bool]]:
    """(option flag, is a folder) of every output option of a command."""
    return [(p.opts[-1], p.type.dir_okay) for p in command.params if isinstance(p.type, OutputPath) and not p.hidden]


def test_every_command_has_its_outputs_checked(inputs):
    assert set(inputs) == set(main.commands), "add the new command's inputs to the `inputs` fixture"
    for name, command in main.commands.items():
        flags = {o for p in command.params for o in p.opts}
        outputs = {flag for flag, _ in _output_options(command)}
        assert outputs, name
        # every option that names something to write is an OutputPath
        for maybe in ("-o", "--output", "--out", "--plot", "--per-image", "--per-object"):
            if maybe in flags:
                assert any(maybe in p.opts for p in command.params if isinstance(p.type, OutputPath)), (name, maybe)


CASES = [(name, flag, folder) for name, cmd in main.commands.items() for flag, folder in _output_options(cmd)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "flag", "folder"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_unwritable_output_one_line_exit_2_nothing_written(inputs, tmp_path, monkeypatch, name, flag, folder, where):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain_file").write_text("x")
    leaf = (
        "out"
        if folder
        else (
            "out.parquet" if flag in ("--per-object", "--per-image") else "out.png" if flag == "--plot" else "out.json"
        )
    )
    target = tmp_path / "plain_file" / leaf if where == "under a file" else Path("/proc") / f"cocostat-{leaf}"
    before = tree(tmp_path)
    res = run(name, *inputs[name], flag, target)
    line = error_line(res)
    assert str(target) in line or target.name in line, line
    assert tree(tmp_path) == before  # nothing written, not even a temporary file
    assert not target.exists()


# --------------------------------------------------------------------------------------------------
# 3. a truncated detections file is named
# --------------------------------------------------------------------------------------------------
def test_truncated_detections_json_is_named(tmp_path):
    frame, manifest = synthetic_candidates(40, per_image=5, neighborhood=1, seed=4)
    preds = tmp_path / "preds"
    write_candidates(frame, preds / "candidates.parquet")
    write_manifest({k: v for k, v in manifest.items() if k not in ("format", "version")}, preds, version=1)
    synth = synthetic_dataset(frame)
    ann = write_json(tmp_path / "instances_synth.json", synth)
    dets = json.dumps(fake_detections(synth, 5))
    (preds / "detections.json").write_text(dets[: len(dets) // 2])
    line = error_line(run("errors", ann, "--predictions", preds))
    assert str(preds / "detections.json") in line and "invalid JSON" in line
    line = error_line(run("eval", ann, "-d", preds / "detections.json"))
    assert "detections.json" in line and "invalid JSON" in line


# --------------------------------------------------------------------------------------------------
# 5, 6, 8. absurd numbers: 1e308 boxes, 2**70 ids, NaN/Infinity; far-outside boxes warned about
# --------------------------------------------------------------------------------------------------
def _ann(box, **kw):
    return {"id": 9, "image_id": 1, "category_id": 1, "bbox": box, **kw}


@pytest.mark.parametrize("command", ["info", "overlap", "kmeans", "anchor-audit"])
def test_huge_box_is_one_line_naming_the_annotation(tmp_path, command):
    f = write_json(tmp_path / "huge.json", coco(annotations=[_ann([10, 10, 1e308, 20])]))
    line = error_line(run(command, f, *(["--evolve", "0"] if command == "kmeans" else [])))
    assert "annotation 9" in line and "1e+308" in line and "16777216 px" in line


def test_box_far_outside_its_image_is_a_counted_warning(tmp_path):
    anns = coco()["annotations"] + [_ann([5000, 10, 30, 20]), {**_ann([-2000, -900, 10, 10]), "id": 10}]
    f = write_json(tmp_path / "far.json", coco(annotations=anns))
    for _ in range(2):  # a cache hit warns as a fresh parse does
        res = run("overlap", f, "--format", "json")
        assert res.exit_code == 0, res.output
        assert "2 annotation(s) have boxes far outside their image" in res.stderr
        assert "annotation 9: bbox [5000.0, 10.0, 30.0, 20.0] on a 640 x 480 image" in res.stderr
    assert "far outside" not in run("info", write_json(tmp_path / "ok.json", coco())).stderr


@pytest.mark.parametrize(
    "where", ["images.id", "annotations.id", "annotations.image_id", "categories.id", "images.width"]
)
def test_ids_beyond_int64_are_one_line(tmp_path, where):
    d = coco()
    key, field = where.split(".")
    d[key][0][field] = 2**70
    line = error_line(run("info", write_json(tmp_path / "big.json", d)))
    assert f"$.{key}[0].{field}" in line and "64-bit" in line


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_infinity_in_a_bbox_names_value_and_annotation(tmp_path, value):
    anns = coco()["annotations"]
    anns[1]["bbox"] = [100, 50, value, 80]
    f = write_json(tmp_path / "nan.json", coco(annotations=anns))
    token = json.dumps(value)  # NaN, Infinity, -Infinity
    assert token in f.read_text()
    line = error_line(run("info", f))
    assert line.startswith("error: annotation 6 in nan.json: bbox must be 4 finite numbers")
    assert f"[100.0, 50.0, {token}, 80.0]" in line and "json.dump" in line


def test_nan_outside_a_bbox_is_named(tmp_path):
    anns = coco()["annotations"]
    anns[0]["area"] = float("nan")
    line = error_line(run("info", write_json(tmp_path / "nan_area.json", coco(annotations=anns))))
    assert "NaN at byte" in line and "nan_area.json" in line


# --------------------------------------------------------------------------------------------------
# 9. empty files get a word
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "data", "words"),
    [
        ("empty annotations", coco(annotations=[]), "no annotations"),
        ("no annotations key", {k: v for k, v in coco().items() if k != "annotations"}, "no annotations"),
        ("empty images", coco(images=[], annotations=[]), "lists no images"),
    ],
)
def test_empty_files_warn(tmp_path, case, data, words):
    f = write_json(tmp_path / "empty.json", data)
    res = run("info", f, "--format", "json")
    assert res.exit_code == 0 and words in res.stderr, res.output
    assert json.loads(res.stdout)["annotations"] == 0


def test_eval_without_annotations_says_so(tmp_path):
    f = write_json(tmp_path / "empty.json", coco(annotations=[]))
    dets = write_json(tmp_path / "dets.json", [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}])
    res = run("eval", f, "-d", dets)
    assert res.exit_code == 0 and "no annotations" in res.stderr, res.output


# --------------------------------------------------------------------------------------------------
# 10. click's own usage errors are the one `error:` line too
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["overlap", "--iou-t", "foo"], "'foo' is not a valid float"),
        (["info", "--format", "xml"], "'xml' is not one of"),
        (["predict", "--weights", "w"], "Missing option '--cfg'"),
        (["anchor-audit", "--iou", "iox"], "'iox' is not one of"),
        (["info", "--no-such-option"], "No such option '--no-such-option'"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
)
def test_usage_errors_are_one_line(args, words):
    line = error_line(run(*args))
    assert words in line and "--help" in line


def test_help_and_version_still_exit_0():
    assert run("--version").exit_code == 0 and run("info", "--help").exit_code == 0
    assert "Usage:" in run("info", "--help").stdout


# --------------------------------------------------------------------------------------------------
# 11. early predict errors leave no OUT/.partial
# --------------------------------------------------------------------------------------------------
def test_early_predict_errors_leave_no_partial_folder(tiny):
    tmp, args = tiny
    (tmp / "data" / "mini" / "1.jpg").unlink()
    line = error_line(run(*args, "-o", tmp / "out"))
    assert "1.jpg not found" in line and "--skip-bad-images" in line
    assert not (tmp / "out").exists()
    error_line(run(*[a if a != "64" else "60" for a in args], "-o", tmp / "out2"))
    assert not (tmp / "out2").exists()


# --------------------------------------------------------------------------------------------------
# 7. an absurd --size is refused up front
# --------------------------------------------------------------------------------------------------
def test_predict_size_upper_bound(tiny):
    tmp, args = tiny
    t = time.perf_counter()
    line = error_line(run(*[a if a != "64" else "32000" for a in args], "-o", tmp / "out"))
    assert "--size must be at most 4096 px" in line and time.perf_counter() - t < 30
    assert not (tmp / "out").exists()
    assert "at most 4096" in run("predict", "--help").stdout


# --------------------------------------------------------------------------------------------------
# 12. a write killed outright leaves a findable temporary file, swept by the next write there
# --------------------------------------------------------------------------------------------------
def test_killed_write_leaves_a_named_temp_file_that_the_next_write_removes(tmp_path):
    code = (
        "import os, sys\nfrom cocostat.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half')\n    os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "result.json")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".result.json" + TMP_TAG) and left[0].endswith(".json")
    # a temporary file of a live process (this one) is not touched
    with atomic_path(tmp_path / "other.json") as mine:
        mine.write_text("x")
        assert mine.exists() and not (tmp_path / left[0]).exists()  # the dead one was swept
        write_text(tmp_path / "third.json", "y")
        assert mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json", "third.json"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_frame_writer_writes_chunks_atomically(tmp_path, suffix):
    import pandas as pd

    chunks = [pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}), pd.DataFrame({"a": [3], "b": [2.5]})]
    path = tmp_path / f"rows{suffix}"
    with FrameWriter(path) as w:
        for c in chunks:
            w.write(c)
        assert not path.exists()  # only the temporary file until the block ends
    back = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, pd.concat(chunks, ignore_index=True))
    assert w.rows == 3
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        FrameWriter(tmp_path / f"never{suffix}").write(chunks[0])
    with pytest.raises(ValueError, match="boom"), FrameWriter(tmp_path / f"failed{suffix}") as w:
        w.write(chunks[0])
        raise ValueError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # a failed block leaves nothing


# --------------------------------------------------------------------------------------------------
# 13. Ctrl-C: one line, exit 130, a resumable predict folder
# --------------------------------------------------------------------------------------------------
def test_keyboard_interrupt_in_process_is_one_line_130(monkeypatch):
    import cocostat.summary

    def interrupted(ds):
        raise KeyboardInterrupt

    monkeypatch.setattr(cocostat.summary, "info", interrupted)
    line = error_line(run("info"), code=130)
    assert "interrupted" in line


@pytest.mark.slow
def test_sigint_during_predict_exits_130_and_resumes(tmp_path):
    root = tmp_path / "data"
    _coco(root, n=40)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    weights = write_weights(build_model(cfg, seed=3), tmp_path / "tiny.weights")
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "cocostat",
        "predict",
        "--root",
        str(root),
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
        "1",
        "--no-progress",
        "--chunk-images",
        "2",
        "--batch-size",
        "1",
        "-o",
        str(out),
        "--format",
        "json",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    # format 2: a chunk is finished when its detections part is in out/detections/ (written after candidates)
    while time.time() < deadline and not list((out / "detections").glob("*chunk000001.parquet")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err_lines = err.decode().strip().splitlines()
    assert proc.returncode == 130, err
    assert err_lines == ["error: interrupted (Ctrl-C); an interrupted predict run continues with --resume"], err
    assert (out / ".partial" / "run.json").is_file() and not (out / "manifest.json").exists()  # resumable
    done = len(list((out / "detections").glob("*chunk*.parquet")))
    assert 2 <= done < 20
    res = subprocess.run([*args, "--resume"], cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["images_resumed"] == 2 * done and summary["images_processed"] == 40 - 2 * done
    assert len(read_predictions(out).candidates) == 40 * 54


# --------------------------------------------------------------------------------------------------
# 14. kmeans has no stride rule of its own, and says so
# --------------------------------------------------------------------------------------------------
def test_kmeans_accepts_any_size_and_says_why():
    res = run("kmeans", "--size", "417", "--evolve", "0", "--restarts", "1", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout)["size"] == 417
    assert "no grid stride" in " ".join(run("kmeans", "--help").stdout.split())


# --------------------------------------------------------------------------------------------------
# 16. tables never cut numbers or ids
# --------------------------------------------------------------------------------------------------
def test_tables_are_never_truncated(tmp_path):
    long_name = "category_" + "x" * 150 + "_end"
    cats = [{"id": 1, "name": long_name}, {"id": 2, "name": "b"}]
    f = write_json(tmp_path / "long.json", coco(categories=cats))
    res = run("info", f)  # stdout is not a terminal here
    assert res.exit_code == 0 and long_name in res.stdout and "…" not in res.stdout

    from rich.console import Console

    from cocostat.render import render_text
    from cocostat.summary import info

    narrow = Console(width=60, record=True, file=open(os.devnull, "w"))
    render_text(info(load_coco(f)), narrow)
    text = narrow.export_text()
    assert "…" not in text and text.count("x") >= 150  # folded onto more lines, every character kept


# --------------------------------------------------------------------------------------------------
# 17. --skip-bad-images and --chunk-images
# --------------------------------------------------------------------------------------------------
def test_skip_bad_images_counts_and_lists_them(tiny):
    tmp, args = tiny
    (tmp / "data" / "mini" / "1.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    line = error_line(run(*args, "-o", tmp / "out"))
    assert "cannot decode" in line and "1.jpg" in line and "--skip-bad-images" in line
    res = run(*args, "-o", tmp / "out", "--skip-bad-images", "--chunk-images", "1", "--format", "json")
    assert res.exit_code == 0, res.output
    assert "1 image(s) of mini could not be read and were skipped" in res.stderr
    summary = json.loads(res.stdout)
    assert summary["images_skipped"] == 1 and summary["images_processed"] == 2
    manifest = read_predictions(tmp / "out").manifest
    assert [s["image_id"] for s in manifest["skipped_images"]] == [2]
    assert manifest["skipped_images"][0]["file"].endswith("1.jpg") and manifest["settings"]["chunk_images"] == 1
    assert set(read_predictions(tmp / "out").candidates["image_id"]) == {1, 3}
    assert "--chunk-images must be a positive integer" in error_line(
        run(*args, "-o", tmp / "o2", "--chunk-images", "0")
    )


def test_skipped_images_survive_a_resume(tiny, monkeypatch):
    import cocostat.predict as P

    tmp, args = tiny
    (tmp / "data" / "mini" / "0.jpg").write_bytes(b"broken")
    calls = {"n": 0}
    real = P._finish_chunk

    def stop_after_two(*a, **kw):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(P, "_finish_chunk", stop_after_two)
    error_line(run(*args, "-o", tmp / "out", "--skip-bad-images", "--chunk-images", "1"), code=130)
    monkeypatch.setattr(P, "_finish_chunk", real)
    res = run(*args, "-o", tmp / "out", "--skip-bad-images", "--chunk-images", "1", "--resume", "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["images_resumed"] == 2
    assert [s["image_id"] for s in read_predictions(tmp / "out").manifest["skipped_images"]] == [1]


# --------------------------------------------------------------------------------------------------
# 18. the parsed-array cache cannot go stale, and a corrupt entry is a miss
# --------------------------------------------------------------------------------------------------
def test_cache_follows_the_content_not_size_and_mtime(tmp_path):
    f = write_json(tmp_path / "instances_replaced_in_place.json", coco())
    assert int(load_coco(f).iscrowd.sum()) == 1
    st = f.stat()
    text = f.read_text()
    swapped = text.replace('"iscrowd": 0}', '"iscrowd": 1}', 1)
    assert len(swapped) == len(text)
    f.write_text(swapped)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert int(load_coco(f).iscrowd.sum()) == 2


def test_corrupt_cache_entry_is_a_miss_and_is_rewritten(tmp_path):
    f = write_json(tmp_path / "instances_corrupt_cache.json", coco())
    first = load_coco(f)
    entries = list(cache_dir().glob("instances_corrupt_cache-*.npz"))
    assert len(entries) == 1
    entries[0].write_bytes(b"PK\x03\x04 not a zip")
    res = run("info", f, "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout)["annotations"] == first.num_annotations, res.output
    with zipfile.ZipFile(entries[0]) as z:  # rewritten as a valid entry
        assert "bbox.npy" in z.namelist()
    np.testing.assert_array_equal(load_coco(f).bbox, first.bbox)


# --------------------------------------------------------------------------------------------------
# 19. info --format csv has the headline counts
# --------------------------------------------------------------------------------------------------
def test_info_csv_has_headline_counts():
    lines = run("info", "--format", "csv").stdout.splitlines()
    assert lines[0] == (
        "scope,category_id,name,images,images_with_annotations,annotations,crowd,categories,small,medium,large"
    )
    head = lines[1].split(",")
    assert head[:8] == ["dataset", "", "sample", "128", "126", "939", "10", "80"]
    assert sum(int(v) for v in head[8:]) == 939
    assert len(lines) == 2 + 80 and lines[2].startswith("category,1,person,61,,259")


# --------------------------------------------------------------------------------------------------
# 20. wording: "categories", and "wrote FILE" for every output
# --------------------------------------------------------------------------------------------------
def test_unknown_category_message_says_categories(tmp_path):
    anns = coco()["annotations"]
    anns[0]["category_id"] = 99
    line = error_line(run("info", write_json(tmp_path / "c.json", coco(annotations=anns))))
    assert "categories list" in line and "categorys" not in line


def test_every_written_file_is_named_on_stderr(tmp_path, inputs):
    cases = [
        ("info", [], ["-o", tmp_path / "i.json"]),
        ("kmeans", inputs["kmeans"], ["-o", tmp_path / "k.json", "--plot", tmp_path / "kplots"]),
        ("anchor-audit", [], ["-o", tmp_path / "a.json", "--per-object", tmp_path / "a.parquet"]),
        (
            "mismatch",
            inputs["mismatch"],
            ["-o", tmp_path / "m.json", "--per-object", tmp_path / "m.csv", "--plot", tmp_path / "mplots"],
        ),
        ("eval", inputs["eval"], ["-o", tmp_path / "e.json"]),
        (
            "assigners",
            inputs["assigners"],
            ["-o", tmp_path / "s.json", "--per-object", tmp_path / "s.parquet", "--plot", tmp_path / "splots"],
        ),
        ("convert-predictions", inputs["convert-predictions"], ["-o", tmp_path / "v2"]),
    ]
    for name, args, outs in cases:
        res = run(name, *args, *outs)
        assert res.exit_code == 0, res.output
        written = outs[1::2]
        for out in written:
            if out.suffix:
                assert f"wrote {out}" in res.stderr, (name, res.stderr)
            else:
                assert any(ln.startswith(f"wrote {out}{os.sep}") for ln in res.stderr.splitlines()), res.stderr


@pytest.mark.parametrize("command", ["info", "overlap"])
def test_subnormal_box_sides_are_one_line(tmp_path, command):
    anns = coco()["annotations"] + [_ann([10, 10, 30, 1e-310])]
    line = error_line(run(command, write_json(tmp_path / f"tiny_{command}.json", coco(annotations=anns))))
    assert "annotation 9" in line and "1e-310" in line and "between 1.2e-38 and 2**24" in line
    ok = coco()["annotations"] + [_ann([10, 10, 30, 1e-14])]  # float round-off: accepted
    assert run(command, write_json(tmp_path / f"ok_{command}.json", coco(annotations=ok))).exit_code == 0
