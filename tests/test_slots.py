"""Slot parts (predictions format 3): each (image, anchor, cell) prediction stored once.

The premise is checked on the real yolov3-tiny predictions with a plain loop: every candidate of
one slot carries the same bits. Then: a slot part reads back bit for bit as the dense part of the
same arrays; anything a slot part cannot hold falls back to a dense part; broken parts fail in one
line; version-2 folders read as they are and convert part by part.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_audit import synthetic_candidates
from cocostat.candidates import (
    _PER_CANDIDATE,
    _PER_OBJECT,
    ANALYSIS_COLUMNS,
    CANDIDATES_DIR,
    CandidateArrays,
    arrays_to_arrow,
    concat_arrays,
    is_slot_part,
    layout_of,
    read_part,
    read_predictions,
    to_arrays,
    upgrade_store,
    write_manifest,
    write_part,
    write_store,
)
from cocostat.errors import DatasetFormatError


def assert_same(a: CandidateArrays, b: CandidateArrays, fields=_PER_OBJECT + _PER_CANDIDATE):
    for f in fields:
        x, y = getattr(a, f), getattr(b, f)
        assert x.shape == y.shape and x.dtype == y.dtype, f
        if x.dtype.kind == "f":
            assert np.array_equal(x.view(np.uint8), y.view(np.uint8)) or np.array_equal(x, y, equal_nan=True), f
        else:
            np.testing.assert_array_equal(x, y, err_msg=f)


def _one_block(folder) -> tuple[CandidateArrays, object]:
    pred = read_predictions(folder)
    return next(iter(pred.iter_chunks(None))), pred.layout


@pytest.fixture(scope="module")
def tiny(tiny_predictions):
    _, out = tiny_predictions
    block, layout = _one_block(out)
    return out, block, layout


def test_one_prediction_per_slot_in_the_real_predictions(tiny):
    """A loop over every valid candidate of the real yolov3-tiny predictions: candidates of one
    (image, anchor, cell) agree bit for bit, and the part holds exactly one value per slot and one
    class probability per (slot, class) of the objects around it."""
    out, a, _ = tiny
    slots, entries = {}, {}
    g, n = a.valid.shape
    for i in range(g):
        for j in range(n):
            if not a.valid[i, j]:
                continue
            key = (int(a.image_id[i]), int(a.anchor[j]), int(a.gx[i, j]), int(a.gy[i, j]))
            value = (
                a.pred[i, j].tobytes(),
                a.obj[i, j].tobytes(),
                int(a.max_cls_idx[i, j]),
                a.max_cls_prob[i, j].tobytes(),
            )
            assert slots.setdefault(key, value) == value
            ekey = (*key, int(a.class_idx[i]))
            assert entries.setdefault(ekey, a.cls_prob[i, j].tobytes()) == a.cls_prob[i, j].tobytes()
    part = pq.read_table(sorted((out / CANDIDATES_DIR).glob("*.parquet"))[0])
    assert is_slot_part(part)
    assert len(part.column("obj").combine_chunks().flatten()) == len(slots) < int(a.valid.sum())
    assert len(part.column("pred").combine_chunks().flatten()) == 4 * len(slots)
    assert len(part.column("cls_prob").combine_chunks().flatten()) == len(entries)
    # a slot's highest class probability is stored only where no object of that class is around it
    stored_max = len(part.column("max_cls_prob").combine_chunks().flatten())
    said_by_a_class = {k for k, v in slots.items() if (*k, v[2]) in entries}
    assert stored_max == len(slots) - len(said_by_a_class)


def test_slot_part_reads_as_the_dense_part_of_the_same_arrays(tiny, tmp_path):
    _, a, layout = tiny
    write_part(a, layout, tmp_path / "slots.parquet")
    write_part(a, layout, tmp_path / "dense.parquet", slots=False)  # the same parquet options
    assert is_slot_part(pq.read_table(tmp_path / "slots.parquet"))
    assert not is_slot_part(pq.read_table(tmp_path / "dense.parquet"))
    slots, dense = read_part(tmp_path / "slots.parquet", layout), read_part(tmp_path / "dense.parquet", layout)
    assert_same(slots, a)
    assert_same(slots, dense)
    # the analyses' columns alone: the same values, the class arg-max columns left out
    some = read_part(tmp_path / "slots.parquet", layout, ANALYSIS_COLUMNS)
    assert some.max_cls_prob is None and some.max_cls_idx is None
    assert_same(some, a, (*_PER_OBJECT, "gx", "gy", *ANALYSIS_COLUMNS))
    # the highest class probability alone (it needs the arg-max column inside a slot part)
    only_max = read_part(tmp_path / "slots.parquet", layout, ["max_cls_prob"])
    assert_same(only_max, a, ("max_cls_prob",))
    assert (tmp_path / "slots.parquet").stat().st_size < 0.85 * (tmp_path / "dense.parquet").stat().st_size


def test_synthetic_shared_slots_round_trip_through_a_store(tmp_path):
    frame, manifest = synthetic_candidates(600, per_image=6, seed=11, crowd=0.05, shared_slots=True)
    pred = write_store(tmp_path, frame, manifest, max_objects=150)
    assert len(pred.parts) >= 4 and all(is_slot_part(pq.read_table(p)) for p in pred.parts)
    whole = to_arrays(frame)
    got = next(iter(pred.iter_chunks(10**9)))
    assert_same(got, whole)
    # both ways of storing a slot's highest class probability occur in this data
    part = pq.read_table(pred.parts[0])
    n_max = len(part.column("max_cls_prob").combine_chunks().flatten())
    assert 0 < n_max < len(part.column("obj").combine_chunks().flatten())


def _shared_block(seed=3):
    frame, manifest = synthetic_candidates(200, per_image=8, seed=seed, shared_slots=True)
    a = to_arrays(frame)
    return a, layout_of(a, manifest)


def _first_shared(a: CandidateArrays) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two (object, candidate) positions of one slot (same image, anchor and cell), by a loop."""
    seen = {}
    for i in range(len(a)):
        for j in range(a.valid.shape[1]):
            if a.valid[i, j]:
                key = (int(a.image_id[i]), int(a.anchor[j]), int(a.gx[i, j]), int(a.gy[i, j]))
                if key in seen:
                    return seen[key], (i, j)
                seen[key] = (i, j)
    raise AssertionError("no shared slot")


def _copy(a: CandidateArrays) -> CandidateArrays:
    return replace(a, **{f: getattr(a, f).copy() for f in _PER_OBJECT + _PER_CANDIDATE})


def _disagree(a):
    (_, _), (i, j) = _first_shared(a)
    a.obj[i, j] = np.float32(0.123)


def _value_off_grid(a):
    i, j = np.argwhere(~a.valid)[0]
    a.obj[i, j] = np.float32(0.5)


def _negative_class(a):
    a.class_idx[0] = -1


def _max_not_its_class(a):
    (i0, j0), (i1, j1) = _first_shared(a)
    cls = a.class_idx[i0]
    for i, j in ((i0, j0), (i1, j1)):  # the slot's highest class is its object's, at another value
        a.max_cls_idx[i, j] = cls
        a.max_cls_prob[i, j] = np.float32(0.999)
        a.cls_prob[i, j] = np.float32(0.25) if a.class_idx[i] == cls else a.cls_prob[i, j]


@pytest.mark.parametrize("spoil", [_disagree, _value_off_grid, _negative_class, _max_not_its_class])
def test_what_a_slot_part_cannot_hold_is_written_dense_and_reads_back(spoil, tmp_path):
    a, layout = _shared_block()
    assert is_slot_part(arrays_to_arrow(a, layout))
    a = _copy(a)
    spoil(a)
    table = arrays_to_arrow(a, layout)
    assert not is_slot_part(table)
    write_part(a, layout, tmp_path / "p.parquet")
    assert_same(read_part(tmp_path / "p.parquet", layout), a)


def test_a_broken_slot_part_fails_in_one_line(tmp_path):
    a, layout = _shared_block()
    table = arrays_to_arrow(a, layout)
    obj = table.column("obj").combine_chunks()
    offsets = obj.offsets.to_numpy().copy()
    offsets[1:] -= 1  # one value fewer on the first row (rows after it keep their lengths)
    values = obj.flatten()[1:]
    broken = table.set_column(
        table.column_names.index("obj"),
        table.schema.field("obj"),
        pa.ListArray.from_arrays(pa.array(offsets), values, type=obj.type),
    )
    pq.write_table(broken, tmp_path / "p.parquet")
    with pytest.raises(DatasetFormatError, match=r"p.parquet: column obj must hold \d+ values, got \d+") as err:
        read_part(tmp_path / "p.parquet", layout)
    assert "\n" not in str(err.value)


def _as_version_2(store, folder):
    """A version-2 folder of the same content: dense parts, manifest version 2."""
    shutil.copytree(store, folder)
    pred = read_predictions(folder)
    for p in pred.parts:
        write_part(read_part(p, pred.layout), pred.layout, p, slots=False)
    write_manifest(pred.manifest, folder, version=2)
    return folder


def test_version_2_folder_reads_and_upgrades_part_by_part(tiny, tmp_path):
    out, a, _ = tiny
    v2 = _as_version_2(out, tmp_path / "v2")
    before = read_predictions(v2)
    assert before.version == 2 and not any(is_slot_part(pq.read_table(p)) for p in before.parts)
    assert_same(next(iter(before.iter_chunks(None))), a)
    # into another folder: slot parts, detections copied, the figures' inputs unchanged
    new = read_predictions(upgrade_store(v2, tmp_path / "v3"))
    assert new.version == 3 and all(is_slot_part(pq.read_table(p)) for p in new.parts)
    assert_same(next(iter(new.iter_chunks(None))), a)
    assert json.loads((tmp_path / "v3" / "detections.json").read_text()) == json.loads(
        (v2 / "detections.json").read_text()
    )
    np.testing.assert_array_equal(new.detection_columns()["score"], before.detection_columns()["score"])
    size = {f: sum(p.stat().st_size for p in (f / CANDIDATES_DIR).iterdir()) for f in (v2, tmp_path / "v3")}
    assert size[tmp_path / "v3"] < 0.85 * size[v2]
    # in place
    upgrade_store(v2)
    assert read_predictions(v2).version == 3
    assert_same(next(iter(read_predictions(v2).iter_chunks(None))), a)
    with pytest.raises(DatasetFormatError, match="already format version 3"):
        upgrade_store(v2)


def test_a_folder_of_both_kinds_of_part_reads(tmp_path):
    """What an interrupted in-place conversion (or a version-2 run resumed by this version) leaves."""
    frame, manifest = synthetic_candidates(400, per_image=6, seed=5, shared_slots=True)
    store = write_store(tmp_path / "s", frame, manifest, max_objects=100)
    write_part(read_part(store.parts[0], store.layout), store.layout, store.parts[0], slots=False)
    kinds = [is_slot_part(pq.read_table(p)) for p in store.parts]
    assert kinds[0] is False and all(kinds[1:])
    assert_same(concat_arrays(list(read_predictions(tmp_path / "s").iter_chunks(None))), to_arrays(frame))


def test_upgrade_into_the_same_folder_spelt_another_way_is_in_place(tiny, tmp_path):
    out, a, _ = tiny
    v2 = _as_version_2(out, tmp_path / "v2")
    link = tmp_path / "link"
    link.symlink_to(v2)
    upgrade_store(v2, link)  # the same folder through a symlink: converted in place, nothing lost
    assert read_predictions(v2).version == 3
    assert_same(next(iter(read_predictions(v2).iter_chunks(None))), a)
    assert json.loads((v2 / "detections.json").read_text())


def test_an_interrupted_upgrade_into_another_store_leaves_no_store_there(tiny, tmp_path, monkeypatch):
    import cocostat.candidates as C

    out, _, _ = tiny
    v2 = _as_version_2(out, tmp_path / "v2")
    frame, manifest = synthetic_candidates(90, per_image=5, seed=2, shared_slots=True)
    write_store(tmp_path / "old", frame, manifest, max_objects=30)  # another store where -o points

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(C, "write_part", fail)
    with pytest.raises(OSError, match="disk full"):
        upgrade_store(v2, tmp_path / "old")
    with pytest.raises(DatasetFormatError, match="no manifest.json"):  # not the old manifest over new parts
        read_predictions(tmp_path / "old")
    # what is there is the source's, copied before the parts, never the old store's
    assert (tmp_path / "old" / "detections.json").read_text() == (v2 / "detections.json").read_text()


def _spoiled_part(tmp_path, change):
    a, layout = _shared_block()
    table = arrays_to_arrow(a, layout)
    pq.write_table(change(table), tmp_path / "p.parquet")
    return layout


def _set(table, name, column):
    i = table.column_names.index(name)
    return table.set_column(i, pa.field(name, column.type), column)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.replace_schema_metadata(None), r"column pred must be a fixed-size list of \d+ values"),
        (
            lambda t: _set(t, "obj", pa.array(np.zeros(t.num_rows, np.float32))),
            "column obj of a slot part must be a list",
        ),
        (
            lambda t: _set(t, "obj", pa.array([["x"] * len(v) for v in t.column("obj").to_pylist()])),
            "column obj must hold numbers without nulls, got string",
        ),
        (
            lambda t: _set(
                t, "obj", pa.array([[None] * len(v) for v in t.column("obj").to_pylist()], pa.list_(pa.float32()))
            ),
            r"column obj must hold numbers without nulls, got float \(\d+ null",
        ),
        (
            lambda t: _set(t, "class_idx", pa.array(np.full(t.num_rows, -1, np.int16))),
            "a slot part needs classes >= 0",
        ),
    ],
)
def test_a_hand_made_slot_part_fails_in_one_line(tmp_path, change, message):
    layout = _spoiled_part(tmp_path, change)
    with pytest.raises(DatasetFormatError, match=message) as err:
        read_part(tmp_path / "p.parquet", layout)
    assert "\n" not in str(err.value)


def test_class_indices_beyond_int16_are_refused_not_wrapped():
    a, layout = _shared_block()
    a = _copy(a)
    a.class_idx[0] = 40_000
    with pytest.raises(ValueError, match=r"class indices are stored int16; got 0..40000"):
        arrays_to_arrow(a, layout)
