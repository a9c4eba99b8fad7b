"""cocostat.draw: one box-drawing routine (outline, halo, label tab) that predict --draw and errors --draw
both use, checked pixel by pixel on a blank canvas and on real images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

import cocostat.draw as draw_mod
from cocostat.draw import draw_box, load_font, text_colour


def _canvas(w=120, h=100):
    im = Image.new("RGB", (w, h), (128, 128, 128))
    return im, ImageDraw.Draw(im)


def test_outline_and_halo_pixels():
    im, d = _canvas()
    draw_box(d, [20, 30, 60, 70], "white", width=1, halo="black")
    a = np.asarray(im)
    assert (a[30, 40] == 255).all() and (a[70, 40] == 255).all() and (a[50, 20] == 255).all()  # the outline
    assert (a[31, 40] == 0).all() and (a[50, 21] == 0).all()  # the halo, inside the outline
    assert (a[50, 40] == 128).all() and (a[10, 10] == 128).all()  # inside and outside untouched


def test_reversed_box_is_drawn_as_a_line_not_refused():
    im, d = _canvas()
    draw_box(d, [50, 40, 30, 60], (255, 0, 0), width=1)  # x2 < x1: Pillow alone raises ValueError
    a = np.asarray(im)
    assert (a[40:61, 50] == [255, 0, 0]).all()


def test_label_tab_above_the_box_or_inside_at_the_top():
    font = load_font(12)
    im, d = _canvas()
    draw_box(d, [20, 50, 90, 90], (230, 30, 60), width=2, label="cat 0.91", font=font)
    a = np.asarray(im)
    red = (a == [230, 30, 60]).all(axis=2)
    assert red[:50, 20:90].any()  # the tab lies above the box's top edge
    assert not red[:50, 95:].any()  # and starts at the box's left edge
    im, d = _canvas()
    draw_box(d, [20, 2, 90, 90], (230, 30, 60), width=2, label="cat 0.91", font=font)
    red = (np.asarray(im) == [230, 30, 60]).all(axis=2)
    assert red[5:20, 25:60].any() and not red[:1, 60:].any()  # no room above: inside the box's top edge


@pytest.mark.parametrize(
    "colour, want",
    [
        ("#ffe119", "black"),
        ((255, 150, 0), "black"),
        ("#fffac8", "black"),
        ((30, 144, 255), "white"),
        ((230, 30, 60), "white"),
        ("#000075", "white"),
        ((40, 200, 40), "white"),
    ],
)
def test_label_text_contrasts_with_its_tab(colour, want):
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5)) if isinstance(colour, str) else colour
    assert (0.299 * r + 0.587 * g + 0.114 * b >= 150) == (want == "black")  # BT.601 luma, written out
    assert text_colour(colour) == want
    im, d = _canvas()
    draw_box(d, [10, 40, 110, 90], colour, width=2, label="person 0.99", font=load_font(14))
    a = np.asarray(im).reshape(-1, 3)
    ink = np.array([0, 0, 0] if want == "black" else [255, 255, 255])
    assert (a == ink).all(axis=1).sum() > 5  # the text is drawn in that colour


def test_predict_and_errors_drawings_go_through_draw_box(monkeypatch, tmp_path):
    """Both pictures are made of draw_box marks: one per annotation and one per drawn detection."""
    from test_predict import make_coco

    from cocostat.data import load_coco
    from cocostat.diagnose import diagnose

    calls = []
    real = draw_mod.draw_box
    monkeypatch.setattr(draw_mod, "draw_box", lambda *a, **k: (calls.append(k.get("label")), real(*a, **k)))
    ann = make_coco(tmp_path, n_images=3)
    ds = load_coco(ann, image_dir=tmp_path / "synth", cache=False)
    g = ds.boxes_xyxy()
    dets = [
        {
            "image_id": int(ds.ann_image_id[j]),
            "category_id": int(ds.category_id[j]),
            "bbox": [float(g[j, 0]), float(g[j, 1]), float(g[j, 2] - g[j, 0]), float(g[j, 3] - g[j, 1])],
            "score": 0.9,
        }
        for j in range(ds.num_annotations)
    ]
    first = int(ds.image_id[0])
    n_first = int(ds.offsets[1] - ds.offsets[0])
    written = draw_mod.draw_detections(ds, dets, [first], tmp_path / "p", min_score=0.25)
    assert [p.name for p in written] == [f"{first}.png"]
    assert calls.count(None) == n_first and sum(c is not None for c in calls) == n_first  # boxes, labelled dets
    calls.clear()
    rep = diagnose(ds, dets, top=1, draw=tmp_path / "e")
    assert len(rep.drawn) == 1 and calls and any(c and c.endswith("0.90") for c in calls)


@pytest.mark.realdata
def test_real_errors_drawing_marks_every_object(real_data, tmp_path):
    """On a real val2017 image: each object's outline colour is where the object is."""
    from cocostat.data import load_dataset
    from cocostat.diagnose import diagnose

    ds = load_dataset("val2017", root=real_data / "coco-tiny")
    k = int(np.argmax(ds.counts))
    g = np.arange(ds.offsets[k], ds.offsets[k + 1])
    boxes = ds.boxes_xyxy()
    rep = diagnose(
        ds,
        [
            {
                "image_id": int(ds.image_id[k]),
                "category_id": int(ds.category_id[g[0]]),
                "bbox": [5.0, 5.0, 3.0, 3.0],
                "score": 0.99,
            }
        ],
        top=1,
        draw=tmp_path / "e",
    )
    assert len(rep.drawn) == 1
    a = np.asarray(Image.open(rep.drawn[0]).convert("RGB"))
    marked = {tuple(c) for c in (draw_mod.GT_MISSED, draw_mod.GT_CROWD)}
    for j in g:  # every object was missed (or is crowd): its top-left corner carries its colour
        x1, y1 = (round(v) for v in boxes[j, :2])
        patch = a[max(y1 - 1, 0) : y1 + 3, max(x1 - 1, 0) : x1 + 3].reshape(-1, 3)
        assert any(tuple(p) in marked for p in patch.tolist()), (j, x1, y1)
