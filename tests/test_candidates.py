"""The predictions-folder contract: candidate table round trip, dense layout, bad folders."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.bench_audit import synthetic_candidates
from cocostat.candidates import (
    COLUMNS,
    candidate_order,
    concat_arrays,
    iter_chunks,
    read_predictions,
    to_arrays,
    upgrade_store,
    write_candidates,
    write_manifest,
    write_store,
)
from cocostat.errors import DatasetFormatError


def table(ann_ids=(5, 3), anchors=2, radius=1, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for ann in ann_ids:
        for a in range(anchors):
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    r = {c: 0 for c in COLUMNS}
                    r.update(
                        ann_id=ann,
                        image_id=ann // 2,
                        anchor=a,
                        level=a // 2,
                        dx=dx,
                        dy=dy,
                        valid=True,
                        anchor_w=10 * (a + 1),
                        anchor_h=12 * (a + 1),
                        stride=32,
                        gt_x1=ann,
                        px1=rng.random(),
                        obj=rng.random(),
                        cls_prob=rng.random(),
                    )
                    rows.append(r)
    return pd.DataFrame(rows).sample(frac=1, random_state=seed)  # shuffled, as parts arrive


def test_dense_layout_matches_rows():
    frame = candidate_order(table())
    arr = to_arrays(frame)
    g, n = 2, 2 * 9
    assert arr.pred.shape == (g, n, 4) and arr.obj.shape == (g, n) and arr.gt.shape == (g, 4)
    assert arr.ann_id.tolist() == [3, 5]  # image 1 before image 2
    assert arr.anchor.tolist() == [0] * 9 + [1] * 9
    assert arr.dx.tolist()[:3] == [-1, 0, 1] and arr.dy.tolist()[:3] == [-1, -1, -1]
    np.testing.assert_array_equal(arr.anchor_wh[9], [20, 24])
    for gi, ann in enumerate(arr.ann_id):
        rows = frame[frame.ann_id == ann]
        np.testing.assert_array_equal(arr.obj[gi], rows.obj.to_numpy(np.float32))
        assert arr.gt[gi, 0] == ann


def test_empty_table_gives_shaped_arrays():
    arr = to_arrays(pd.DataFrame({c: pd.Series([], dtype=t) for c, t in COLUMNS.items()}))
    assert arr.pred.shape == (0, 0, 4) and arr.gt.shape == (0, 4) and arr.anchor_wh.shape == (0, 2)


def test_parts_round_trip(tmp_path):
    frame = table(ann_ids=(1, 2, 7, 8))
    first = frame.image_id == 0  # ranks split by image, never inside an annotation
    write_candidates(frame[first], tmp_path / "candidates-rank0.parquet")
    write_candidates(frame[~first], tmp_path / "candidates-rank1.parquet")
    write_manifest({"size": 416}, tmp_path, version=1)  # a version-1 folder still reads
    (tmp_path / "detections-rank0.json").write_text(json.dumps([{"image_id": 1}]))
    (tmp_path / "detections-rank1.json").write_text(json.dumps([{"image_id": 2}]))
    pred = read_predictions(tmp_path)
    assert pred.version == 1
    assert pred.manifest["format"] == "cocostat-predictions" and pred.manifest["size"] == 416
    assert pred.candidates_per_object == 18 and len(pred.candidates) == 4 * 18
    pd.testing.assert_frame_equal(pred.candidates, candidate_order(frame.astype(COLUMNS)))
    assert [d["image_id"] for d in pred.detections()] == [1, 2]


def test_bad_folders(tmp_path):
    with pytest.raises(DatasetFormatError, match="no manifest.json"):
        read_predictions(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(DatasetFormatError, match="invalid JSON"):
        read_predictions(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(DatasetFormatError, match="expected format 'cocostat-predictions'"):
        read_predictions(tmp_path)
    write_manifest({}, tmp_path, version=4)
    with pytest.raises(DatasetFormatError, match=r"format version 4, this cocostat reads versions 1, 2, 3; upgrade"):
        read_predictions(tmp_path)
    write_manifest({}, tmp_path)
    with pytest.raises(DatasetFormatError, match="no candidates/ folder"):
        read_predictions(tmp_path)
    write_manifest({}, tmp_path, version=1)
    with pytest.raises(DatasetFormatError, match="no candidates"):
        read_predictions(tmp_path)
    table().drop(columns=["obj"]).to_parquet(tmp_path / "candidates.parquet")
    with pytest.raises(DatasetFormatError, match="missing column.*obj"):
        read_predictions(tmp_path)
    table().iloc[:-1].to_parquet(tmp_path / "candidates.parquet")
    with pytest.raises(DatasetFormatError, match="same number of candidate rows"):
        read_predictions(tmp_path)


def test_candidate_order_sorts_only_when_needed():
    shuffled = table(ann_ids=(9, 4, 6), seed=3)
    expected = shuffled.sort_values(["image_id", "ann_id", "anchor", "dy", "dx"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(candidate_order(shuffled), expected)
    # an ordered table whose only out-of-order key is the last one is still caught
    swapped = expected.copy()
    swapped.loc[[0, 1], "dx"] = swapped.loc[[1, 0], "dx"].to_numpy()
    assert candidate_order(swapped)["dx"].tolist()[:2] == [-1, 0]
    pd.testing.assert_frame_equal(candidate_order(expected), expected)


def _synthetic(objects=300, seed=1):
    frame, manifest = synthetic_candidates(objects, per_image=5, seed=seed, crowd=0.05)
    return frame, manifest


def test_store_round_trip_and_layout_once(tmp_path):
    frame, manifest = _synthetic()
    dets = [
        {"image_id": 1, "category_id": 3, "bbox": [1.5, 2.0, 3.25, 4.0], "score": 0.5},
        {"image_id": 2, "category_id": 1, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.125},
    ]
    pred = write_store(tmp_path, frame, manifest, dets, max_objects=64)
    assert pred.version == 3 and len(pred.parts) > 2 and pred.num_objects == 300
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["version"] == 3 and len(m["layout"]["anchor"]) == 81 and m["parts"] == len(pred.parts)
    # the candidate values come back bit for bit, gx/gy rebuilt from the centre cells
    pd.testing.assert_frame_equal(pred.candidates, candidate_order(frame.astype(COLUMNS)))
    assert pred.detections() == dets
    assert json.loads((tmp_path / "detections.json").read_text()) == dets
    # one row per object: ids, class and box are stored once, not once per candidate
    import pyarrow.parquet as pq

    part = pq.read_table(pred.parts[0])
    assert part.num_rows == len(
        to_arrays(candidate_order(frame)).select(
            np.flatnonzero(np.isin(to_arrays(candidate_order(frame)).image_id, part.column("image_id").to_numpy()))
        )
    )


def test_chunks_hold_whole_images_and_join_to_the_table(tmp_path):
    frame, manifest = _synthetic(500, seed=2)
    pred = write_store(tmp_path, frame, manifest, max_objects=37)
    whole = to_arrays(candidate_order(frame))
    for size in (1, 50, 120, None):
        blocks = list(iter_chunks(tmp_path, size))
        images = [set(b.image_id.tolist()) for b in blocks]
        assert all(not (a & b) for i, a in enumerate(images) for b in images[i + 1 :])  # no image split
        if size is not None and size > 1:
            assert all(len(b) >= size for b in blocks[:-1])
        joined = concat_arrays(blocks)
        for f in ("ann_id", "gt", "valid", "gx", "gy", "max_cls_idx"):
            np.testing.assert_array_equal(getattr(joined, f), getattr(whole, f))
        np.testing.assert_array_equal(joined.pred, whole.pred)  # NaN in the same places
    assert pred.num_objects == len(whole)


def test_upgrade_v1_folder(tmp_path):
    frame, manifest = _synthetic(200, seed=3)
    v1 = tmp_path / "v1"
    write_candidates(frame, v1 / "candidates.parquet")
    write_manifest(manifest, v1, version=1)
    dets = [{"image_id": 4, "category_id": 2, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.75}]
    (v1 / "detections.json").write_text(json.dumps(dets))
    before = read_predictions(v1)
    out = upgrade_store(v1, tmp_path / "v3", max_objects=50)
    after = read_predictions(out)
    assert after.version == 3 and before.version == 1
    pd.testing.assert_frame_equal(after.candidates, before.candidates)
    assert after.detections() == before.detections() == dets
    upgrade_store(v1)  # in place: the v1 table is replaced by parts
    assert read_predictions(v1).version == 3 and not (v1 / "candidates.parquet").exists()
    with pytest.raises(DatasetFormatError, match="already format version 3"):
        upgrade_store(v1)
