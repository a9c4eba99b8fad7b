"""cocostat.evaluate against pycocotools: the 12 stats, the matching at every IoU, class-agnostic AP,
faster-coco-eval, the P/R/F1 table, and every bad-detections path.

``fake_detections`` and ``yolo_predictions`` are imported by test_diagnose and test_cli_eval.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocostat.data import from_dict, load_dataset, sample_path
from cocostat.errors import (
    CocostatWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    OptionError,
)
from cocostat.evaluate import (
    CONF_GRID,
    PAIR_BLOCK,
    REC_THRS,
    STAT_NAMES,
    average_precision,
    evaluate,
    group_pairs,
    load_detections,
    make_detections,
    match_detections,
    pair_blocks,
    summary_lines,
    targets_per_class,
)

COCOEVAL_IOUS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)


# --------------------------------------------------------------------------------------------------
# Realistic detections made from real annotations, and real yolov3-tiny predictions
# --------------------------------------------------------------------------------------------------
def fake_detections(coco: dict, seed: int = 0, score_decimals: int = 4) -> list[dict]:
    """Detections made by perturbing the ground truth with a seeded RNG.

    Per non-crowd and crowd object: missed (12 %), else one box with jittered corners (mostly small
    jitter, 20 % large: localisation errors), class swapped (10 %), a duplicate (15 %); per image a
    Poisson(4) number of random background boxes of random classes with low scores.
    """
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in coco["categories"]]
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    out: list[dict] = []

    def add(img, cat, box, score):
        w_img, h_img = sizes[img]
        x = float(np.clip(box[0], 0, w_img - 1))
        y = float(np.clip(box[1], 0, h_img - 1))
        w = float(np.clip(box[2], 1, w_img - x))
        h = float(np.clip(box[3], 1, h_img - y))
        out.append(
            {
                "image_id": img,
                "category_id": int(cat),
                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                "score": round(float(score), score_decimals),
            }
        )

    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        u = rng.random()
        if u < 0.12:
            continue
        j = rng.normal(0, 0.08 if u < 0.8 else 0.3, 4)
        cat = a["category_id"] if rng.random() > 0.1 else rng.choice(cats)
        add(a["image_id"], cat, [x + j[0] * w, y + j[1] * h, w * np.exp(j[2]), h * np.exp(j[3])], rng.beta(5, 2))
        if rng.random() < 0.15:
            j = rng.normal(0, 0.15, 4)
            add(a["image_id"], cat, [x + j[0] * w, y + j[1] * h, w * np.exp(j[2]), h * np.exp(j[3])], rng.beta(2, 5))
    for im in coco["images"]:
        w_img, h_img = im["width"], im["height"]
        for _ in range(rng.poisson(4)):
            w, h = rng.uniform(10, w_img / 2), rng.uniform(10, h_img / 2)
            add(
                im["id"], rng.choice(cats), [rng.uniform(0, w_img - w), rng.uniform(0, h_img - h), w, h], rng.beta(1, 6)
            )
    return out


def yolo_predictions(real_data: Path, tmp_path_factory) -> Path:
    """A predictions folder of the real yolov3-tiny on coco-tiny val2017 (run once per test session)."""
    from click.testing import CliRunner

    from cocostat.cli import main

    folder = tmp_path_factory.getbasetemp() / "yolov3-tiny-val2017"
    if not (folder / "manifest.json").is_file():
        models = real_data / "models"
        res = CliRunner().invoke(
            main,
            [
                "predict",
                "--root",
                str(real_data / "coco-tiny"),
                "val2017",
                "--cfg",
                str(models / "yolov3-tiny.cfg"),
                "--weights",
                str(models / "yolov3-tiny.weights"),
                "-o",
                str(folder),
                "--device",
                "cpu",
                "--no-progress",
                "--format",
                "json",
            ],
        )
        assert res.exit_code == 0, res.output
    return folder


def pycocotools_eval(gt: dict | str, dets: list[dict]):
    """A plain pycocotools run, as a user would write it (prints swallowed), and its summary text."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(gt, dict):
            coco = COCO()
            coco.dataset = copy.deepcopy(gt)
            coco.createIndex()
        else:
            coco = COCO(gt)
        res = coco.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco, res, "bbox")
        ev.evaluate()
        ev.accumulate()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ev.summarize()
    return ev, buf.getvalue()


@pytest.fixture(scope="module")
def sample():
    return json.loads(sample_path().read_text()), load_dataset("sample")


@pytest.fixture(scope="module")
def tiny(real_data):
    path = real_data / "coco-tiny" / "annotations" / "instances_val2017.json"
    return path, json.loads(path.read_text()), load_dataset("val2017", root=real_data / "coco-tiny")


# --------------------------------------------------------------------------------------------------
# Equality with pycocotools
# --------------------------------------------------------------------------------------------------
def test_stats_and_summary_equal_pycocotools_on_sample(sample):
    coco, ds = sample
    dets = fake_detections(coco, seed=3)
    ev, text = pycocotools_eval(coco, dets)
    rep = evaluate(ds, dets)
    assert np.array_equal(np.array(rep.stats), ev.stats)
    assert rep.summary.splitlines() == text.splitlines() == summary_lines(ev.stats)
    assert len(rep.summary.splitlines()) == 12
    d = rep.to_dict()
    assert d["stats"] == list(ev.stats) and [d[k] for k in STAT_NAMES] == list(ev.stats)


@pytest.mark.realdata
@pytest.mark.parametrize("seed", [0, 1])
def test_stats_equal_pycocotools_on_real_json(tiny, tmp_path, seed):
    path, coco, ds = tiny
    dets = fake_detections(coco, seed)
    file = tmp_path / "dets.json"
    file.write_text(json.dumps(dets))
    ev, text = pycocotools_eval(str(path), dets)  # pycocotools loads the real JSON itself
    rep = evaluate(ds, file)
    assert np.array_equal(np.array(rep.stats), ev.stats)
    assert rep.summary == text.rstrip("\n")
    assert 0.2 < rep.stats[0] < 0.9  # realistic, not degenerate


@pytest.mark.realdata
@pytest.mark.slow
def test_stats_equal_pycocotools_on_yolov3_tiny(tiny, real_data, tmp_path_factory):
    path, _, ds = tiny
    folder = yolo_predictions(real_data, tmp_path_factory)
    dets = json.loads((folder / "detections.json").read_text())
    ev, _ = pycocotools_eval(str(path), dets)
    rep = evaluate(ds, folder / "detections.json")
    assert np.array_equal(np.array(rep.stats), ev.stats)
    assert rep.stats[1] > 0.1  # the stock yolov3-tiny finds things
    m = match_detections(ds, load_detections(dets, ds), 0.5)
    assert (
        average_precision(ds.class_idx[:0], np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), targets_per_class(ds))[1]
        == 0.0
    )
    d = load_detections(dets, ds)
    assert average_precision(d.class_idx, d.score, m.tp, m.ignored, targets_per_class(ds), m.order)[1] == ev.stats[1]


def _evalimg_flags(ev, n):
    """kept, tp, ignored per detection at IoU 0.5 (area all, 100 detections) from COCOeval.evalImgs."""
    kept, tp, ign = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[0]:
            continue
        ids = np.array(e["dtIds"], int) - 1
        kept[ids] = True
        ign[ids] = e["dtIgnore"][0].astype(bool)
        tp[ids] = (e["dtMatches"][0] > 0) & ~ign[ids]
    return kept, tp, ign


@pytest.mark.parametrize("seed", [0, 5])
def test_matching_and_ap_equal_cocoeval_at_every_iou(sample, seed):
    """Score ties (1 decimal), a group of 150 detections (> maxDets), shuffled file order."""
    coco, ds = sample
    rng = np.random.default_rng(seed)
    dets = fake_detections(coco, seed, score_decimals=1)
    a0 = next(a for a in coco["annotations"] if a["category_id"] == 1 and not a["iscrowd"])
    for _ in range(150):
        x, y, w, h = a0["bbox"]
        j = rng.normal(0, 0.1, 2)
        dets.append(
            {
                "image_id": a0["image_id"],
                "category_id": 1,
                "bbox": [x + j[0] * w, y + j[1] * h, w, h],
                "score": round(float(rng.random()), 1),
            }
        )
    dets = [dets[i] for i in rng.permutation(len(dets))]
    ev, _ = pycocotools_eval(coco, dets)
    d = load_detections(dets, ds)
    for t_idx, thr in enumerate(COCOEVAL_IOUS):
        m = match_detections(ds, d, thr)
        s = ev.eval["precision"][t_idx, :, :, 0, 2]
        ap, mean = average_precision(d.class_idx, d.score, m.tp, m.ignored, targets_per_class(ds), m.order)
        assert mean == np.mean(s[s > -1])
        valid = (s > -1).all(axis=0)
        np.testing.assert_allclose(ap[valid], s[:, valid].mean(axis=0), rtol=0, atol=1e-12)
        assert np.isnan(ap[~valid]).all()
    m = match_detections(ds, d, 0.5)
    kept, tp, ign = _evalimg_flags(ev, len(dets))
    assert (~m.kept).sum() >= 50 and m.ignored.any()
    assert np.array_equal(kept, m.kept) and np.array_equal(tp, m.tp) and np.array_equal(ign, m.ignored)
    # gt_det is the inverse of det_gt
    assert np.array_equal(m.gt_det[m.det_gt[m.tp]], np.flatnonzero(m.tp))


def test_class_agnostic_equals_hand_rewritten_pycocotools(sample):
    coco, ds = sample
    dets = fake_detections(coco, seed=2)
    rewritten = copy.deepcopy(coco)
    rewritten["categories"] = [{"id": 1, "name": "object", "supercategory": "object"}]
    for a in rewritten["annotations"]:
        a["category_id"] = 1
    dets1 = [{**d, "category_id": 1} for d in dets]
    ev, text = pycocotools_eval(rewritten, dets1)
    rep = evaluate(ds, dets, class_agnostic=True, per_class=True)
    assert np.array_equal(np.array(rep.stats), ev.stats)
    assert rep.summary == text.rstrip("\n")
    assert list(rep.table["Class"]) == ["all", "object"]
    # merging classes turns class swaps into hits: agnostic AP50 is higher
    assert rep.stats[1] > evaluate(ds, dets).stats[1]


def test_faster_backend_equals_pycocotools(sample):
    pytest.importorskip("faster_coco_eval")
    coco, ds = sample
    dets = fake_detections(coco, seed=4)
    ref = evaluate(ds, dets)
    fast = evaluate(ds, dets, backend="faster", per_class=True)
    np.testing.assert_allclose(fast.stats, ref.stats, rtol=0, atol=1e-12)
    assert fast.summary == ref.summary  # identical to the printed precision
    np.testing.assert_allclose(fast.table["mAP@0.5"], evaluate(ds, dets, per_class=True).table["mAP@0.5"], atol=1e-12)
    agn = evaluate(ds, dets, backend="faster", class_agnostic=True)
    np.testing.assert_allclose(agn.stats, evaluate(ds, dets, class_agnostic=True).stats, atol=1e-12)


def test_faster_backend_missing_is_an_option_error(sample, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import fails
    with pytest.raises(OptionError, match="faster-coco-eval"):
        evaluate(sample[1], fake_detections(sample[0]), backend="faster")


# --------------------------------------------------------------------------------------------------
# Kernels against brute-force loops
# --------------------------------------------------------------------------------------------------
@given(st.lists(st.integers(0, 4), max_size=12), st.lists(st.integers(0, 4), max_size=12))
def test_group_pairs_is_every_equal_key_pair(det_key, gt_key):
    pd_, pg = group_pairs(np.array(det_key, np.int64), np.array(gt_key, np.int64))
    expect = [(d, g) for d, kd in enumerate(det_key) for g, kg in enumerate(gt_key) if kd == kg]
    assert list(zip(pd_.tolist(), pg.tolist())) == expect


@given(st.lists(st.integers(0, 4), max_size=12), st.lists(st.integers(0, 4), max_size=12), st.integers(1, 6))
def test_pair_blocks_are_group_pairs_in_pieces(det_key, gt_key, max_pairs):
    det, gt = np.array(det_key, np.int64), np.array(gt_key, np.int64)
    blocks = list(pair_blocks(det, gt, max_pairs))
    pd_, pg = group_pairs(det, gt)
    assert [b[0] for b in blocks[1:]] == [b[1] for b in blocks[:-1]]  # consecutive detection ranges
    for lo, hi, bd, _ in blocks:
        assert ((bd >= lo) & (bd < hi)).all()
        assert bd.size <= max_pairs + (bd == lo).sum()  # the first detection's pairs may overflow
    assert np.concatenate([b[2] for b in blocks] or [pd_]).tolist() == pd_.tolist()
    assert np.concatenate([b[3] for b in blocks] or [pg]).tolist() == pg.tolist()


def _brute_match(gts, dets, thr, max_dets):
    """COCOeval's evaluateImg matching written as plain loops (per image and class)."""
    det_gt = [-1] * len(dets)
    ignored = [False] * len(dets)
    kept = [False] * len(dets)

    def iou(d, g, crowd):
        dx, dy, dw, dh = d
        gx, gy, gw, gh = g
        w = min(dx + dw, gx + gw) - max(dx, gx)
        h = min(dy + dh, gy + gh) - max(dy, gy)
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        return inter / (dw * dh if crowd else dw * dh + gw * gh - inter)

    for key in {(d["image_id"], d["category_id"]) for d in dets}:
        dd = sorted(
            [i for i, d in enumerate(dets) if (d["image_id"], d["category_id"]) == key], key=lambda i: -dets[i]["score"]
        )[:max_dets]
        gg = [j for j, g in enumerate(gts) if (g["image_id"], g["category_id"]) == key]
        gg = [j for j in gg if not gts[j]["iscrowd"]] + [j for j in gg if gts[j]["iscrowd"]]
        used = set()
        for i in dd:
            kept[i] = True
            best, m = min(thr, 1 - 1e-10), -1
            for j in gg:
                crowd = gts[j]["iscrowd"]
                if j in used and not crowd:
                    continue
                if m > -1 and not gts[m]["iscrowd"] and crowd:
                    break
                v = iou(dets[i]["bbox"], gts[j]["bbox"], crowd)
                if v < best:
                    continue
                best, m = v, j
            if m == -1:
                continue
            if gts[m]["iscrowd"]:
                ignored[i] = True
            else:
                det_gt[i] = m
                used.add(m)
    return det_gt, ignored, kept


_box = st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(1, 30), st.integers(1, 30))


@settings(max_examples=60, deadline=None)
@given(
    gts=st.lists(st.tuples(st.integers(1, 2), st.integers(1, 2), _box, st.booleans()), max_size=8),
    dets=st.lists(st.tuples(st.integers(1, 2), st.integers(1, 2), _box, st.integers(0, 4)), max_size=12),
    thr=st.sampled_from([0.1, 0.5, 0.75]),
    max_dets=st.sampled_from([2, 100]),
    pair_block=st.sampled_from([1, 3, PAIR_BLOCK]),
)
def test_matching_equals_brute_force_loop(gts, dets, thr, max_dets, pair_block):
    coco = {
        "images": [{"id": 1, "width": 80, "height": 80}, {"id": 2, "width": 80, "height": 80}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": k + 1, "image_id": i, "category_id": c, "bbox": list(b), "iscrowd": int(cr)}
            for k, (i, c, b, cr) in enumerate(gts)
        ],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        ds = from_dict(coco)
        res = [{"image_id": i, "category_id": c, "bbox": list(b), "score": s / 4} for i, c, b, s in dets]
        d = load_detections(res, ds)
    m = match_detections(ds, d, thr, max_dets, pair_block=pair_block)
    # the dataset sorts annotations by (image, id); map brute-force indices (file order) to it
    pos = {int(a): k for k, a in enumerate(ds.ann_id)}
    det_gt, ignored, kept = _brute_match(coco["annotations"], res, thr, max_dets)
    assert m.det_gt.tolist() == [pos[coco["annotations"][g]["id"]] if g >= 0 else -1 for g in det_gt]
    assert m.ignored.tolist() == ignored and m.kept.tolist() == kept


def test_average_precision_by_hand():
    # one class, 2 objects; detections TP 0.9, FP 0.8, TP 0.7: precision 1, 1/2, 2/3 at recall .5, .5, 1
    ap, mean = average_precision(
        np.zeros(3, np.int64),
        np.array([0.9, 0.8, 0.7]),
        np.array([True, False, True]),
        np.zeros(3, bool),
        np.array([2]),
    )
    expect = (51 * 1.0 + 50 * (2 / 3)) / 101  # envelope: 1 up to recall .5, then 2/3
    assert ap[0] == pytest.approx(expect, abs=1e-12) and mean == pytest.approx(expect, abs=1e-12)
    ap, mean = average_precision(
        np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), np.array([0, 3])
    )
    assert np.isnan(ap[0]) and ap[1] == 0 and mean == 0.0
    assert (
        average_precision(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), np.array([0]))[1]
        == -1.0
    )
    assert REC_THRS.size == 101


def test_pr_table_against_brute_force(sample):
    coco, ds = sample
    dets = fake_detections(coco, seed=6)
    ev, _ = pycocotools_eval(coco, dets)
    kept, tp, ign = _evalimg_flags(ev, len(dets))
    rep = evaluate(ds, dets, per_class=True, conf=0.5)
    names = list(ds.categories["name"])
    cls = np.array(
        [names.index(next(c["name"] for c in coco["categories"] if c["id"] == d["category_id"])) for d in dets]
    )
    score = np.array([d["score"] for d in dets])
    n_gt = np.array(
        [
            sum(1 for a in coco["annotations"] if not a["iscrowd"] and a["category_id"] == cid)
            for cid in ds.categories["category_id"]
        ]
    )

    def table(c):
        rows = []
        for k in range(len(names)):
            sel = kept & ~ign & (cls == k) & (score >= c)
            t, f = int((sel & tp).sum()), int((sel & ~tp).sum())
            p = t / (t + f) if t + f else 0.0
            r = t / n_gt[k] if n_gt[k] else 0.0
            rows.append((p, r, 2 * p * r / (p + r) if p + r else 0.0))
        return np.array(rows)

    has = n_gt > 0
    mean_f1 = [table(c)[has, 2].mean() for c in CONF_GRID[::10]]  # coarse brute-force search
    best = rep.best_conf
    assert table(best)[has, 2].mean() >= max(mean_f1) - 1e-12
    for conf, frame in ((best, rep.table), (0.5, rep.table_at_conf)):
        t = table(conf)
        body = frame.iloc[1:].set_index("Class")
        for k in np.flatnonzero(has):
            assert body.loc[names[k], "Targets"] == n_gt[k]
            np.testing.assert_allclose(body.loc[names[k], ["P", "R", "F1"]].to_numpy(float), t[k], atol=1e-12)
        np.testing.assert_allclose(frame.iloc[0][["P", "R", "F1"]].to_numpy(float), t[has].mean(axis=0), atol=1e-12)
    # per-class mAP@0.5 is COCOeval's, the 'all' row its mean (= AP50 up to rounding)
    s = ev.eval["precision"][0, :, :, 0, 2]
    k = int(np.flatnonzero(has)[0])
    assert rep.table.iloc[1:].set_index("Class").loc[names[k], "mAP@0.5"] == pytest.approx(s[:, k].mean())
    assert rep.table.iloc[0]["mAP@0.5"] == pytest.approx(ev.stats[1], abs=1e-12)
    assert rep.table.iloc[0]["Images"] == ds.num_images
    # without --per-class only the 'all' row is shown
    assert len(evaluate(ds, dets).to_frame()) == 1


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
def _write(tmp_path, content) -> Path:
    f = tmp_path / "dets.json"
    f.write_text(content if isinstance(content, str) else json.dumps(content))
    return f


GOOD = {"image_id": None, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "the file is empty"),
        ("  \n", "the file is empty"),
        ("[{not json", "invalid JSON"),
        ({"image_id": 1}, "not a COCO results file"),
        (
            [{"image_id": "IMG", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}],
            r"not a COCO results file.*image_id",
        ),
        ([{"category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}], r"missing required field `image_id`"),
        ([{**GOOD, "bbox": [1, 2, 3]}], r"bbox"),
        ([{**GOOD, "bbox": [1, 2, -3, 4]}], r"detection 0 in dets.json: bbox must be 4 finite numbers.*-3"),
        (
            [{**GOOD, "image_id": 999999999}],
            (
                r"detection 0 in dets.json: image_id 999999999 is not an image of "
                r"dataset sample \(1 detection"
            ),
        ),
        ([{**GOOD, "category_id": 12}], r"category_id 12 is not a category of dataset sample"),
    ],
)
def test_bad_detections(sample, tmp_path, content, match):
    ds = sample[1]
    if isinstance(content, list):
        content = [
            {**d, "image_id": int(ds.image_id[0]) if d.get("image_id", 0) is None else d["image_id"]}
            if "image_id" in d
            else d
            for d in content
        ]
    with pytest.raises(DatasetFormatError, match=match):
        load_detections(_write(tmp_path, content), ds)


def test_bad_detections_in_memory_and_missing_file(sample, tmp_path):
    ds = sample[1]
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_detections(tmp_path / "nope.json", ds)
    # JSON has no NaN: in memory it becomes null and is refused with its place
    with pytest.raises(DatasetFormatError, match=r"got `null` - at `\$\[0\]\.score`"):
        load_detections([{**GOOD, "image_id": int(ds.image_id[0]), "score": float("nan")}], ds)
    img = np.full(3, ds.image_id[0])
    with pytest.raises(DatasetFormatError, match="detection 0 in x: score must be a finite number"):
        make_detections(ds, img, [1, 1, 1], [[1, 2, 3, 4]] * 3, [np.nan, 0.5, 0.5], source="x")
    with pytest.raises(DatasetFormatError, match=r"detection 1 in x: bbox .* \(2 bad box"):
        make_detections(ds, img, [1, 1, 1], [[1, 2, 3, 4], [1, 2, 3, np.inf], [np.nan, 2, 3, 4]], [0.5] * 3, source="x")
    with pytest.raises(DatasetFormatError, match="one entry per detection"):
        make_detections(ds, img, [1, 1], [[1, 2, 3, 4]] * 3, [0.5] * 3, source="x")
    with pytest.raises(OptionError, match="^conf must"):
        evaluate(ds, [{**GOOD, "image_id": int(ds.image_id[0])}], conf=1.5)
    with pytest.raises(OptionError, match="^backend must"):
        evaluate(ds, [{**GOOD, "image_id": int(ds.image_id[0])}], backend="nope")


def test_numpy_values_and_zero_size_warning(sample):
    ds = sample[1]
    dets = [
        {
            "image_id": np.int64(ds.image_id[0]),
            "category_id": np.int32(1),
            "bbox": [np.float64(1.5), 2, 0, 4],
            "score": np.float32(0.5),
        }
    ]
    with pytest.warns(CocostatWarning, match="1 detection.*zero width or height"):
        d = load_detections(dets, ds)
    assert d.bbox.tolist() == [[1.5, 2.0, 0.0, 4.0]] and d.score[0] == 0.5


def test_empty_list_is_valid_and_scores_zero(sample):
    ds = sample[1]
    with pytest.warns(CocostatWarning, match="no detections"):
        rep = evaluate(ds, [], per_class=True)
    assert rep.detections == 0 and rep.stats[0] == 0.0 and rep.stats[1] == 0.0
    assert (rep.table[["P", "R", "F1"]].to_numpy() == 0).all()
    # pycocotools itself gives the same numbers when it can run: one detection far from everything
    far = [{"image_id": int(ds.image_id[0]), "category_id": 1, "bbox": [0, 0, 0, 0], "score": 0.1}]
    with pytest.warns(CocostatWarning, match="zero width"):
        far_rep = evaluate(ds, far)
    assert far_rep.stats == rep.stats
