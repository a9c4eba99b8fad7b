"""cocostat.predict: NMS, candidate gathers, the predictions folder, resume, sharding; against brute-force loops,
and against OpenCV DNN's detections on the real yolov3-tiny."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

import cocostat.predict as P
from cocostat.candidates import (
    MANIFEST_KEYS,
    candidate_order,
    read_predictions,
    to_arrays,
)
from cocostat.data import from_dict, load_coco
from cocostat.errors import CocostatWarning, DatasetFormatError, OptionError
from cocostat.models import Letterbox, build_model, write_weights
from cocostat.predict import batched_nms, gather_candidates, predict
from cocostat.render import render

TINY_CFG = Path(__file__).with_name("test_models.py").read_text().split('TINY_CFG = """\\\n')[1].split('"""')[0]
SIZE = 64
N_PER_ANN = 6 * 9  # 6 anchors x 3 x 3 cells


# --------------------------------------------------------------------------------------------------
# Synthetic data: a few small images with shapes, annotations incl. crowd, zero-size, centre outside
# --------------------------------------------------------------------------------------------------
def make_coco(root: Path, n_images: int = 5, seed: int = 0) -> Path:
    """Write ROOT/annotations/instances_synth.json and ROOT/synth/*.png; return the JSON path."""
    rng = np.random.default_rng(seed)
    img_dir = root / "synth"
    img_dir.mkdir(parents=True, exist_ok=True)
    sizes = [(96, 64), (64, 80), (80, 80), (50, 70), (120, 40), (64, 64), (70, 90)]
    images, anns = [], []
    aid = 100
    for i in range(n_images):
        w, h = sizes[i % len(sizes)]
        im = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(im)
        k = 0 if i == 1 else 3  # image id 11 has no annotations
        for _ in range(k):
            x, y = rng.uniform(0, w * 0.7), rng.uniform(0, h * 0.7)
            bw, bh = rng.uniform(3, w - x), rng.uniform(3, h - y)
            draw.rectangle([x, y, x + bw, y + bh], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
            anns.append(
                {
                    "id": aid,
                    "image_id": 10 + i,
                    "category_id": [1, 3][aid % 2],
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
            aid += 1
        im.save(img_dir / f"{i:04d}.png")
        images.append({"id": 10 + i, "file_name": f"{i:04d}.png", "width": w, "height": h})
    # a crowd box, a zero-size box, and one whose centre lies right of and below the image
    anns.append({"id": 900, "image_id": 10, "category_id": 1, "bbox": [5, 5, 30, 20], "area": 600, "iscrowd": 1})
    anns.append({"id": 901, "image_id": 12, "category_id": 3, "bbox": [10, 10, 0, 0], "area": 0, "iscrowd": 0})
    anns.append({"id": 902, "image_id": 10, "category_id": 3, "bbox": [80, 50, 40, 40], "area": 1600, "iscrowd": 0})
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "box"}, {"id": 3, "name": "blob"}]}
    path = root / "annotations" / "instances_synth.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco))
    return path


@pytest.fixture
def synth(tmp_path):
    path = make_coco(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)  # the zero-size box
        return load_coco(path, image_dir=tmp_path / "synth", cache=False)


@pytest.fixture
def tiny_files(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    weights = write_weights(build_model(cfg, seed=11), tmp_path / "tiny.weights")
    return cfg, weights


@pytest.fixture
def tiny_model(tiny_files):
    from cocostat.models import load_model

    return load_model(*tiny_files)


def _run(ds, model, **kw):
    kw = {"size": SIZE, "batch_size": 2, "workers": 0, "progress": False, **kw}
    return predict(ds, model, **kw)


# --------------------------------------------------------------------------------------------------
# NMS
# --------------------------------------------------------------------------------------------------
def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _greedy_nms(boxes, scores, groups, thr) -> list[int]:
    """The textbook loop: per group, by descending score (ties: lower index), drop IoU > thr with a kept box."""
    kept = []
    for g in sorted(set(groups)):
        idx = sorted([i for i in range(len(boxes)) if groups[i] == g], key=lambda i: (-scores[i], i))
        mine: list[int] = []
        for i in idx:
            if all(_iou(boxes[i], boxes[j]) <= thr for j in mine):
                mine.append(i)
        kept += mine
    return sorted(kept, key=lambda i: (-scores[i], i))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 40),
    thr=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]),
    max_pairs=st.sampled_from([1 << 22, 5, 1]),
)
def test_batched_nms_matches_greedy_loop(data, n, thr, max_pairs):
    xy = data.draw(
        st.lists(
            st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 12), st.integers(0, 12)),
            min_size=n,
            max_size=n,
        )
    )
    scores = data.draw(st.lists(st.sampled_from([0.1, 0.2, 0.5, 0.9]), min_size=n, max_size=n))  # many ties
    groups = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    boxes = [(float(x), float(y), float(x + w), float(y + h)) for x, y, w, h in xy]
    keep = batched_nms(
        torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
        torch.tensor(scores).reshape(-1),
        torch.tensor(groups, dtype=torch.int64).reshape(-1),
        thr,
        max_pairs=max_pairs,
    )
    assert keep.tolist() == _greedy_nms(boxes, scores, groups, thr)


def test_batched_nms_chain_needs_several_rounds():
    """A chain where each box overlaps only the next: kept, dropped, kept, dropped ..."""
    boxes = torch.tensor([[i * 6.0, 0, i * 6.0 + 10, 10] for i in range(9)])
    scores = torch.linspace(1, 0.1, 9)
    keep = batched_nms(boxes, scores, torch.zeros(9, dtype=torch.int64), 0.2)
    assert keep.tolist() == [0, 2, 4, 6, 8]


def test_top_per_image_matches_loop():
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 4, (200,), generator=g)
    sc = torch.rand(200, generator=g)
    got = P._top_per_image(img, sc, 7).tolist()
    want = [i for b in range(4) for i in sorted(np.flatnonzero(img.numpy() == b), key=lambda i: -sc[i])[:7]]
    assert got == want


# --------------------------------------------------------------------------------------------------
# Candidate gathers
# --------------------------------------------------------------------------------------------------
def test_gather_candidates_matches_loop(tiny_model):
    slots = P._Slots.build(tiny_model, SIZE, "cpu")
    g = torch.Generator().manual_seed(1)
    decoded = [torch.rand(3, 3, s, s, 7, generator=g) * 50 for s in (8, 16)]
    flat = P._flatten(decoded)
    gt = torch.tensor([[0, 0, 10, 10], [50, 40, 64, 64], [60, 60, 90, 95], [-20, 5, -4, 30], [33, 12, 33, 12.0]])
    bidx = torch.tensor([0, 2, 1, 1, 0])
    cls = torch.tensor([0, 1, 1, 0, 1])
    n = 1
    cols = gather_candidates(flat, slots, gt, bidx, cls, n)
    rows = 0
    for gi in range(5):
        cx, cy = (gt[gi, 0] + gt[gi, 2]).item() / 2, (gt[gi, 1] + gt[gi, 3]).item() / 2
        for anchor in range(6):
            level = 0 if anchor >= 3 else 1
            k = anchor - 3 if level == 0 else anchor
            stride, side = (8, 8) if level == 0 else (4, 16)
            cgx = min(max(int(np.floor(cx / stride)), 0), side - 1)
            cgy = min(max(int(np.floor(cy / stride)), 0), side - 1)
            for dy in range(-n, n + 1):
                for dx in range(-n, n + 1):
                    gx, gy = cgx + dx, cgy + dy
                    assert (cols["anchor"][rows], cols["level"][rows], cols["dx"][rows], cols["dy"][rows]) == (
                        anchor,
                        level,
                        dx,
                        dy,
                    )
                    assert (cols["gx"][rows], cols["gy"][rows], cols["stride"][rows]) == (gx, gy, stride)
                    ok = 0 <= gx < side and 0 <= gy < side
                    assert bool(cols["valid"][rows]) == ok
                    if ok:
                        v = decoded[level][bidx[gi], k, gy, gx]
                        want = [v[0] - v[2] / 2, v[1] - v[3] / 2, v[0] + v[2] / 2, v[1] + v[3] / 2]
                        got = [cols[c][rows] for c in ("px1", "py1", "px2", "py2")]
                        torch.testing.assert_close(torch.stack(got), torch.stack(want))
                        assert cols["obj"][rows] == v[4] and cols["cls_prob"][rows] == v[5 + cls[gi]]
                        assert cols["max_cls_prob"][rows] == v[5:].max() and cols["max_cls_idx"][rows] == v[5:].argmax()
                    else:
                        assert torch.isnan(cols["obj"][rows]) and torch.isnan(cols["px1"][rows])
                        assert cols["max_cls_idx"][rows] == -1
                    rows += 1
    assert rows == len(cols["obj"]) == 5 * N_PER_ANN


def test_gather_candidates_no_annotations(tiny_model):
    slots = P._Slots.build(tiny_model, SIZE, "cpu")
    flat = P._flatten([torch.rand(1, 3, s, s, 7) for s in (8, 16)])
    cols = gather_candidates(
        flat, slots, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), 1
    )
    assert all(v.shape == (0,) for v in cols.values())


# --------------------------------------------------------------------------------------------------
# predict end to end
# --------------------------------------------------------------------------------------------------
def _letterboxed_outputs(ds, model, i):
    with Image.open(ds.image_dir / str(ds.file_name[i])) as im:
        arr = Letterbox(SIZE).apply(im)
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        return [d[0] for d in model.detect(x)]


def test_candidates_match_the_model_cell_by_cell(synth, tiny_model):
    res = _run(synth, tiny_model)
    frame = res.candidates
    assert list(frame.columns) == list(P.COLUMNS) and len(frame) == synth.num_annotations * N_PER_ANN
    pd.testing.assert_frame_equal(frame, candidate_order(frame))
    assert set(frame["ann_id"]) == set(synth.ann_id.tolist())  # crowd and zero-size ones too
    assert frame.loc[frame["ann_id"] == 900, "iscrowd"].all()
    lb = Letterbox(SIZE)
    for i in range(synth.num_images):
        dec = _letterboxed_outputs(synth, tiny_model, i)
        sub = frame[frame["image_id"] == synth.image_id[i]]
        geo = lb.params(synth.width[i], synth.height[i])
        for r in sub[sub["valid"]].itertuples():
            k = r.anchor - 3 if r.level == 0 else r.anchor
            v = dec[r.level][k, r.gy, r.gx]
            np.testing.assert_allclose(
                [r.px1, r.py1, r.px2, r.py2],
                [v[0] - v[2] / 2, v[1] - v[3] / 2, v[0] + v[2] / 2, v[1] + v[3] / 2],
                rtol=1e-4,
                atol=1e-3,
            )
            np.testing.assert_allclose(
                [r.obj, r.cls_prob, r.max_cls_prob], [v[4], v[5 + r.class_idx], v[5:].max()], rtol=0, atol=1e-4
            )
        # annotation boxes in input pixels
        for a in range(synth.offsets[i], synth.offsets[i + 1]):
            x, y, w, h = synth.bbox[a]
            want = geo.to_input(np.array([[x, y, x + w, y + h]]))[0]
            got = sub.loc[sub["ann_id"] == synth.ann_id[a], ["gt_x1", "gt_y1", "gt_x2", "gt_y2"]].iloc[0]
            np.testing.assert_allclose(got.to_numpy(np.float64), want, rtol=1e-5, atol=1e-3)


def test_centre_outside_the_image_is_clamped_into_the_grid(synth, tiny_model):
    frame = _run(synth, tiny_model).candidates
    rows = frame[(frame["ann_id"] == 902) & (frame["dx"] == 0) & (frame["dy"] == 0)]
    # image 10 is 96 x 64 -> letterboxed 64 x 43 at pad_y 10; the box centre (100, 70) maps to (66.7, 56.7)
    for r in rows.itertuples():
        side = SIZE // r.stride
        assert r.gx == side - 1 and r.gy == min(int(56.66 // r.stride), side - 1) and r.valid
    right = frame[(frame["ann_id"] == 902) & (frame["dx"] == 1)]
    assert not right["valid"].any() and right["obj"].isna().all() and right["px1"].isna().all()


def _brute_detections(ds, model, conf, nms_iou, max_det):
    lb = Letterbox(SIZE)
    cat = ds.categories["category_id"].to_numpy()
    out = []
    for i in range(ds.num_images):
        rows = torch.cat([d.reshape(-1, 7) for d in _letterboxed_outputs(ds, model, i)]).numpy().astype(np.float64)
        cand = [
            (rows[r, 4] * rows[r, 5 + c], c, r)
            for r in range(len(rows))
            for c in range(2)
            if rows[r, 4] * rows[r, 5 + c] > conf
        ]
        boxes = [
            (
                rows[r, 0] - rows[r, 2] / 2,
                rows[r, 1] - rows[r, 3] / 2,
                rows[r, 0] + rows[r, 2] / 2,
                rows[r, 1] + rows[r, 3] / 2,
            )
            for _, _, r in cand
        ]
        keep = _greedy_nms(boxes, [s for s, _, _ in cand], [c for _, c, _ in cand], nms_iou)[:max_det]
        geo = lb.params(ds.width[i], ds.height[i])
        for j in keep:
            b = geo.to_image(np.array([boxes[j]]))[0]
            b = np.clip(b, 0, [ds.width[i], ds.height[i], ds.width[i], ds.height[i]])
            if b[2] > b[0] and b[3] > b[1]:
                xywh = np.round([*b[:2], *(b[2:] - b[:2])], 3).tolist()  # rounded as in detections.json
                out.append((int(ds.image_id[i]), int(cat[cand[j][1]]), *xywh, round(cand[j][0], 5)))
    return sorted(out)


def test_detections_match_a_brute_force_pipeline(synth, tiny_model):
    res = _run(synth, tiny_model, conf=0.3, nms_iou=0.5, max_det=15)
    got = sorted((d["image_id"], d["category_id"], *d["bbox"], d["score"]) for d in res.detections)
    want = _brute_detections(synth, tiny_model, 0.3, 0.5, 15)
    assert len(got) == len(want) > 0
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=0, atol=2e-3)
    assert max(sum(d["image_id"] == i for d in res.detections) for i in synth.image_id) <= 15


def test_folder_is_readable_and_complete(synth, tiny_model, tmp_path):
    out = tmp_path / "pred"
    res = _run(synth, tiny_model, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["candidates", "detections", "detections.json", "manifest.json"]
    assert [p.name for p in (out / "candidates").iterdir()] == ["rank000-chunk000000.parquet"]
    pred = read_predictions(out)
    assert pred.version == 3 and pred.num_objects == synth.num_annotations
    # the streamed COCO results JSON holds the same detections as the columnar parts
    assert json.loads((out / "detections.json").read_text()) == res.detections
    pd.testing.assert_frame_equal(pred.candidates, res.candidates)
    assert pred.detections() == res.detections
    m = pred.manifest
    assert set(MANIFEST_KEYS) <= set(m) and m == res.manifest
    assert m["images"] == 5 and m["annotations"] == synth.num_annotations and m["size"] == SIZE
    assert m["anchors"] == [[4, 5], [8, 10], [12, 9], [16, 20], [30, 24], [40, 50]]
    assert [(lv["mask"], lv["stride"], lv["grid"]) for lv in m["levels"]] == [([3, 4, 5], 8, 8), ([0, 1, 2], 4, 16)]
    assert m["candidates_per_annotation"] == N_PER_ANN == pred.candidates_per_object
    assert m["weights_sha256"] == tiny_model.weights_sha256 and m["detections"]["count"] == len(res.detections)
    arr = to_arrays(pred.candidates)
    assert arr.obj.shape == (synth.num_annotations, N_PER_ANN) and arr.anchor.tolist()[:9] == [0] * 9
    per_image = res.to_frame()
    assert per_image["image_id"].tolist() == synth.image_id.tolist()  # image 11 has no annotations: a row of 0
    assert per_image["annotations"].tolist() == synth.counts.tolist()
    assert per_image["detections"].sum() == len(res.detections)
    timings = res.to_dict()["timings"]
    assert list(timings) == [*P.STAGES, "total"]
    # the stages cover the call: laps are taken back to back, so only the last lap's remainder is missed
    assert sum(timings[s] for s in P.STAGES) == pytest.approx(timings["total"], abs=0.05)
    sp = res.to_dict()["speed"]
    ms = 1000 / res.images
    assert sp["inference"] == pytest.approx((res.timings["forward"] + res.timings["decode"]) * ms, abs=1e-3)
    assert sp["nms"] == pytest.approx(res.timings["detections"] * ms, abs=1e-3)
    assert sp["total"] == pytest.approx(res.timings["total"] * ms, abs=1e-3) and sp["total"] > sp["inference"]
    assert re.fullmatch(
        rf"Speed: [\d.]+/[\d.]+/[\d.]+ ms inference/NMS/total per {SIZE}x{SIZE} image at batch-size 2", sp["line"]
    )
    assert m["speed"]["batch_size"] == 2 and m["speed"]["total"] <= sp["total"]  # the manifest's: before its own write


def test_workers_give_the_same_result(synth, tiny_model):
    a = _run(synth, tiny_model, workers=0)
    b = _run(synth, tiny_model, workers=2, batch_size=3)
    pd.testing.assert_frame_equal(a.candidates, b.candidates)
    assert a.detections == b.detections


def test_resume_skips_finished_chunks(synth, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(P, "CHUNK_IMAGES", 2)
    clean = _run(synth, tiny_model)
    out = tmp_path / "pred"
    calls = []
    real = P._run_batch

    def crash_on_third(*a, **k):
        calls.append(len(a[1].idx))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user presses ctrl-c in the second chunk
        return real(*a, **k)

    monkeypatch.setattr(P, "_run_batch", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        _run(synth, tiny_model, out_dir=out, batch_size=1)
    assert not (out / "manifest.json").exists()
    assert [p.name for p in (out / ".partial").iterdir()] == ["run.json"]
    # the finished chunk is already a final part of the store; nothing is concatenated later
    assert [p.name for p in (out / "candidates").iterdir()] == ["rank000-chunk000000.parquet"]
    assert [p.name for p in (out / "detections").iterdir()] == ["rank000-chunk000000.parquet"]
    first_part = (out / "candidates" / "rank000-chunk000000.parquet").stat()
    calls.clear()
    monkeypatch.setattr(P, "_run_batch", lambda *a, **k: (calls.append(len(a[1].idx)), real(*a, **k))[1])
    res = _run(synth, tiny_model, out_dir=out, batch_size=1, resume=True)
    assert sum(calls) == 3 and res.images == 3 and res.resumed_images == 2  # chunk 0 (2 images) was kept
    assert (out / "candidates" / "rank000-chunk000000.parquet").stat().st_mtime_ns == first_part.st_mtime_ns
    assert len(list((out / "candidates").iterdir())) == 3
    pd.testing.assert_frame_equal(read_predictions(out).candidates, clean.candidates)
    assert read_predictions(out).detections() == clean.detections
    assert not (out / ".partial").exists()
    # resuming a complete folder reads it back without inference
    calls.clear()
    again = _run(synth, tiny_model, out_dir=out, resume=True)
    assert calls == [] and again.images == 0 and len(again.candidates) == len(clean.candidates)
    # other settings cannot resume
    with pytest.raises(
        OptionError, match=r"cannot resume, the run there used other settings \(conf: 0.001 then, 0.5 now\)"
    ):
        _run(synth, tiny_model, out_dir=out, resume=True, conf=0.5)


def test_a_failed_background_write_fails_the_run_and_leaves_it_resumable(synth, tiny_model, tmp_path, monkeypatch):
    # chunks are written by a background thread: an error there must reach the caller, with the
    # chunks written before it kept and no manifest (the folder is unfinished, so --resume continues it)
    monkeypatch.setattr(P, "CHUNK_IMAGES", 2)
    real = P.write_detection_part
    written = []

    def full_disk_on_second(cols, path):
        if written:
            raise OSError(28, "No space left on device")
        written.append(path)
        return real(cols, path)

    monkeypatch.setattr(P, "write_detection_part", full_disk_on_second)
    out = tmp_path / "pred"
    with pytest.raises(OSError, match="No space left"):
        _run(synth, tiny_model, out_dir=out, batch_size=1)
    assert not (out / "manifest.json").exists()
    assert [p.name for p in (out / "detections").iterdir()] == ["rank000-chunk000000.parquet"]
    monkeypatch.setattr(P, "write_detection_part", real)
    res = _run(synth, tiny_model, out_dir=out, batch_size=1, resume=True)
    assert res.resumed_images == 2 and res.images == 3
    clean = _run(synth, tiny_model)
    pd.testing.assert_frame_equal(res.candidates, clean.candidates)
    assert res.detections == clean.detections


def test_run_settings_defaults_follow_the_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    asked = P.RunSettings(size=320)
    assert asked.batch_size is None and asked.workers is None and asked.chunk_images is None
    on_cpu, on_cuda = asked.for_device(cpu), asked.for_device(cuda)
    assert (on_cpu.batch_size, on_cuda.batch_size) == (4, 32)
    cores = os.cpu_count() or 1
    assert on_cpu.workers == max(1, min(4, cores // 4)) and on_cuda.workers == min(8, cores)
    assert on_cpu.chunk_images == P.CHUNK_IMAGES and on_cpu.size == 320
    assert P.RunSettings(batch_size=7, workers=0).for_device(cpu) == P.RunSettings(
        batch_size=7, workers=0, chunk_images=P.CHUNK_IMAGES
    )  # what the user gave is kept
    with pytest.raises(dataclasses.FrozenInstanceError):
        on_cpu.conf = 0.5  # type: ignore[misc]


def test_speed_line_definition():
    # 10 images; forward 0.2 s + decode 0.05 s = 25 ms inference per image, 0.1 s NMS = 10 ms, 1.234 s in all
    t = {"forward": 0.2, "decode": 0.05, "detections": 0.1, "candidates": 0.3, "total": 1.234}
    sp = P.speed(t, 10, 416, 32)
    assert (sp["inference"], sp["nms"], sp["total"]) == (25.0, 10.0, 123.4)
    assert sp["line"] == "Speed: 25.0/10.0/123.4 ms inference/NMS/total per 416x416 image at batch-size 32"
    assert P.speed(t, 0, 416, 32) is None  # nothing processed (a resumed, complete folder)


def test_default_batch_size_and_the_speed_line_in_the_summary(synth, tiny_model):
    res = predict(synth, tiny_model, size=SIZE, workers=0, progress=False)
    assert res.settings.batch_size == 4 and res.manifest["speed"]["batch_size"] == 4
    shown = render(res, "table").decode()
    assert re.search(
        rf"^Speed: [\d.]+/[\d.]+/[\d.]+ ms inference/NMS/total per {SIZE}x{SIZE} image at batch-size 4$", shown, re.M
    )
    assert re.search(r"stage\s*┃\s*seconds\s*┃\s*ms per image\s*┃\s*share of total", shown)


def test_the_cli_makes_openmp_wait_passively_unless_told(monkeypatch):
    from cocostat.cli import _passive_omp_wait

    seen = []
    probe = _passive_omp_wait(lambda: seen.append(os.environ.get("OMP_WAIT_POLICY")))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    probe()  # torch is already imported in this process: setting it now would change nothing
    assert seen == [None]
    monkeypatch.delitem(sys.modules, "torch")
    probe()
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    probe()
    assert seen == [None, "PASSIVE", "ACTIVE"]


def test_fresh_run_replaces_old_parts(synth, tiny_model, tmp_path):
    out = tmp_path / "pred"
    out.mkdir()
    (out / "candidates-rank1.parquet").write_bytes(b"old")
    (out / "detections-rank1.json").write_text("[]")
    (out / "notes.txt").write_text("mine")
    with pytest.warns(CocostatWarning, match="nothing to resume"):
        _run(synth, tiny_model, out_dir=out, resume=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "candidates",
        "detections",
        "detections.json",
        "manifest.json",
        "notes.txt",
    ]


def test_draw_writes_pngs(synth, tiny_model, tmp_path):
    res = _run(synth, tiny_model, out_dir=tmp_path / "pred", draw=2, conf=0.3)
    assert [p.name for p in res.drawn] == ["10.png", "11.png"]
    with Image.open(res.drawn[0]) as im:
        assert im.size == (96, 64) and im.format == "PNG"


def test_empty_dataset_gives_empty_outputs(tiny_model, tmp_path):
    ds = from_dict({"images": [], "annotations": [], "categories": [{"id": 1}, {"id": 2}]}, image_dir=tmp_path)
    res = _run(ds, tiny_model, out_dir=tmp_path / "pred")
    assert res.candidates.shape == (0, len(P.COLUMNS)) and res.detections == []
    assert dict(res.candidates.dtypes.astype(str)) == P.COLUMNS
    assert read_predictions(tmp_path / "pred").manifest["images"] == 0


def test_image_file_size_differs_from_json(synth, tiny_model, tmp_path):
    """A downscaled copy of image 10: annotations are scaled, detections come back in JSON pixels."""
    with Image.open(synth.image_dir / "0000.png") as im:
        im.resize((48, 32)).save(synth.image_dir / "0000.png")
    with pytest.warns(CocostatWarning, match="1 image file"):
        res = _run(synth, tiny_model, conf=0.3)
    row = res.candidates[res.candidates["ann_id"] == 900].iloc[0]
    # the 96 x 64 geometry maps [5, 5, 35, 25] to input pixels exactly as before the downscale
    want = Letterbox(SIZE).params(96, 64).to_input(np.array([[5, 5, 35, 25]]))[0]
    np.testing.assert_allclose(row[["gt_x1", "gt_y1", "gt_x2", "gt_y2"]].to_numpy(np.float64), want, atol=1e-3)
    xs = [d["bbox"][0] + d["bbox"][2] for d in res.detections if d["image_id"] == 10]
    assert xs and max(xs) <= 96 + 1e-6 and max(xs) > 48


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"size": 60}, "size must be a multiple of 8"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"conf": 1.5}, r"conf must lie in \[0, 1\]"),
        ({"nms_iou": -0.1}, r"nms_iou must lie in \[0, 1\]"),
        ({"max_det": 0}, "max_det must be a positive integer"),
        ({"neighborhood": -1}, "neighborhood must be an integer in 0..100"),
        ({"half": True}, "half needs a CUDA device"),
        ({"draw": 2}, "^draw and resume need an output folder"),
    ],
)
def test_bad_options(synth, tiny_model, kw, msg):
    with pytest.raises(OptionError, match=msg):
        _run(synth, tiny_model, **kw)


def test_bad_images_and_datasets(synth, tiny_model, tmp_path):
    (synth.image_dir / "0003.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"image 13 of instances_synth: file .*0003.png not found \(1 of 5"):
        _run(synth, tiny_model)
    (synth.image_dir / "0003.png").write_bytes(b"not an image")
    with pytest.raises(
        DatasetFormatError, match=r"image 13 of instances_synth: cannot decode .*0003.png: UnidentifiedImageError"
    ):
        _run(synth, tiny_model, workers=1)
    no_dir = load_coco(synth.path, cache=False)
    with pytest.raises(OptionError, match="has no image folder; give it with --images DIR"):
        _run(no_dir, tiny_model)
    three = from_dict({"images": [], "categories": [{"id": 1}, {"id": 2}, {"id": 3}]})
    with pytest.raises(OptionError, match="tiny.cfg predicts 2 classes but dataset memory has 3 categories"):
        _run(three, tiny_model)


# --------------------------------------------------------------------------------------------------
# Several processes (torchrun, gloo)
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path, tiny_files):
    ann = make_coco(tmp_path, n_images=5)
    cfg, weights = tiny_files
    common = [
        "predict",
        str(ann),
        "--cfg",
        str(cfg),
        "--weights",
        str(weights),
        "--size",
        str(SIZE),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--no-progress",
        "--batch-size",
        "2",
        "--format",
        "json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COCOSTAT_CACHE": str(tmp_path / "cache")}
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "cocostat",
            *common,
            "-o",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads(two.stdout)["world_size"] == 2  # only rank 0 prints
    summary = json.loads(two.stdout)
    assert summary["images_processed"] == 5 and summary["images_resumed"] == 0  # every rank's images
    names = sorted(p.name for p in (tmp_path / "two" / "candidates").iterdir())
    assert names == ["rank000-chunk000000.parquet", "rank001-chunk000000.parquet"]
    # one COCO results file for `eval -d`, holding both ranks' detections
    assert len(json.loads((tmp_path / "two" / "detections.json").read_text())) == len(
        read_predictions(tmp_path / "two").detections()
    )
    one = subprocess.run(
        [sys.executable, "-m", "cocostat", *common, "-o", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = read_predictions(tmp_path / "one"), read_predictions(tmp_path / "two")
    pd.testing.assert_frame_equal(a.candidates, b.candidates, check_exact=False, atol=1e-5)

    def key(d):
        return (d["image_id"], d["category_id"], d["bbox"])

    assert sorted(a.detections(), key=key) == sorted(b.detections(), key=key)
    assert b.manifest["images"] == 5 and b.manifest["world_size"] == 2
    assert b.manifest["candidate_rows"] == len(b.candidates)
    assert b.manifest["detections"]["count"] == len(b.detections())
    part0 = pd.read_parquet(tmp_path / "two" / "candidates" / "rank000-chunk000000.parquet")
    assert set(part0["image_id"]) <= {10, 12, 14}  # rank 0 takes images 0, 2, 4


# --------------------------------------------------------------------------------------------------
# Real data: yolov3-tiny against OpenCV DNN
# --------------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.slow
def test_yolov3_tiny_ap_at_least_opencv(real_data):
    from benchmarks.bench_predict import coco_ap, opencv_detections, opencv_net
    from cocostat.data import load_dataset
    from cocostat.models import load_model

    cfg, weights = real_data / "models/yolov3-tiny.cfg", real_data / "models/yolov3-tiny.weights"
    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    model = load_model(cfg, weights)
    ours = predict(ds, model, size=320, batch_size=8, progress=False)  # 320 keeps the test short
    theirs = opencv_detections(opencv_net(cfg, weights), ds, Letterbox(320))
    ap_ours, ap_theirs = coco_ap(ds.path, ours.detections, ds.image_id), coco_ap(ds.path, theirs, ds.image_id)
    print(f"AP / AP50 on coco-tiny val2017 at 320: cocostat {ap_ours}, OpenCV DNN {ap_theirs}")
    assert ap_ours[0] >= ap_theirs[0] and ap_ours[1] >= ap_theirs[1]
    assert ap_ours[1] > 0.15  # a working detector, not noise (AP50 0.197 at 320, 0.247 at 416)
    # every OpenCV detection above its 0.2 threshold has a twin among ours (same class, box within 1 px)
    ours_by = {}
    for d in ours.detections:
        ours_by.setdefault((d["image_id"], d["category_id"]), []).append(d["bbox"])
    strong = [d for d in theirs if d["score"] > 0.3]
    twins = sum(
        any(np.abs(np.subtract(b, d["bbox"])).max() < 1.0 for b in ours_by.get((d["image_id"], d["category_id"]), []))
        for d in strong
    )
    assert twins >= 0.95 * len(strong)


# --------------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cuda_predict_matches_cpu(synth, tiny_files):
    from cocostat.models import load_model

    cpu = _run(synth, load_model(*tiny_files))
    gpu_model = load_model(*tiny_files, device="cuda")
    gpu = _run(synth, gpu_model)  # device follows the model
    assert gpu.manifest["device"].startswith("cuda")
    pd.testing.assert_frame_equal(cpu.candidates, gpu.candidates, check_exact=False, atol=1e-3, rtol=1e-3)
    half = _run(synth, gpu_model, half=True)
    assert half.manifest["half"] and len(half.candidates) == len(cpu.candidates)
    np.testing.assert_allclose(half.candidates["obj"], cpu.candidates["obj"], atol=2e-2)
    assert next(gpu_model.parameters()).dtype == torch.float32  # the caller's model is untouched
