"""Tests of cocostat.anchors: presets and parsing, box sizes, fitness figures, the anchor designer."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cocostat import anchors as A
from cocostat.boxes import pairwise_wh_iou
from cocostat.data import from_dict, load_dataset
from cocostat.errors import CocostatWarning, ModelFormatError, OptionError


# --------------------------------------------------------------------------------------------------
# helpers: plain-loop references
# --------------------------------------------------------------------------------------------------
def _wh_iou_loop(g, a):
    inter = min(g[0], a[0]) * min(g[1], a[1])
    union = g[0] * g[1] + a[0] * a[1] - inter
    return inter / union if union > 0 else 0.0


def _ratio_loop(g, a):
    rw = min(g[0] / a[0], a[0] / g[0]) if g[0] > 0 else 0.0
    rh = min(g[1] / a[1], a[1] / g[1]) if g[1] > 0 else 0.0
    return min(rw, rh)


def _fitness_loop(wh, anchors, iou_t, ratio_t, counts=None):
    counts = [1] * len(wh) if counts is None else list(counts)
    sums = dict.fromkeys(
        ["avg_iou", "bpr_iou", "anchors_above_iou", "bpr_ratio", "anchors_above_ratio", "fitness_ratio"], 0.0
    )
    best_for = [0] * len(anchors)
    n = 0
    for g, c in zip(wh, counts, strict=True):
        ious = [_wh_iou_loop(g, a) for a in anchors]
        xs = [_ratio_loop(g, a) for a in anchors]
        best = max(ious)
        bx = max(xs)
        sums["avg_iou"] += c * best
        sums["bpr_iou"] += c * (best > iou_t)
        sums["anchors_above_iou"] += c * sum(v > iou_t for v in ious)
        sums["bpr_ratio"] += c * (bx > 1 / ratio_t)
        sums["anchors_above_ratio"] += c * sum(v > 1 / ratio_t for v in xs)
        sums["fitness_ratio"] += c * (bx if bx > 1 / ratio_t else 0.0)
        best_for[ious.index(best)] += c
        n += c
    return {k: v / n for k, v in sums.items()}, best_for, n


def _coco(boxes, sizes=None, crowd=None):
    """A COCO dict with one image per box (default 640x480) and the given xywh boxes."""
    sizes = sizes or [(640, 480)] * len(boxes)
    crowd = crowd or [0] * len(boxes)
    return {
        "images": [{"id": i + 1, "width": w, "height": h, "file_name": f"{i}.jpg"} for i, (w, h) in enumerate(sizes)],
        "annotations": [
            {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": list(b), "iscrowd": c}
            for i, (b, c) in enumerate(zip(boxes, crowd, strict=True))
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }


def _clusters(rng, centres, per=200, spread=0.03):
    """Sizes scattered log-normally (sigma ``spread``) around each centre: (len(centres) * per, 2)."""
    c = np.repeat(np.asarray(centres, float), per, axis=0)
    return c * np.exp(rng.normal(0, spread, c.shape))


# --------------------------------------------------------------------------------------------------
# presets and parsing
# --------------------------------------------------------------------------------------------------
def test_presets_values_and_masks():
    y3 = A.PRESETS["yolov3"]
    assert y3.wh.tolist() == [
        [10, 13],
        [16, 30],
        [33, 23],
        [30, 61],
        [62, 45],
        [59, 119],
        [116, 90],
        [156, 198],
        [373, 326],
    ]
    assert [m.tolist() for m in y3.levels] == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
    assert np.array_equal(A.PRESETS["yolov3-spp"].wh, y3.wh)
    tiny = A.PRESETS["yolov3-tiny"]
    assert tiny.wh.tolist() == [[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]]
    assert [m.tolist() for m in tiny.levels] == [[3, 4, 5], [0, 1, 2]]
    assert tiny.level_of().tolist() == [1, 1, 1, 0, 0, 0]
    assert A.parse_anchor_spec("YOLOv3") is y3


@pytest.mark.realdata
@pytest.mark.parametrize(
    "cfg,preset",
    [
        ("cfg/yolov3.cfg", "yolov3"),
        ("cfg/yolov3-spp.cfg", "yolov3-spp"),
        ("cfg/yolov3-tiny.cfg", "yolov3-tiny"),
        ("models/yolov3-tiny.cfg", "yolov3-tiny"),
    ],
)
def test_presets_match_the_real_darknet_cfgs(real_data, cfg, preset):
    a = A.parse_anchor_spec(str(real_data / cfg))
    p = A.PRESETS[preset]
    assert a.name == str(real_data / cfg)
    assert np.array_equal(a.wh, p.wh)
    assert [m.tolist() for m in a.levels] == [m.tolist() for m in p.levels]


def test_parse_list_sorts_by_area_and_splits_levels():
    a = A.parse_anchor_spec(" 30,61, 10,13  16,30, 33,23, 62,45, 59,119 ")
    assert a.wh.tolist() == [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119]]
    assert [m.tolist() for m in a.levels] == [[3, 4, 5], [0, 1, 2]]
    assert a.name == "10,13,16,30,33,23,30,61,62,45,59,119"
    assert A.parse_anchor_spec("12.5,7").wh.tolist() == [[12.5, 7.0]]


@pytest.mark.parametrize(
    "spec,match",
    [
        ("10,13, 16", "even, non-zero count"),
        ("10,13, -16,30", "unknown anchor set|positive"),
        ("10,0", "positive"),
        ("yolov9", "unknown anchor set 'yolov9'"),
        ("no/such/file.cfg", "unknown anchor set"),
    ],
)
def test_parse_spec_errors(spec, match):
    with pytest.raises(OptionError, match=match):
        A.parse_anchor_spec(spec)


def test_parse_cfg_comments_default_mask_and_errors(tmp_path):
    cfg = tmp_path / "net.cfg"
    cfg.write_text(
        "[net]\nwidth=416\n# anchors = 1,1\n[yolo]\nmask = 1 , 2   ; comment\n"
        "anchors = 10,14,  23,27, 37,58\nclasses=80\n[convolutional]\nanchors=5,5\n"
        "[yolo]\nanchors = 10,14, 23,27, 37,58\n"
    )
    a = A.parse_anchor_spec(str(cfg))
    assert a.wh.tolist() == [[10, 14], [23, 27], [37, 58]]
    assert [m.tolist() for m in a.levels] == [[1, 2], [0, 1, 2]]  # no mask line: every anchor
    cases = {
        "[net]\nwidth=1\n": "no \\[yolo\\] section",
        "[yolo]\nmask=0\n": "has no anchors = line",
        "[yolo]\nanchors=1,2,3\n": "even, non-zero count",
        "[yolo]\nanchors=1,2\nmask=3\n": "mask indices must be in 0..0",
        "[yolo]\nanchors=1,2\nmask=a\n": "mask must be comma-separated numbers",
        "[yolo]\nanchors=1,2\n[yolo]\nanchors=1,3\n": "anchors differ",
    }
    for text, match in cases.items():
        cfg.write_text(text)
        with pytest.raises(ModelFormatError, match=match):
            A.parse_anchor_spec(str(cfg))


def test_darknet_and_yaml_output():
    a = A.PRESETS["yolov3"]
    text = a.darknet()
    lines = text.splitlines()
    assert lines[0] == "anchors = 10,13, 16,30, 33,23, 30,61, 62,45, 59,119, 116,90, 156,198, 373,326"
    assert lines[1] == "num = 9"
    assert [ln for ln in lines if ln.startswith("mask")] == ["mask = 6,7,8", "mask = 3,4,5", "mask = 0,1,2"]
    assert all(ln.startswith(("anchors", "num", "mask", "#")) for ln in lines)  # no inline comments
    assert a.yolov5_yaml().splitlines() == [
        "anchors:",
        "  - [10,13, 16,30, 33,23]  # P3/8",
        "  - [30,61, 62,45, 59,119]  # P4/16",
        "  - [116,90, 156,198, 373,326]  # P5/32",
    ]
    half = A.AnchorSet("x", np.array([[10.5, 13.25]]), [np.array([0])])
    assert half.darknet().splitlines()[0] == "anchors = 10.5,13.25"


def test_default_levels_and_split():
    assert [A.default_levels(k) for k in (1, 2, 3, 4, 5, 6, 9, 12)] == [1, 1, 1, 1, 2, 2, 3, 4]
    assert [m.tolist() for m in A._split_levels(9, 3)] == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
    assert [m.tolist() for m in A._split_levels(5, 2)] == [[3, 4], [0, 1, 2]]


# --------------------------------------------------------------------------------------------------
# box sizes
# --------------------------------------------------------------------------------------------------
def test_box_sizes_letterbox_stretch_crowd_zero_small():
    boxes = [(0, 0, 64, 48), (10, 10, 320, 100), (0, 0, 0, 5), (0, 0, 3, 2), (5, 5, 100, 100)]
    with pytest.warns(CocostatWarning, match="1 annotation\\(s\\) have zero width or height"):
        ds = from_dict(
            _coco(boxes, sizes=[(640, 480), (640, 320), (640, 480), (200, 800), (640, 480)], crowd=[0, 0, 0, 0, 1])
        )
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        s = A.box_sizes(ds, size=416)
    msgs = " | ".join(str(w.message) for w in rec if issubclass(w.category, CocostatWarning))
    assert "1 iscrowd box(es) left out" in msgs and "1 box(es) of zero width or height" in msgs
    assert "1 of 3 box(es) are under 2 px" in msgs
    np.testing.assert_allclose(s.wh, [[64 * 0.65, 48 * 0.65], [320 * 0.65, 100 * 0.65], [3 * 0.52, 2 * 0.52]])
    assert (s.crowd_excluded, s.zero_excluded, s.small, s.annotations) == (1, 1, 1, 5)
    assert s.describe() == "letterbox to 416 px"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        st_ = A.box_sizes(ds, size=320, resize="stretch", include_crowd=True)
    assert not any("iscrowd" in str(w.message) for w in rec)
    np.testing.assert_allclose(st_.wh, [[32, 32], [160, 100], [4.8, 0.8], [50, 66.66666666666667]])
    assert st_.crowd_excluded == 0


def test_box_sizes_multi_scale_is_seeded_and_on_the_step_grid():
    ds = from_dict(_coco([(0, 0, 64, 64)] * 50, sizes=[(640, 640)] * 50))
    s1 = A.box_sizes(ds, multi_scale=(300, 608), seed=3)
    s2 = A.box_sizes(ds, multi_scale=(300, 608), seed=3)
    np.testing.assert_array_equal(s1.wh, s2.wh)
    net = s1.wh[:, 0] * 10  # box is 1/10 of the image side
    assert set(np.round(net).astype(int)) <= set(range(320, 609, 32)) and len(set(net.round())) > 3
    assert s1.describe() == "letterbox to 300..608 px (multi-scale, step 32)"
    with pytest.raises(OptionError, match="multiple of 32"):
        A.box_sizes(ds, multi_scale=(330, 350))
    with pytest.raises(OptionError, match="MIN <= MAX"):
        A.box_sizes(ds, multi_scale=(600, 300))


@pytest.mark.parametrize(
    "kw,match", [({"size": 0}, "size"), ({"resize": "crop"}, "resize"), ({"size": 41.5}, "integer")]
)
def test_box_sizes_bad_options(kw, match):
    ds = from_dict(_coco([(0, 0, 10, 10)]))
    with pytest.raises(OptionError, match=match):
        A.box_sizes(ds, **kw)


# --------------------------------------------------------------------------------------------------
# fitness
# --------------------------------------------------------------------------------------------------
def test_fitness_matches_plain_loop():
    rng = np.random.default_rng(1)
    wh = np.exp(rng.uniform(0, 6, (300, 2)))
    wh[:5] = [[0, 4], [3, 0], [10, 13], [1, 1], [500, 2]]  # zero sides, an exact anchor, extremes
    anchors = A.PRESETS["yolov3"].wh
    for iou_t, ratio_t in [(0.225, 4.0), (0.5, 2.0), (0.0, 1.0)]:
        counts = rng.integers(0, 4, wh.shape[0])
        for c in (None, counts):
            m = A.fitness(wh, anchors, iou_t, ratio_t, counts=c)
            ref, best_for, n = _fitness_loop(wh, anchors, iou_t, ratio_t, c)
            assert m["boxes"] == n
            for key, v in ref.items():
                assert m[key] == pytest.approx(v, abs=1e-12), key
            assert m["best_for"].tolist() == best_for


def test_iou_ratio_kernels_match_boxes_module_and_loop():
    rng = np.random.default_rng(2)
    g = np.exp(rng.uniform(-1, 6, (64, 2)))
    a = np.exp(rng.uniform(0, 6, (7, 2)))
    iou, x = A._iou_ratio_np(g, a)
    np.testing.assert_allclose(iou, pairwise_wh_iou(g, a), rtol=1e-12)
    np.testing.assert_allclose(x, [[_ratio_loop(gi, aj) for aj in a] for gi in g], rtol=1e-12)
    np.testing.assert_allclose(A.ratio_metric(g, a), x)
    t = A._iou_t(torch.from_numpy(g), torch.from_numpy(a)).numpy()
    np.testing.assert_allclose(t, iou, rtol=1e-12)
    r = A._ratio_t(torch.from_numpy(g), torch.from_numpy(a)).numpy()
    np.testing.assert_allclose(r, x, rtol=1e-12)


sizes_st = st.lists(st.tuples(st.floats(0.5, 600), st.floats(0.5, 600)), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(
    wh=sizes_st,
    anchors=st.lists(st.tuples(st.floats(1, 500), st.floats(1, 500)), min_size=1, max_size=9),
    scale=st.floats(0.1, 10),
    reps=st.integers(1, 3),
)
def test_fitness_properties(wh, anchors, scale, reps):
    wh, anchors = np.array(wh), np.array(anchors)
    m = A.fitness(wh, anchors)
    for key in ("avg_iou", "bpr_iou", "bpr_ratio", "fitness_ratio"):
        assert 0.0 <= m[key] <= 1.0
    assert 0 <= m["anchors_above_iou"] <= len(anchors) and 0 <= m["anchors_above_ratio"] <= len(anchors)
    assert m["best_for"].sum() == len(wh)
    # scale-free: sizes and anchors scaled together give the same figures, except where a box sits
    # exactly on a threshold (a 1x1 box and a 1x4 anchor: ratio 1/4), which rounding may tip either way
    near = lambda v, t: np.isclose(v, t, rtol=1e-9, atol=1e-12).any()  # noqa: E731
    assume(not near(pairwise_wh_iou(wh, anchors), 0.225) and not near(A.ratio_metric(wh, anchors), 1 / 4.0))
    ms = A.fitness(wh * scale, anchors * scale)
    for key in A.METRIC_KEYS:
        assert ms[key] == pytest.approx(m[key], abs=1e-9)
    # counts are the same as repeated rows
    mc = A.fitness(wh, anchors, counts=np.full(len(wh), reps))
    mr = A.fitness(np.repeat(wh, reps, axis=0), anchors)
    for key in A.METRIC_KEYS:
        assert mc[key] == pytest.approx(mr[key], abs=1e-12)
    assert mc["boxes"] == mr["boxes"] == reps * len(wh)


def test_fitness_empty_and_errors():
    m = A.fitness(np.zeros((0, 2)), A.PRESETS["yolov3-tiny"].wh)
    assert m["boxes"] == 0 and np.isnan(m["avg_iou"]) and m["best_for"].tolist() == [0] * 6
    assert A.fitness([], [[1, 1]])["boxes"] == 0
    with pytest.raises(OptionError, match="shape \\(N, 2\\)"):
        A.fitness(np.ones((3, 4)), [[1, 1]])
    with pytest.raises(OptionError, match="anchors row 0: width and height must be finite and > 0"):
        A.fitness([[1, 1]], [[0, 1]])
    with pytest.raises(OptionError, match="wh row 1"):
        A.fitness([[1, 1], [np.nan, 1]], [[1, 1]])
    with pytest.raises(OptionError, match="at least one"):
        A.fitness([[1, 1]], np.zeros((0, 2)))
    with pytest.raises(OptionError, match="iou_t"):
        A.fitness([[1, 1]], [[1, 1]], iou_t=1.0)
    with pytest.raises(OptionError, match="ratio_t"):
        A.fitness([[1, 1]], [[1, 1]], ratio_t=0.5)
    with pytest.raises(OptionError, match="counts"):
        A.fitness([[1, 1]], [[1, 1]], counts=[1, 2])
    # tensors are accepted
    assert A.fitness(torch.ones(2, 2) * 10, torch.tensor([[10.0, 10.0]]))["avg_iou"] == 1.0


# --------------------------------------------------------------------------------------------------
# the designer
# --------------------------------------------------------------------------------------------------
CENTRES = [[6, 8], [14, 30], [30, 15], [60, 60], [40, 120], [150, 90], [200, 300], [380, 300], [90, 200]]


def test_obvious_clusters_are_found():
    rng = np.random.default_rng(0)
    wh = _clusters(rng, CENTRES)
    d = A.design_anchors(wh, 9, seed=0, decimals=None)
    exp = np.array(CENTRES, float)
    exp = exp[np.argsort(exp.prod(axis=1))]
    np.testing.assert_allclose(d.wh, exp, rtol=0.05)
    assert d.metrics["avg_iou"] > 0.9 and d.metrics["bpr_iou"] == 1.0
    assert d.metrics["best_for"].tolist() == [200] * 9


def test_exactly_k_distinct_sizes_give_those_sizes():
    sizes = np.array([[5, 7], [20, 10], [13, 40], [64, 64], [100, 30]], float)
    wh = np.repeat(sizes, [3, 1, 7, 2, 5], axis=0)
    d = A.design_anchors(wh, 5, seed=4)
    np.testing.assert_array_equal(d.wh, sizes[np.argsort(sizes.prod(axis=1))])
    assert d.metrics["avg_iou"] == 1.0


def test_deterministic_for_a_seed_and_independent_of_input_order():
    rng = np.random.default_rng(5)
    wh = np.exp(rng.normal(3.5, 1.0, (3000, 2)))
    d1 = A.design_anchors(wh, 9, seed=7, evolve=300)
    d2 = A.design_anchors(wh, 9, seed=7, evolve=300)
    d3 = A.design_anchors(wh[rng.permutation(len(wh))], 9, seed=7, evolve=300)
    np.testing.assert_array_equal(d1.wh, d2.wh)
    np.testing.assert_array_equal(d1.wh, d3.wh)
    assert d1.fitness == d3.fitness
    # counts weigh like repeated rows
    u, cnt = np.unique(np.round(wh[:500]), axis=0, return_counts=True)
    da = A.design_anchors(u, 6, counts=cnt, seed=1, evolve=200)
    db = A.design_anchors(np.round(wh[:500]), 6, seed=1, evolve=200)
    np.testing.assert_array_equal(da.wh, db.wh)


def test_evolution_never_worse_than_its_start_and_improves_on_skewed_data():
    rng = np.random.default_rng(6)
    wh = np.exp(rng.normal([3.0, 3.6], [1.1, 0.9], (4000, 2)))
    for name in A.FITNESSES:
        d = A.design_anchors(wh, 9, seed=0, evolve=400, fitness_name=name)
        assert d.fitness >= d.start_fitness
        assert d.fitness == pytest.approx(A.fitness_value(A.fitness(wh, d.wh), name))
        assert d.start_fitness == pytest.approx(A.fitness_value(A.fitness(wh, d.start), name))
    d0 = A.design_anchors(wh, 9, seed=0, evolve=0)
    np.testing.assert_array_equal(d0.wh, d0.start)
    assert d0.accepted == 0 and d0.kept_start
    d = A.design_anchors(wh, 9, seed=0, evolve=400)
    assert d.accepted > 0 and d.fitness > d0.fitness
    assert (d.wh == np.round(d.wh)).all()  # whole pixels by default
    assert (np.diff(d.wh.prod(axis=1)) >= 0).all()  # ascending area


def test_evolution_keeps_start_when_nothing_is_better(monkeypatch):
    rng = np.random.default_rng(8)
    wh = np.exp(rng.normal(3.0, 1.0, (500, 2)))
    # an evolution that claims moves but ends on 1x1 anchors: the exact check must keep the start
    monkeypatch.setattr(A, "_evolve", lambda p, c, start, *args, **kw: (torch.ones_like(start), 5))
    d = A.design_anchors(wh, 4, seed=0, evolve=10)
    assert d.kept_start and np.array_equal(d.wh, d.start) and (d.wh > 1).all()
    assert d.fitness == d.start_fitness and d.accepted == 5


def test_grid_search_reports_exact_figures():
    rng = np.random.default_rng(9)
    wh = np.exp(rng.normal(3.5, 1.0, (20000, 2)))
    d = A.design_anchors(wh, 9, seed=0, evolve=200, max_points=1000, grid=0.04)
    assert d.points < d.distinct == 20000
    exact = A.fitness(wh, d.wh)
    for key in A.METRIC_KEYS:
        assert d.metrics[key] == pytest.approx(exact[key], abs=1e-12)
    full = A.design_anchors(wh, 9, seed=0, evolve=200)
    assert abs(full.metrics["avg_iou"] - d.metrics["avg_iou"]) < 0.01


def test_small_and_degenerate_inputs():
    with pytest.raises(OptionError, match="only 3 distinct box size\\(s\\) among 6 box\\(es\\), fewer than the 9"):
        A.design_anchors([[1, 2], [1, 2], [3, 4], [5, 6], [5, 6], [5, 6]], 9)
    with pytest.raises(OptionError, match="only 0 distinct"):
        A.design_anchors(np.zeros((0, 2)), 9)
    with pytest.raises(OptionError, match="finite and > 0"):
        A.design_anchors([[0, 2], [1, 2]], 1)
    d = A.design_anchors([[10, 20]], 1)
    assert d.wh.tolist() == [[10, 20]]
    d = A.design_anchors([[10, 20], [30, 10], [12, 22]], 1, evolve=100)
    assert d.wh.shape == (1, 2)
    # two sizes 0.2 px apart collapse when rounded to whole pixels: a warning, not silently fewer
    with pytest.warns(CocostatWarning, match="coincide"):
        d = A.design_anchors([[10.1, 10.1], [10.3, 10.3], [50, 50]], 3, evolve=0)
    assert d.wh.shape == (3, 2)
    for kw, match in [
        ({"k": 0}, "^k must be an integer >= 1"),
        ({"restarts": 0}, "restarts"),
        ({"evolve": -1}, "evolve"),
        ({"fitness_name": "map"}, "fitness"),
        ({"seed": -2}, "seed"),
    ]:
        with pytest.raises(OptionError, match=match):
            A.design_anchors([[1, 2], [3, 4]], **{"k": 1, **kw})


@pytest.mark.gpu
def test_cuda_search_matches_cpu():
    rng = np.random.default_rng(11)
    wh = _clusters(rng, CENTRES, per=300, spread=0.2)
    cpu = A.design_anchors(wh, 9, seed=0, evolve=300)
    gpu = A.design_anchors(wh, 9, seed=0, evolve=300, device="cuda")
    np.testing.assert_allclose(gpu.wh, cpu.wh, atol=1.0)
    assert abs(gpu.fitness - cpu.fitness) < 2e-3


# --------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------
def test_kmeans_report_on_the_sample(tmp_path):
    ds = load_dataset("sample")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        r = A.kmeans(
            ds, size=416, k=6, evolve=200, compare=["yolov3", "yolov3-tiny", "yolov3"], plot=tmp_path / "a.png"
        )
    d = json.loads(json.dumps(r.to_dict()))
    for key in ("size", "resize", "k", "seed", "boxes", "anchors", "metrics", "compare"):
        assert key in d
    assert set(A.METRIC_KEYS) <= set(d["metrics"])
    assert list(d["compare"]) == ["yolov3", "yolov3-tiny"]
    assert d["k"] == 6 and len(d["anchors"]) == 6 and d["masks"] == [[3, 4, 5], [0, 1, 2]]
    assert d["boxes"] == ds.num_annotations - int(ds.iscrowd.sum())
    m = A.fitness(r.sizes.wh, np.array(d["anchors"]))
    assert d["metrics"]["avg_iou"] == pytest.approx(m["avg_iou"])
    assert d["best_for"] == m["best_for"].tolist()
    assert d["compare"]["yolov3"]["metrics"]["bpr_iou"] == pytest.approx(
        A.fitness(r.sizes.wh, A.PRESETS["yolov3"].wh)["bpr_iou"]
    )
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [tmp_path / "a.png"]  # no temporary file left behind
    frame = r.to_frame()
    assert list(frame.columns) == ["set", "anchor", "level", "stride", "w", "h", "aspect", "best_for", "share"]
    assert len(frame) == 6 + 9 + 6
    titles = [t for t, _ in r.sections()]
    assert any(t.startswith("Darknet cfg") for t in titles) and "yolov5 model YAML" in titles


def test_kmeans_checks_options_before_the_search(monkeypatch):
    ds = load_dataset("sample")
    monkeypatch.setattr(A, "design_anchors", lambda *a, **k: pytest.fail("search ran"))
    with pytest.raises(OptionError, match="plot must name a .png"):
        A.kmeans(ds, plot="x.jpg")
    with pytest.raises(OptionError, match="unknown anchor set"):
        A.kmeans(ds, compare=["yolov9"])
    with pytest.raises(OptionError, match="levels .* at most k=3"):
        A.kmeans(ds, k=3, levels=4)


def test_kmeans_empty_dataset_message():
    ds = from_dict(_coco([]))
    with pytest.raises(OptionError, match="only 0 distinct box size"):
        A.kmeans(ds)


@pytest.mark.realdata
def test_preset_figures_on_real_subsets(real_data):
    """Figures of the presets on coco-tiny and coco128, against a loop over the raw JSON."""
    for root, split in (("coco-tiny", "val2017"), ("coco-tiny", "train2017"), ("coco128", "train2017")):
        raw = json.loads((real_data / root / "annotations" / f"instances_{split}.json").read_text())
        img = {im["id"]: (im["width"], im["height"]) for im in raw["images"]}
        wh = []
        for ann in raw["annotations"]:
            w, h = ann["bbox"][2:]
            if ann["iscrowd"] or w <= 0 or h <= 0:
                continue
            s = 416 / max(img[ann["image_id"]])
            wh.append((w * s, h * s))
        ds = load_dataset(split, root=real_data / root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CocostatWarning)
            sizes = A.box_sizes(ds, size=416)
        assert sizes.wh.shape[0] == len(wh)
        for name in ("yolov3", "yolov3-tiny"):
            m = A.fitness(sizes.wh, A.PRESETS[name].wh)
            ref, best_for, _ = _fitness_loop(wh, A.PRESETS[name].wh.tolist(), 0.225, 4.0)
            for key in A.METRIC_KEYS:
                assert m[key] == pytest.approx(ref[key], abs=1e-9)
            assert m["best_for"].tolist() == best_for
    # pinned figures of coco-tiny val2017 (804 boxes at 416 px letterbox)
    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        r = A.kmeans(ds, evolve=300, compare=["yolov3", "yolov3-tiny"])
    y3 = r.compare["yolov3"].metrics
    assert r.sizes.wh.shape[0] == 804
    assert y3["avg_iou"] == pytest.approx(0.6225, abs=5e-5) and y3["bpr_iou"] == pytest.approx(0.9813, abs=5e-5)
    assert r.compare["yolov3-tiny"].metrics["avg_iou"] == pytest.approx(0.5647, abs=5e-5)
    # designed anchors beat both presets on their own data
    assert r.result.metrics["avg_iou"] > y3["avg_iou"] + 0.01
    assert r.result.metrics["bpr_iou"] >= y3["bpr_iou"]


def test_design_anchors_leaves_torch_threads_as_it_found_them():
    """The search runs single-threaded on the CPU but restores the process-wide thread count."""
    rng = np.random.default_rng(11)
    wh = rng.uniform(4, 200, size=(300, 2))
    before = torch.get_num_threads()
    seen = []
    real = A._lloyd

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    try:
        torch.set_num_threads(2)
        A._lloyd = spy
        A.design_anchors(wh, 6, seed=0, evolve=20, device="cpu")
        assert seen == [1] and torch.get_num_threads() == 2
        A._lloyd = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
        with pytest.raises(RuntimeError, match="boom"):
            A.design_anchors(wh, 6, seed=0, evolve=20, device="cpu")
        assert torch.get_num_threads() == 2  # restored on error too
    finally:
        A._lloyd = real
        torch.set_num_threads(before)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "cfg", ["cfg/yolov3.cfg", "cfg/yolov3-spp.cfg", "cfg/yolov3-tiny.cfg", "models/yolov3-tiny.cfg"]
)
def test_lenient_anchor_reader_agrees_with_the_model_parser(real_data, cfg):
    # two cfg readers by design (see anchors.parse_darknet_anchors); on every real cfg they must read
    # the same anchors and the same masks
    from cocostat.models import parse_cfg

    lenient = A.parse_darknet_anchors(real_data / cfg)
    strict = parse_cfg(real_data / cfg)
    np.testing.assert_array_equal(lenient.wh, np.asarray(strict.anchors, dtype=np.float64))
    assert [lvl.tolist() for lvl in lenient.levels] == [list(y.mask) for y in strict.yolo_layers]
