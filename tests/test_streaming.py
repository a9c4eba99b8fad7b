"""Streamed analyses equal the whole-table computation, on real predictions (yolov3-tiny, coco-tiny val2017).

The reference here is the direct computation on the whole candidate table at once, written in the
test from the vectorised kernels (``candidate_tensors`` + ``audit_tensors`` / ``mismatch_tensors``
on every object together, numpy mean/var over all objects), as the commands computed it before
the store was read in chunks. The streamed run reads the folder in chunks of a few dozen objects,
so every figure goes through the merging of partial results.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from cocostat.audit import (
    anchor_audit,
    audit_tensors,
    candidate_tensors,
    dense_image_index,
    load_inputs,
)
from cocostat.candidates import read_predictions
from cocostat.data import load_dataset
from cocostat.diagnose import diagnose
from cocostat.errors import CocostatWarning
from cocostat.evaluate import detection_chunks, evaluate, load_detections
from cocostat.mismatch import Moments, mismatch, mismatch_tensors

CHUNK = 37  # objects per streamed chunk: about 25 chunks over coco-tiny's 815 annotations


@pytest.fixture(scope="module")
def real(tiny_predictions):
    return tiny_predictions


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        return fn(*a, **k)


def test_the_folder_is_chunked_by_image(real):
    ds, out = real
    pred = read_predictions(out)
    blocks = list(pred.iter_chunks(CHUNK))
    assert len(blocks) > 10 and sum(len(b) for b in blocks) == ds.num_annotations
    ids = [set(b.image_id.tolist()) for b in blocks]
    assert sum(len(s) for s in ids) == len(set().union(*ids))  # an image is in exactly one chunk


@pytest.mark.parametrize("iou,assigner", [("giou", "yolov3"), ("iou", "yolov5")])
def test_streamed_anchor_audit_equals_the_whole_table(real, iou, assigner):
    ds, out = real
    rep = _quiet(anchor_audit, ds, out, iou=iou, assigner=assigner, examples=6, chunk_objects=CHUNK)
    one = _quiet(anchor_audit, ds, out, iou=iou, assigner=assigner, examples=6, chunk_objects=None)
    # direct: every object at once
    inp = _quiet(load_inputs, ds, out)
    ct = candidate_tensors(inp.candidates, inp.grid, iou=iou, assigner=assigner)
    _, img = dense_image_index(inp.image_id)
    res = audit_tensors(ct, torch.from_numpy(img), inp.grid.num_levels, inp.grid.num_anchors)
    matched = ct.assignment.matched.numpy()
    assert rep.objects == len(inp.ann_id) == 815 - 11 and rep.images == 80
    assert rep.unmatched_objects == int((matched.sum(1) == 0).sum())
    assert rep.feature_maps_unmatched_better == res["feature_maps_unmatched_better"]
    assert rep.objects_unmatched_beats_best_matched == int(res["beats_best"].sum())
    assert rep.objects_unmatched_beats_worst_matched == int(res["beats_worst"].sum())
    assert rep.objects_compared == int(((res["n_pos"] > 0) & np.isfinite(res["u_max"])).sum())
    assert rep.objects_best_from_neighbor == int(res["from_neighbor"].sum())
    pa = rep.per_anchor
    assert pa["matched"].tolist() == matched.sum(0).tolist()
    assert pa["best_when_unmatched"].tolist() == res["best_when_unmatched"].tolist()
    assert pa["worst_matched"].tolist() == res["worst_matched"].tolist()
    np.testing.assert_allclose(pa["pred_iou_matched"], res["pred_iou_matched"], rtol=1e-12)
    np.testing.assert_allclose(pa["pred_iou_all"], res["pred_iou_all"], rtol=1e-12)
    # top-k examples merged across chunks are the whole table's top-k
    pd.testing.assert_frame_equal(rep.examples, one.examples)
    per_image = rep.per_object.groupby("image_id")["unmatched_beats_best"].sum()
    top = per_image.sort_values(ascending=False, kind="stable").head(6)
    assert rep.examples["unmatched_beats_best"].tolist() == top.tolist()
    # per-object rows: the same rows whichever the chunking
    pd.testing.assert_frame_equal(rep.per_object, one.per_object)
    np.testing.assert_array_equal(rep.per_object["ann_id"], inp.ann_id)


def test_streamed_mismatch_equals_the_whole_table(real, tmp_path):
    ds, out = real
    rep = _quiet(
        mismatch,
        ds,
        out,
        neighborhood=1,
        examples=5,
        chunk_objects=CHUNK,
        plot=tmp_path,
        per_object=tmp_path / "mm.parquet",
    )
    one = _quiet(mismatch, ds, out, neighborhood=1, examples=5, chunk_objects=None)
    inp = _quiet(load_inputs, ds, out)
    res = mismatch_tensors(candidate_tensors(inp.candidates, inp.grid), 1)
    keep = res["candidates"] > 0
    assert rep.objects == int(keep.sum()) and rep.candidates_per_object == int(res["candidates"].max())
    assert rep.obj_not_best == int((res["obj_iou"][keep] < res["best_iou"][keep]).sum())
    assert rep.score_not_best == int((res["score_iou"][keep] < res["best_iou"][keep]).sum())
    for row in rep.stats.itertuples(index=False):
        v = res[row.statistic][keep]
        v = v[np.isfinite(v)]
        assert row.objects == v.size
        assert math.isclose(row.mean, v.mean(), rel_tol=1e-12) and math.isclose(row.var, v.var(), rel_tol=1e-9)
    pos = res["best_iou"][keep] > 0
    assert math.isclose(
        rep.obj_iou_share, float((res["obj_iou"][keep][pos] / res["best_iou"][keep][pos]).mean()), rel_tol=1e-12
    )
    pd.testing.assert_frame_equal(rep.examples, one.examples)
    # one chunk is numpy's own mean and var, bit for bit
    for row in one.stats.itertuples(index=False):
        v = res[row.statistic][keep]
        v = v[np.isfinite(v)]
        assert row.mean == v.mean() and row.var == v.var()
    # the per-object table written chunk by chunk is the one held in memory
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "mm.parquet"), one.per_object)
    assert rep.per_object.empty and {p.rsplit("/", 1)[-1] for p in rep.plots} == {"iou_vs_obj.png", "iou_vs_score.png"}


def test_moments_merge_is_chans_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, 1001)
    merged = Moments()
    for part in np.array_split(x, [1, 2, 500, 999]):
        merged.merge(Moments.of(part))
    assert merged.n == x.size
    assert math.isclose(merged.mean, x.mean(), rel_tol=1e-13) and math.isclose(merged.var, x.var(), rel_tol=1e-12)
    assert Moments.of(np.array([np.nan, np.inf])).n == 0 and math.isnan(Moments().var)


def test_errors_and_eval_from_the_store_equal_the_json(real):
    ds, out = real
    from_folder = _quiet(diagnose, ds, predictions=out)
    from_json = _quiet(diagnose, ds, out / "detections.json", candidates=read_predictions(out).candidates)
    pd.testing.assert_frame_equal(from_folder.errors, from_json.errors)
    pd.testing.assert_frame_equal(from_folder.suppressed, from_json.suppressed)
    pd.testing.assert_frame_equal(from_folder.hard, from_json.hard)
    assert from_folder.ap == from_json.ap
    ev_folder = _quiet(evaluate, ds, out)
    ev_json = _quiet(evaluate, ds, out / "detections.json")
    ev_dicts = _quiet(evaluate, ds, json.loads((out / "detections.json").read_text()))
    assert ev_folder.stats == ev_json.stats == ev_dicts.stats and ev_folder.stats[1] > 0.1
    pd.testing.assert_frame_equal(ev_folder.table, ev_json.table)


def _split_detection_part(src, dst, cut_inside_an_image: bool) -> int:
    """Copy the store ``src`` to ``dst`` with its detections rewritten as several parts (cut at
    image boundaries, or with one image's detections spread over two parts); the part count."""
    from cocostat.candidates import DETECTIONS_DIR, part_name, read_detection_part, write_detection_part

    shutil.copytree(src, dst)
    files = read_predictions(dst).detection_files
    cols = [read_detection_part(f) for f in files]
    cols = {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}
    for f in files:
        f.unlink()
    image = cols["image_id"]
    starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
    cuts = [int(starts[k]) for k in range(0, starts.size, 9)][1:]  # every 9th image starts a part
    if cut_inside_an_image:
        big = int(np.argmax(np.diff(np.r_[starts, image.size])))  # the image with most detections
        cuts = sorted(set(cuts) | {int(starts[big]) + 1})
    bounds = [0, *cuts, image.size]
    for k, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        write_detection_part({c: v[lo:hi] for c, v in cols.items()}, dst / DETECTIONS_DIR / part_name(0, k))
    return len(bounds) - 1


@pytest.mark.parametrize("inside", [False, True])
def test_errors_matched_part_by_part_equal_one_chunk(real, tmp_path, inside):
    """errors matches and types a store's detections one part at a time (and detections held in
    memory in chunks of whole images): every figure equals the one-chunk run, whose matching is the
    whole-set one (tests/test_evaluate.py checks it against COCOeval). A store whose parts do not
    hold whole images is read whole, with the same figures."""
    ds, out = real
    folder = tmp_path / "pred"
    assert _split_detection_part(out, folder, inside) >= 8
    parts = len(list(_quiet(detection_chunks, folder, ds)))
    assert parts == (1 if inside else len(read_predictions(folder).detection_files))
    kw = {"conf": 0.05}
    whole = _quiet(diagnose, ds, out / "detections.json", candidates=read_predictions(out).candidates, **kw)
    assert whole.detections > 1000 and whole.errors["count"].sum() > 1000
    runs = [
        _quiet(diagnose, ds, predictions=folder, **kw),
        _quiet(diagnose, ds, out / "detections.json", predictions=folder, chunk_detections=300, **kw),
    ]
    for run in runs:
        assert run.to_dict() == {**whole.to_dict(), "drawn": []}
        np.testing.assert_array_equal(run.det_error, whole.det_error)
        np.testing.assert_array_equal(run.det_target, whole.det_target)
        np.testing.assert_array_equal(run.missed, whole.missed)
    assert len(whole.merged) > 0 and whole.suppressed is not None and len(whole.suppressed) > 0


def test_eval_table_matched_in_image_chunks_equals_one_chunk(real, monkeypatch):
    """eval's P/R/F1 tables from the matching of chunks of about 200 detections (whole images, added
    counts) equal those of one chunk, on the real predictions, at the best and at a given conf."""
    import cocostat.evaluate as E

    ds, out = real
    whole = _quiet(evaluate, ds, out, conf=0.3, per_class=True)
    monkeypatch.setattr(E, "CHUNK_DETECTIONS", 200)
    chunked = _quiet(evaluate, ds, out, conf=0.3, per_class=True)
    assert len(list(E._image_chunks(_quiet(load_detections, out, ds), 200))) > 20
    assert chunked.to_dict() == whole.to_dict() and whole.table["Targets"].iloc[0] > 700
    assert whole.table_at_conf is not None and (whole.table_at_conf["P"] > 0).sum() > 10


@pytest.mark.parametrize("off", [0, -3, 3])
def test_store_detections_are_the_json_ones_whatever_the_manifest_count(real, tmp_path, off):
    """The store's detections, copied part by part into arrays of the manifest's count, equal the
    JSON file's; a manifest count the parts disagree with falls back to concatenating them."""
    ds, out = real
    folder = tmp_path / "pred"
    shutil.copytree(out, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["detections"]["count"] += off
    (folder / "manifest.json").write_text(json.dumps(manifest))
    from_store = _quiet(load_detections, folder, ds)
    from_json = _quiet(load_detections, out / "detections.json", ds)
    assert len(from_json) > 1000
    for name in ("image_id", "category_id", "bbox", "score", "image_index", "class_idx"):
        np.testing.assert_array_equal(getattr(from_store, name), getattr(from_json, name))


_TORCHRUN_SCRIPT = r"""
import json, sys, warnings
import torch.distributed as dist
from cocostat.audit import anchor_audit
from cocostat.data import load_dataset
from cocostat.mismatch import mismatch

dist.init_process_group("gloo")
warnings.simplefilter("ignore")
ds = load_dataset(sys.argv[1], cache=False)
a = anchor_audit(ds, sys.argv[2], iou="giou", examples=4, chunk_objects=40, per_object=sys.argv[3])
m = mismatch(ds, sys.argv[2], neighborhood=1, examples=4, chunk_objects=40)
if dist.get_rank() == 0:
    json.dump({"audit": a.to_dict(), "mismatch": m.to_dict()}, open(sys.argv[4], "w"))
dist.destroy_process_group()
"""


def _close(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.mark.slow
def test_torchrun_ranks_merge_to_the_single_process_figures(tmp_path):
    """Two gloo ranks, each reducing every other chunk, give the one-process figures."""
    import os
    import subprocess
    import sys

    from benchmarks.bench_audit import synthetic_candidates, synthetic_dataset
    from cocostat.candidates import write_store

    frame, manifest = synthetic_candidates(400, seed=5)
    write_store(tmp_path / "pred", frame, manifest, max_objects=30)
    (tmp_path / "ds.json").write_text(json.dumps(synthetic_dataset(frame)))
    script = tmp_path / "run.py"
    script.write_text(_TORCHRUN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(tmp_path / "ds.json"),
            str(tmp_path / "pred"),
            str(tmp_path / "po.parquet"),
            str(tmp_path / "two.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    two = json.loads((tmp_path / "two.json").read_text())
    ds = load_dataset(str(tmp_path / "ds.json"), cache=False)
    one_a = _quiet(anchor_audit, ds, tmp_path / "pred", iou="giou", examples=4, chunk_objects=40)
    one_m = _quiet(mismatch, ds, tmp_path / "pred", neighborhood=1, examples=4, chunk_objects=40)
    assert _close(two["audit"], one_a.to_dict()) and _close(two["mismatch"], one_m.to_dict())
    assert two["audit"]["objects"] == 400
    # each rank wrote the per-object rows of its own chunks; together they are every object once
    rows = pd.concat([pd.read_parquet(tmp_path / f"po.rank{r}.parquet") for r in (0, 1)])
    assert sorted(rows["ann_id"]) == sorted(one_a.per_object["ann_id"])


# --------------------------------------------------------------------------------------------------
# The chunk loops' faster forms give the same values as the plain ones
# --------------------------------------------------------------------------------------------------
def _stored_slots(inp, asg, image):
    from cocostat.assigners import Slots

    a = inp.candidates

    def t(x, dtype=torch.int64):
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)

    return Slots(
        inp.grid, asg.boxes, image, t(a.anchor), t(a.level), t(a.dx), t(a.dy), t(a.gx), t(a.gy), t(a.valid, torch.bool)
    )


def test_stored_positives_by_column_equal_in_positives(real, monkeypatch):
    """Every box-only assigner on the real store: the column gather (taken, no fallback) is in_positives."""
    import cocostat.audit as audit_mod
    from cocostat import assigners
    from cocostat.assign import assign, in_positives

    ds, out = real
    inp = _quiet(load_inputs, ds, out)
    image = torch.from_numpy(dense_image_index(inp.image_id)[1])
    gt = torch.from_numpy(inp.candidates.gt).double()

    def no_fallback(*a):
        raise AssertionError("the real store's cells are the assigner's: no fallback expected")

    tried = 0
    for name in assigners.NAMES:
        kind = assigners.create(name)
        if kind.needs_predictions:
            continue
        asg = assign(gt, inp.grid, kind, image=image)
        stored = _stored_slots(inp, asg, image)
        want = in_positives(asg.slots, asg.positives, stored)
        with monkeypatch.context() as m:
            m.setattr(audit_mod, "in_positives", no_fallback)
            got = audit_mod.stored_positives(asg, stored)
        assert torch.equal(got, want) and int(want.sum()) > 0, name
        tried += 1
    assert tried >= 4
    # a stored cell that is not the assigner's (one object moved by a cell): the fallback, same answer
    asg = assign(gt, inp.grid, "yolov5", image=image)
    stored = _stored_slots(inp, asg, image)
    gx = stored.gx.clone()
    gx[3] += 1
    from dataclasses import replace

    moved = replace(stored, gx=gx)
    assert torch.equal(audit_mod.stored_positives(asg, moved), in_positives(asg.slots, asg.positives, moved))


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_sliced_matched_iou_is_matched_iou_bit_for_bit(real, monkeypatch, kind):
    import cocostat.audit as audit_mod
    from cocostat.boxes import matched_iou

    ds, out = real
    a = _quiet(load_inputs, ds, out).candidates
    pred, gt = torch.from_numpy(a.pred.copy()), torch.from_numpy(a.gt.copy())
    want = matched_iou(pred, gt[:, None, :], kind)
    monkeypatch.setattr(audit_mod, "_IOU_SLICE", 100)  # 815 objects in 9 slices, the last one short
    got = audit_mod.sliced_matched_iou(pred, gt, kind)  # ciou: the one call (atan2's last bits)
    assert got.dtype == want.dtype and torch.isnan(want).any()
    assert torch.equal(torch.nan_to_num(got, nan=-7.0), torch.nan_to_num(want, nan=-7.0))


def test_read_ahead_keeps_order_two_items_at_most_and_raises_in_place():
    from cocostat.candidates import read_ahead

    made, taken = [], []

    def items(n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"item {i}")
            made.append(i)
            assert len(made) - len(taken) <= 2  # the caller's item and the one ahead
            yield i

    for i in read_ahead(items(6)):
        taken.append(i)
    assert taken == list(range(6))
    made.clear()
    taken.clear()
    with pytest.raises(ValueError, match="item 3"):
        for i in read_ahead(items(6, fail_at=3)):
            taken.append(i)
    assert taken == [0, 1, 2]
    assert list(read_ahead(iter(()))) == []


def test_analysis_columns_read_the_same_values_and_leave_the_rest_out(real):
    from cocostat.candidates import ANALYSIS_COLUMNS

    _, out = real
    pred = read_predictions(out)
    for full, part in zip(pred.iter_chunks(CHUNK), pred.iter_chunks(CHUNK, columns=ANALYSIS_COLUMNS), strict=True):
        for f in ("ann_id", "image_id", "class_idx", "iscrowd", "gt", "gx", "gy", "valid", "pred", "obj", "cls_prob"):
            np.testing.assert_array_equal(getattr(part, f), getattr(full, f))
        assert part.max_cls_prob is None and part.max_cls_idx is None and full.max_cls_prob is not None
    with pytest.raises(ValueError, match="columns must be among"):
        next(pred.iter_chunks(CHUNK, columns=["gt"]))


def test_suppressed_objects_equal_a_loop_over_every_candidate_row(real):
    """errors' streamed suppressed objects against a plain loop over the whole candidate table."""
    from cocostat.diagnose import covered_objects, found_objects, suppressed_objects
    from cocostat.evaluate import load_detections, match_detections

    ds, out = real
    pred = read_predictions(out)
    dets = load_detections(pred, ds)
    m = match_detections(ds, dets, 0.5, 100)
    conf = 0.01
    found = found_objects(ds, dets, m, conf)
    covered = covered_objects(ds, dets, m, conf, 0.5)
    got = suppressed_objects(ds, pred, found, conf, 0.5, covered)
    index = {int(a): k for k, a in enumerate(ds.ann_id)}
    best: dict[int, list[float]] = {}
    table = pred.candidates
    cols = [table[c].to_numpy(np.float64) for c in ("px1", "py1", "px2", "py2", "gt_x1", "gt_y1", "gt_x2", "gt_y2")]
    obj, cls_prob = table["obj"].to_numpy(np.float64), table["cls_prob"].to_numpy(np.float64)
    for r, (ann, ok) in enumerate(zip(table["ann_id"].tolist(), table["valid"].tolist(), strict=True)):
        g = index[ann]
        score = obj[r] * cls_prob[r]
        if not ok or ds.iscrowd[g] or found[g] or covered[g] or not score >= conf:
            continue
        x1, y1, x2, y2, a1, b1, a2, b2 = (c[r] for c in cols)
        iw, ih = min(x2, a2) - max(x1, a1), min(y2, b2) - max(y1, b1)
        inter = max(iw, 0.0) * max(ih, 0.0)
        union = (x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter
        iou = min(inter / union, 1.0) if union > 0 else 0.0
        if iou >= 0.5:
            b = best.setdefault(ann, [-1.0, -1.0])
            best[ann] = [max(b[0], score), max(b[1], iou)]
    assert len(best) > 5 and sorted(best) == sorted(got["ann_id"].tolist())
    ref = np.array([best[a] for a in got["ann_id"].tolist()])
    np.testing.assert_allclose(got[["best_conf", "best_iou"]].to_numpy(), ref, rtol=1e-12)
