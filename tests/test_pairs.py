"""cocostat.pairs: the chunked pair statistics against a brute-force pure-Python reference.

The reference below walks every image and every pair (i < j) with plain Python floats and the
definitions of the module docstring, written out independently of the numpy code. It is run on
the real COCO subsets in ../shared/data and on hypothesis-generated images (0 or 1 object,
touching, identical and zero-size boxes), over several chunk sizes and every option.
"""

from __future__ import annotations

import itertools
import json
import math
import tracemalloc
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cocostat.boxes import pairwise_center_distance, pairwise_gap, pairwise_ioa, pairwise_iou
from cocostat.data import from_dict, load_coco
from cocostat.errors import CocostatWarning, OptionError
from cocostat.pairs import (
    BY_CATEGORY_TOP,
    DEFAULT_CHUNK_PAIRS,
    overlap,
    pair_indices,
    plot_overlap,
    write_per_image,
)

pytestmark = pytest.mark.filterwarnings("ignore::cocostat.errors.CocostatWarning")

REAL = [("coco-tiny", "val2017"), ("coco-tiny", "train2017"), ("coco128", "train2017")]


# --------------------------------------------------------------------------------------------------
# Brute-force reference
# --------------------------------------------------------------------------------------------------
def reference(
    coco: dict,
    gap=10.0,
    iou=0.6,
    pair_metric="iou",
    center=10.0,
    crowd_pairs=7,
    aspect=4.0,
    size=None,
    exclude_crowd=False,
) -> dict:
    """Every statistic of the report, by a plain loop over images and pairs."""
    images = sorted(coco["images"], key=lambda im: im["id"])
    cat_ids = sorted(c["id"] for c in coco["categories"])
    cls_of = {cid: k for k, cid in enumerate(cat_ids)}
    anns_of = {im["id"]: [] for im in images}
    for a in sorted(coco["annotations"], key=lambda a: a["id"]):
        if exclude_crowd and a.get("iscrowd", 0):
            continue
        anns_of[a["image_id"]].append(a)
    out = {
        "images": 0,
        "objects": 0,
        "pairs": 0,
        "gap": 0,
        "iou": 0,
        "center": 0,
        "gap_images": 0,
        "iou_images": 0,
        "center_images": 0,
        "crowded": 0,
        "elongated": 0,
        "elongated_images": 0,
        "per_image": {},
        "cats": {c: Counter() for c in ("all", "gap", "iou", "center")},
    }
    for im in images:
        anns = anns_of[im["id"]]
        n = len(anns)
        s = size / max(im["width"], im["height"]) if size else None
        boxes = []
        n_elong, max_aspect = 0, math.nan
        for a in anns:
            x, y, w, h = (float(v) for v in a["bbox"])
            ratio = math.inf if w == 0 or h == 0 else max(w / h, h / w)
            max_aspect = ratio if math.isnan(max_aspect) else max(max_aspect, ratio)
            n_elong += ratio >= aspect
            if s is not None:
                x, y, w, h = x * s, y * s, w * s, h * s
            boxes.append((x, y, x + w, y + h, x + 0.5 * w, y + 0.5 * h, cls_of[a["category_id"]]))
        row = {
            "objects": n,
            "pairs": n * (n - 1) // 2,
            "gap_pairs": 0,
            "iou_pairs": 0,
            "center_pairs": 0,
            "elongated": n_elong,
            "max_iou": -math.inf,
            "max_ioa": -math.inf,
            "min_gap": math.inf,
            "min_center": math.inf,
            "max_aspect": max_aspect,
        }
        for i in range(n):
            ax1, ay1, ax2, ay2, acx, acy, ac = boxes[i]
            for j in range(i + 1, n):
                bx1, by1, bx2, by2, bcx, bcy, bc = boxes[j]
                iw = min(ax2, bx2) - max(ax1, bx1)
                ih = min(ay2, by2) - max(ay1, by1)
                inter = max(iw, 0.0) * max(ih, 0.0)
                area_a = (ax2 - ax1) * (ay2 - ay1)
                area_b = (bx2 - bx1) * (by2 - by1)
                union = area_a + area_b - inter
                iou_v = inter / union if union > 0 else 0.0
                small = min(area_a, area_b)
                ioa_v = inter / small if small > 0 else 0.0
                gx, gy = max(-iw, 0.0), max(-ih, 0.0)
                gap_v = math.sqrt(gx * gx + gy * gy)
                # centres as cocostat.boxes defines them, (x1 + x2) / 2: twice the offset, halved
                dx, dy = (ax1 + ax2) - (bx1 + bx2), (ay1 + ay2) - (by1 + by2)
                cd = 0.5 * math.sqrt(dx * dx + dy * dy)
                metric_v = iou_v if pair_metric == "iou" else ioa_v
                key = (min(ac, bc), max(ac, bc))
                out["cats"]["all"][key] += 1
                for crit, hit in (("gap", gap_v < gap), ("iou", metric_v > iou), ("center", cd < center)):
                    if hit:
                        row[f"{crit}_pairs"] += 1
                        out["cats"][crit][key] += 1
                row["max_iou"] = max(row["max_iou"], iou_v)
                row["max_ioa"] = max(row["max_ioa"], ioa_v)
                row["min_gap"] = min(row["min_gap"], gap_v)
                row["min_center"] = min(row["min_center"], cd)
        if n < 2:
            for k in ("max_iou", "max_ioa", "min_gap", "min_center"):
                row[k] = math.nan
        row["crowded"] = row["center_pairs"] >= crowd_pairs
        out["per_image"][im["id"]] = row
        out["images"] += n > 0
        out["objects"] += n
        out["pairs"] += row["pairs"]
        for crit in ("gap", "iou", "center"):
            out[crit] += row[f"{crit}_pairs"]
            out[f"{crit}_images"] += row[f"{crit}_pairs"] > 0
        out["crowded"] += row["crowded"]
        out["elongated"] += n_elong
        out["elongated_images"] += n_elong > 0
    return out


def assert_matches(report, ref, pair_metric="iou"):
    """Every number of ``report`` equals the reference (exactly: same float operations)."""
    assert (report.images, report.objects, report.pairs) == (ref["images"], ref["objects"], ref["pairs"])
    for crit in ("gap", "iou", "center"):
        assert getattr(report, f"{crit}_pairs") == ref[crit], crit
        assert getattr(report, f"{crit}_images") == ref[f"{crit}_images"], crit
    assert report.crowded_images == ref["crowded"]
    assert report.elongated_objects == ref["elongated"]
    assert report.elongated_images == ref["elongated_images"]
    pi = report.per_image.set_index("image_id")
    assert list(pi.index) == sorted(ref["per_image"])
    cols = [
        "objects",
        "pairs",
        "gap_pairs",
        "iou_pairs",
        "center_pairs",
        "crowded",
        "elongated",
        "max_iou",
        "min_gap",
        "min_center",
        "max_aspect",
    ] + (["max_ioa"] if pair_metric == "ioa" else [])
    if not ref["per_image"]:
        assert pi.empty
        return
    expected = pd.DataFrame.from_dict(ref["per_image"], orient="index")[cols]
    got = pi[cols]
    for c in cols:
        if c == "min_center":  # torch's vectorised float64 arithmetic may differ from math.sqrt by an ulp
            np.testing.assert_allclose(
                got[c].to_numpy(), expected[c].to_numpy(dtype=float), rtol=1e-15, atol=0, err_msg=c
            )
            continue
        np.testing.assert_array_equal(got[c].to_numpy(), expected[c].to_numpy(dtype=got[c].dtype), err_msg=c)


def _top(counter: Counter, k: int) -> list[tuple[tuple[int, int], int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


# --------------------------------------------------------------------------------------------------
# Pair generation
# --------------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(0, 9), max_size=8), chunk=st.integers(1, 12))
def test_pair_indices_enumerates_every_pair_once(counts, chunk):
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    expected = [(k, offsets[k] + i, offsets[k] + j) for k, n in enumerate(counts) for j in range(n) for i in range(j)]
    total = len(expected)
    got = []
    for lo in range(0, total, chunk):
        image, first, second, seg_img, seg_start = pair_indices(offsets, lo, min(lo + chunk, total))
        got += list(zip(image.tolist(), first.tolist(), second.tolist()))
        # the segments are the runs of one image, in order
        runs = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
        np.testing.assert_array_equal(seg_start, runs)
        np.testing.assert_array_equal(seg_img, image[runs])
    assert got == expected


def test_pair_indices_large_image_numbers_are_exact():
    # an image of 200,000 boxes: pair numbers near 2e10, where a float sqrt alone is off by one
    n = 200_000
    offsets = np.array([0, 5, 5 + n], dtype=np.int64)
    total = 10 + n * (n - 1) // 2
    for lo in (0, 9, 10, 11, total // 2, total - 3):
        hi = min(lo + 3, total)
        image, first, second, _, _ = pair_indices(offsets, lo, hi)
        for t, (k, a, b) in enumerate(zip(image, first, second), start=lo):
            if t < 10:
                j = int((1 + math.isqrt(1 + 8 * t)) // 2)
                assert (k, a, b) == (0, t - j * (j - 1) // 2, j)
            else:
                u = t - 10
                j = (1 + math.isqrt(1 + 8 * u)) // 2
                assert (k, a - 5, b - 5) == (1, u - j * (j - 1) // 2, j)
                assert 0 <= a - 5 < b - 5 < n


# --------------------------------------------------------------------------------------------------
# Real data against the reference
# --------------------------------------------------------------------------------------------------
OPTION_SETS = [
    {},
    {"pair_metric": "ioa", "size": 640, "exclude_crowd": True},
    {"gap": 0.0, "iou": 0.3, "center": 50.0, "crowd_pairs": 2, "aspect": 2.0, "size": 320},
    {"gap": 25.0, "iou": 0.0, "pair_metric": "ioa", "center": 0.0, "crowd_pairs": 1, "aspect": 1.0},
]


@pytest.mark.realdata
@pytest.mark.parametrize("folder,split", REAL)
@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_real_data_matches_reference(real_data, folder, split, opts):
    path = real_data / folder / "annotations" / f"instances_{split}.json"
    coco = json.loads(path.read_text())
    ds = load_coco(path)
    ref = reference(coco, **opts)
    rep = overlap(ds, by_category=True, examples=4, chunk_pairs=997, **opts)
    assert_matches(rep, ref, opts.get("pair_metric", "iou"))
    # and the same numbers whatever the chunking
    whole = overlap(ds, chunk_pairs=10**9, **opts)
    assert whole.to_dict() == {k: v for k, v in rep.to_dict().items() if k not in ("by_category", "examples")}
    # by category: the top pairs and their counts
    names = ds.categories["name"].tolist()
    for crit in ("gap", "iou", "center"):
        got = rep.by_category[rep.by_category["criterion"] == crit]
        top = _top(ref["cats"][crit], BY_CATEGORY_TOP)
        assert list(zip(got["category_a"], got["category_b"], got["pairs"])) == [
            (names[a], names[b], c) for (a, b), c in top
        ]
        assert list(got["all_pairs"]) == [ref["cats"]["all"][k] for k, _ in top]
    # examples: most pairs first, then the most extreme value, then the image id
    per = ref["per_image"]
    metric = opts.get("pair_metric", "iou")
    for crit, count_key, value_key, sign in (
        ("gap", "gap_pairs", "min_gap", 1),
        ("iou", "iou_pairs", f"max_{metric}", -1),
        ("center", "center_pairs", "min_center", 1),
        ("elongated", "elongated", "max_aspect", -1),
    ):
        want = sorted(
            (iid for iid, r in per.items() if r[count_key] > 0),
            key=lambda iid: (-per[iid][count_key], sign * per[iid][value_key], iid),
        )[:4]
        got = rep.examples[rep.examples["criterion"] == crit]
        assert list(got["image_id"]) == want, crit
        assert list(got["count"]) == [per[i][count_key] for i in want]


@pytest.mark.realdata
def test_real_val2017_known_numbers(real_data):
    coco = json.loads((real_data / "coco-tiny/annotations/instances_val2017.json").read_text())
    ds = load_coco(real_data / "coco-tiny/annotations/instances_val2017.json")
    rep = overlap(ds)
    n_per_image = Counter(a["image_id"] for a in coco["annotations"])
    assert rep.objects == 815 and rep.images == len(n_per_image)
    assert rep.pairs == sum(n * (n - 1) // 2 for n in n_per_image.values())
    no_crowd = overlap(ds, exclude_crowd=True)
    assert no_crowd.objects == 815 - 11
    assert no_crowd.pairs < rep.pairs
    # shares are the counts over their denominators
    d = rep.to_dict()
    assert d["gap"]["pair_share"] == pytest.approx(rep.gap_pairs / rep.pairs)
    assert d["elongated"]["object_share"] == pytest.approx(rep.elongated_objects / 815)
    assert d["center"]["image_share"] == pytest.approx(rep.center_images / rep.images)


# --------------------------------------------------------------------------------------------------
# Generated images against the reference
# --------------------------------------------------------------------------------------------------
@st.composite
def coco_dicts(draw):
    """A few images of 0..7 boxes on a coarse grid, so touching, identical, nested and zero-size
    boxes are common; two categories; some iscrowd."""
    n_img = draw(st.integers(0, 4))
    images, anns = [], []
    coord = st.integers(0, 12).map(float) | st.sampled_from([0.5, 2.25, 7.75])
    side = st.integers(0, 8).map(float) | st.sampled_from([0.5, 1.5])
    for k in range(n_img):
        images.append(
            {
                "id": 10 + k,
                "width": draw(st.integers(1, 40)),
                "height": draw(st.integers(1, 40)),
                "file_name": f"{k}.jpg",
            }
        )
        boxes = draw(st.lists(st.tuples(coord, coord, side, side), max_size=7))
        if boxes and draw(st.booleans()):  # an identical copy of one box
            boxes.append(boxes[draw(st.integers(0, len(boxes) - 1))])
        for b in boxes:
            anns.append(
                {
                    "id": 1000 - len(anns),
                    "image_id": 10 + k,
                    "category_id": draw(st.sampled_from([3, 7])),
                    "bbox": list(b),
                    "iscrowd": int(draw(st.integers(0, 9)) == 0),
                }
            )
    return {"images": images, "annotations": anns, "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    coco=coco_dicts(),
    chunk=st.integers(1, 9),
    opts=st.fixed_dictionaries(
        {
            "gap": st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0]),
            "iou": st.sampled_from([0.0, 0.25, 0.5, 0.6, 1.0]),
            "pair_metric": st.sampled_from(["iou", "ioa"]),
            "center": st.sampled_from([0.0, 0.5, 2.0, 10.0]),
            "crowd_pairs": st.integers(1, 4),
            "aspect": st.sampled_from([1.0, 2.0, 4.0]),
            "size": st.sampled_from([None, 7, 64.0, 640]),
            "exclude_crowd": st.booleans(),
        }
    ),
)
def test_generated_images_match_reference(coco, chunk, opts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        ds = from_dict(coco)
    rep = overlap(ds, chunk_pairs=chunk, by_category=True, examples=2, **opts)
    assert_matches(rep, reference(coco, **opts), opts["pair_metric"])
    # the histograms count every pair (or object) once
    for name, hist in rep.histograms.items():
        assert hist.counts.sum() + hist.zeros == hist.total
        assert hist.total == (rep.objects if name == "aspect" else rep.pairs)


def _ds(boxes_per_image, sizes=None):
    images = [
        {
            "id": k + 1,
            "width": (sizes or {}).get(k, (100, 100))[0],
            "height": (sizes or {}).get(k, (100, 100))[1],
            "file_name": f"im{k}.jpg",
        }
        for k in range(len(boxes_per_image))
    ]
    anns = [
        {"id": len(images) * 100 + i + 100 * k, "image_id": k + 1, "category_id": 1, "bbox": b}
        for k, boxes in enumerate(boxes_per_image)
        for i, b in enumerate(boxes)
    ]
    return from_dict({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]})


def test_special_pairs():
    ds = _ds(
        [
            [[0, 0, 10, 10], [0, 0, 10, 10]],  # identical: IoU 1, gap 0, centre 0
            [[0, 0, 10, 10], [10, 0, 10, 10]],  # touching: IoU 0, gap 0, centre 10 (not < 10)
            [[0, 0, 0, 5], [0, 0, 0, 5]],  # identical zero-width boxes: IoU 0 (0/0), gap 0, centre 0
            [[5, 5, 20, 20]],  # one object: no pair
            [],  # no object
        ]
    )
    rep = overlap(ds)
    pi = rep.per_image
    assert rep.images == 4 and rep.objects == 7 and rep.pairs == 3
    assert list(pi["pairs"]) == [1, 1, 1, 0, 0]
    assert list(pi["max_iou"][:3]) == [1.0, 0.0, 0.0] and pi["max_iou"][3:].isna().all()
    assert list(pi["min_gap"][:3]) == [0.0, 0.0, 0.0]
    assert list(pi["min_center"][:3]) == [0.0, 10.0, 0.0]
    assert (rep.gap_pairs, rep.iou_pairs, rep.center_pairs) == (3, 1, 2)
    assert (rep.gap_images, rep.iou_images, rep.center_images) == (3, 1, 2)
    # the zero-width boxes are elongated (aspect inf); the 15 x 15 box is not
    assert rep.elongated_objects == 2 and rep.elongated_images == 1
    assert np.isinf(pi["max_aspect"][2]) and pi["max_aspect"][3] == 1.0 and np.isnan(pi["max_aspect"][4])
    assert rep.crowded_images == 0
    assert overlap(ds, crowd_pairs=1).crowded_images == 2
    # IoA: a box inside another counts under ioa, not under iou
    nested = _ds([[[0, 0, 10, 10], [2, 2, 4, 4]]])
    assert overlap(nested).iou_pairs == 0
    ioa = overlap(nested, pair_metric="ioa")
    assert ioa.iou_pairs == 1 and ioa.per_image["max_ioa"][0] == 1.0
    assert ioa.per_image["max_iou"][0] == pytest.approx(0.16)


def test_size_scales_distances_not_ratios():
    # a 1000 x 500 image letterboxed to 100: scale 0.1; a 1000 x 2000 image to 100: scale 0.05
    boxes = [[0, 0, 40, 40], [60, 0, 40, 200]]  # gap 20 px, aspect 5
    ds = _ds([boxes, boxes], sizes={0: (1000, 500), 1: (1000, 2000)})
    rep = overlap(ds, gap=1.5, size=100)
    assert list(rep.per_image["min_gap"]) == pytest.approx([2.0, 1.0])
    assert list(rep.per_image["gap_pairs"]) == [0, 1]
    assert rep.elongated_objects == 2  # the aspect ratio does not change with scale
    assert list(overlap(ds, gap=1.5).per_image["min_gap"]) == [20.0, 20.0]
    assert overlap(ds, size=100).per_image["max_iou"].tolist() == overlap(ds).per_image["max_iou"].tolist()


def test_exclude_crowd_drops_crowd_only_images():
    coco = {
        "images": [{"id": 1, "width": 50, "height": 50}, {"id": 2, "width": 50, "height": 50}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1},
        ],
    }
    ds = from_dict(coco)
    assert (overlap(ds).images, overlap(ds).objects, overlap(ds).pairs) == (2, 3, 1)
    rep = overlap(ds, exclude_crowd=True)
    assert (rep.images, rep.objects, rep.pairs, rep.gap_pairs) == (1, 1, 0, 0)
    assert rep.settings.exclude_crowd and rep.to_dict()["exclude_crowd"] is True


def test_empty_datasets_give_zeros():
    for coco in (
        {"images": [], "annotations": [], "categories": []},
        {"images": [{"id": 1, "width": 5, "height": 5}], "annotations": [], "categories": [{"id": 1, "name": "a"}]},
    ):
        rep = overlap(from_dict(coco), by_category=True, examples=3)
        d = rep.to_dict()
        assert (d["images"], d["objects"], d["pairs"]) == (0, 0, 0)
        assert d["gap"]["pairs"] == 0 and math.isnan(d["gap"]["pair_share"])
        assert len(rep.per_image) == len(coco["images"]) and len(rep.examples) == 0
        assert len(rep.by_category) == 0
        assert len(rep.to_frame()) == 5 and rep.sections()


# --------------------------------------------------------------------------------------------------
# Streams: accumulators over two ranges, merged, are the one-pass accumulators
# --------------------------------------------------------------------------------------------------
def _accumulators(ds, settings, by_category=True):
    from cocostat.pairs import _CategoryPairs, _CriterionCounts, _Extremes, _PairHistograms

    accs = [
        _CriterionCounts.empty(ds.num_images),
        _Extremes.empty(ds.num_images, settings.pair_metric == "ioa"),
        _PairHistograms.empty(800.0),
    ]
    return accs + ([_CategoryPairs.empty(ds.class_idx, ds.num_classes)] if by_category else [])


def _fold(accs, chunks):
    for chunk in chunks:
        for acc in accs:
            acc.update(chunk)
    return accs


def _state(accs) -> list:
    """Every array and count the accumulators hold (what merge must combine)."""
    counts, extremes, hists, *cats = accs
    out = [counts.counts[c] for c in ("gap", "iou", "center")]
    out += [extremes.max_iou, extremes.max_ioa, extremes.min_gap, extremes.min_center]
    out += [hists.metric, hists.gap, hists.center, dict(hists.zeros)]
    return out + [cat.counts for cat in cats]


@pytest.mark.realdata
@pytest.mark.parametrize("split", ["images", "mid-image"])
@pytest.mark.parametrize("pair_metric", ["iou", "ioa"])
def test_accumulators_merge_two_ranges_into_the_one_pass_answer(real_data, split, pair_metric):
    from cocostat.pairs import OverlapSettings, pair_chunks

    ds = load_coco(real_data / "coco-tiny/annotations/instances_train2017.json")
    settings = OverlapSettings(pair_metric=pair_metric, gap=12.0, iou=0.2, center=40.0)
    xyxy = ds.boxes_xyxy()
    offsets = ds.offsets.astype(np.int64)
    whole = _fold(_accumulators(ds, settings), pair_chunks(xyxy, offsets, settings, 10**9))
    if split == "images":  # images 0..k-1 and k..I-1, each range chunked on its own
        k = ds.num_images // 3
        first = pair_chunks(xyxy, offsets[: k + 1], settings, 997)
        second = pair_chunks(xyxy, np.maximum(offsets, offsets[k]), settings, 997)  # images < k emptied
        a, b = _fold(_accumulators(ds, settings), first), _fold(_accumulators(ds, settings), second)
    else:  # the pair chunks alternate between two accumulators, so many images are split between them
        chunks = list(pair_chunks(xyxy, offsets, settings, 61))
        assert any(len(set(c.seg_images[-1:]) & set(d.seg_images[:1])) for c, d in itertools.pairwise(chunks))
        a, b = _fold(_accumulators(ds, settings), chunks[0::2]), _fold(_accumulators(ds, settings), chunks[1::2])
    for acc, other in zip(a, b):
        acc.merge(other)
    for got, want in zip(_state(a), _state(whole)):
        if isinstance(want, dict):
            assert got == want
        elif want is not None:
            np.testing.assert_array_equal(got, want)
    # the one-pass state is the report's (itself checked against the brute-force loop above)
    rep = overlap(ds, pair_metric=pair_metric, gap=12.0, iou=0.2, center=40.0)
    assert [int(c.sum()) for c in _state(whole)[:3]] == [rep.gap_pairs, rep.iou_pairs, rep.center_pairs]
    assert sum(_state(whole)[-1]) == rep.pairs > 1000


# --------------------------------------------------------------------------------------------------
# One image with thousands of boxes: chunked, bounded memory, same numbers as the box kernels
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crowded_image():
    rng = np.random.default_rng(0)
    n = 1500  # 1,124,250 pairs
    xy = rng.uniform(0, 300, (n, 2)).round(1)
    wh = rng.uniform(0, 40, (n, 2)).round(1)
    coco = {
        "images": [{"id": 7, "width": 340, "height": 340}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": i + 1, "image_id": 7, "category_id": 1 + i % 2, "bbox": [*xy[i].tolist(), *wh[i].tolist()]}
            for i in range(n)
        ],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CocostatWarning)
        return from_dict(coco)


def test_crowded_image_is_chunked_with_bounded_memory(crowded_image):
    ds = crowded_image
    assert DEFAULT_CHUNK_PAIRS < 1_124_250  # the default chunking splits this image
    # tracemalloc sees numpy's buffers, which scale with chunk_pairs; torch's temporaries (invisible
    # to it) are bounded by pairs._KERNEL_PAIRS whatever the chunk size
    overlap(ds, chunk_pairs=20_000)  # warm-up: torch's lazy first-call imports are not the statistics'
    tracemalloc.start()
    small = overlap(ds, chunk_pairs=20_000, pair_metric="ioa")
    peak_small = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tracemalloc.start()
    whole = overlap(ds, chunk_pairs=2_000_000, pair_metric="ioa")
    peak_whole = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert small.to_dict() == whole.to_dict()
    pd.testing.assert_frame_equal(small.per_image, whole.per_image)
    # whole: ~85 MB (the kernel's own temporaries now live in 32k-pair pieces, so less than before)
    assert peak_small < 8 * 2**20 < 50 * 2**20 < peak_whole  # 20k pairs at a time stay small
    # the counts agree with cocostat.boxes' dense pairwise kernels on the upper triangle
    xyxy = ds.boxes_xyxy()
    iu, ju = np.triu_indices(len(xyxy), 1)
    gap = pairwise_gap(xyxy, xyxy)[iu, ju]
    ioa = pairwise_ioa(xyxy, xyxy)[iu, ju]
    iou = pairwise_iou(xyxy, xyxy)[iu, ju]
    cd = pairwise_center_distance(xyxy, xyxy)[iu, ju]
    assert small.pairs == iu.size
    assert small.gap_pairs == pytest.approx(int((gap < 10).sum()), abs=3)  # last-ulp differences only
    assert small.iou_pairs == pytest.approx(int((ioa > 0.6).sum()), abs=3)
    assert small.center_pairs == pytest.approx(int((cd < 10).sum()), abs=3)
    row = small.per_image.iloc[0]
    assert row["max_iou"] == pytest.approx(iou.max()) and row["min_gap"] == pytest.approx(gap.min())
    assert row["min_center"] == pytest.approx(cd.min())


# --------------------------------------------------------------------------------------------------
# Report, files, plots, options
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_report():
    from cocostat.data import load_dataset

    return overlap(load_dataset("sample"), by_category=True, examples=3)


def test_report_keys_and_frames(sample_report):
    d = sample_report.to_dict()
    assert {"images", "objects", "pairs", "gap", "iou", "center", "crowded", "elongated"} <= set(d)
    assert set(d["gap"]) == {"threshold", "pairs", "pair_share", "images", "image_share"}
    assert set(d["iou"]) == {"threshold", "metric", "pairs", "pair_share", "images", "image_share"}
    assert set(d["center"]) == {"threshold", "pairs", "pair_share", "images", "image_share"}
    assert {"min_pairs", "images"} <= set(d["crowded"])
    assert {"threshold", "objects", "images"} <= set(d["elongated"])
    assert all(isinstance(d[k], int) for k in ("images", "objects", "pairs"))
    assert (d["images"], d["objects"]) == (126, 939)
    assert set(d["by_category"]) == {"gap", "iou", "center"}
    assert set(d["examples"]) == {"gap", "iou", "center", "elongated"}
    assert len(d["examples"]["gap"]) == 3
    frame = sample_report.to_frame()
    assert list(frame["criterion"]) == ["gap", "iou", "center", "crowded", "elongated"]
    assert frame.loc[0, "pairs"] == d["gap"]["pairs"] and frame.loc[4, "objects"] == d["elongated"]["objects"]
    titles = [t for t, _ in sample_report.sections()]
    assert any("category pairs" in t for t in titles) and any("extreme" in t for t in titles)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_per_image(sample_report, tmp_path, suffix):
    path = write_per_image(sample_report, tmp_path / f"per{suffix}")
    back = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert len(back) == 128 and list(back.columns) == list(sample_report.per_image.columns)
    assert back["gap_pairs"].sum() == sample_report.gap_pairs
    assert [p.name for p in tmp_path.iterdir()] == [f"per{suffix}"]  # no temporary file left
    with pytest.raises(OptionError, match=r"\.csv, \.parquet or \.pq, got"):
        write_per_image(sample_report, tmp_path / "per.xlsx")


def test_plots_are_png_files(sample_report, tmp_path):
    paths = plot_overlap(sample_report, tmp_path / "plots")
    assert [p.name for p in paths] == ["overlap_iou.png", "overlap_gap.png", "overlap_center.png", "overlap_aspect.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] >= 600 and im.size[1] >= 400
    empty = overlap(from_dict({"images": [], "annotations": [], "categories": []}), pair_metric="ioa")
    assert plot_overlap(empty, tmp_path / "empty")[0].name == "overlap_ioa.png"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"gap": -1}, r"^gap must be a finite number >= 0 \(pixels\), got -1"),
        ({"iou": 1.5}, r"^iou must be a finite number in \[0, 1\], got 1.5"),
        ({"iou": float("nan")}, r"^iou must be a finite number"),
        ({"center": float("inf")}, r"^center must be a finite number"),
        ({"aspect": 0.5}, r"^aspect must be a finite number >= 1, got 0.5"),
        ({"pair_metric": "giou"}, r"^pair_metric must be one of iou, ioa, got 'giou'"),
        ({"crowd_pairs": 0}, r"^crowd_pairs must be an integer >= 1, got 0"),
        ({"size": 0}, r"^size must be a finite number > 0"),
        ({"examples": -2}, r"^examples must be an integer >= 0, got -2"),
        ({"chunk_pairs": 0}, r"chunk_pairs must be an integer >= 1, got 0"),
    ],
)
def test_bad_options(kwargs, message):
    ds = _ds([[[0, 0, 1, 1]]])
    with pytest.raises(OptionError, match=message):
        overlap(ds, **kwargs)
