"""cocostat.models: cfg parser, torch module, .weights/.pt files, letterbox; cross-checked against OpenCV DNN."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cocostat.errors import ModelFormatError, OptionError
from cocostat.models import (
    DARKNET_BN_EPS,
    ULTRALYTICS_BN_EPS,
    Letterbox,
    _MaxPool,
    build_model,
    decode_level,
    load_model,
    parse_cfg,
    read_checkpoint,
    read_weights,
    save_checkpoint,
    write_weights,
)

# Every supported layer type and activation: leaky/mish/relu/logistic/linear convs with and without batch
# norm, maxpool 2/2, 2/1 and 5/1, a shortcut, routes with negative, absolute and two sources, an upsample
# and two [yolo] levels (strides 8 and 4 for a 64 x 64 input).
TINY_CFG = """\
[net]
width=64
height=64
channels=3
# a comment
batch=1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=mish

[convolutional]
filters=16
size=1
stride=1
pad=1
activation=relu

[shortcut]
from=-2
activation=linear

[maxpool]
size=2
stride=1

[maxpool]
size=5
stride=1

[route]
layers=-1,-3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=logistic

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask=3,4,5
anchors=4,5, 8,10, 12,9, 16,20, 30,24, 40,50
classes=2
num=6
jitter=.3
ignore_thresh=.7

[route]
layers=8

[upsample]
stride=2

[route]
layers=-1, 7

[convolutional]
filters=21
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,5, 8,10, 12,9, 16,20, 30,24, 40,50
classes=2
num=6
"""
TINY_VALUES = (
    (8 * 4 + 8 * 3 * 9)
    + (16 * 4 + 16 * 8 * 9)
    + (16 + 16 * 16)
    + (16 * 4 + 16 * 32 * 9)
    + (21 + 21 * 16)
    + (21 + 21 * 48)
)


@pytest.fixture
def tiny_cfg(tmp_path) -> Path:
    path = tmp_path / "tiny.cfg"
    path.write_text(TINY_CFG)
    return path


def _cfg_error(tmp_path, text: str) -> str:
    path = tmp_path / "bad.cfg"
    path.write_text(text)
    with pytest.raises(ModelFormatError) as exc:
        parse_cfg(path)
    return str(exc.value)


# --------------------------------------------------------------------------------------------------
# cfg parsing and the module
# --------------------------------------------------------------------------------------------------
def test_tiny_cfg_builds_and_runs(tiny_cfg):
    cfg = parse_cfg(tiny_cfg)
    assert len(cfg.layers) == 16 and cfg.num_classes == 2 and cfg.num_values == TINY_VALUES
    assert cfg.layers[7].layers == (6, 4) and cfg.layers[13].layers == (12, 7)  # relative and absolute routes
    assert cfg.layers[4].source == 2
    model = build_model(cfg)
    assert [lv.mask for lv in model.levels] == [(3, 4, 5), (0, 1, 2)]
    assert model.strides(64) == [8, 4] and model.check_size(96) == [8, 4]
    with torch.no_grad():
        raw = model(torch.rand(2, 3, 64, 64))
        dec = model.detect(torch.rand(2, 3, 96, 96))
    assert [tuple(r.shape) for r in raw] == [(2, 3, 8, 8, 7), (2, 3, 16, 16, 7)]
    assert [tuple(d.shape) for d in dec] == [(2, 3, 12, 12, 7), (2, 3, 24, 24, 7)]
    assert all(((d[..., 4:] >= 0) & (d[..., 4:] <= 1)).all() for d in dec)
    # ultralytics naming of the conv blocks
    keys = set(model.state_dict())
    assert {"module_list.0.Conv2d.weight", "module_list.0.BatchNorm2d.running_var", "module_list.3.Conv2d.bias"} <= keys


def test_check_size_rejects_non_multiples(tiny_cfg):
    model = build_model(tiny_cfg)
    assert model.check_size(72) == [8, 4]
    with pytest.raises(OptionError, match="^size must be a multiple of 8 for tiny.cfg"):
        model.check_size(68)


def _darknet_maxpool(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Darknet's forward_maxpool_layer, as loops: offset -padding/2, out-of-image pixels skipped."""
    padding = size - 1
    c, h, w = x.shape
    oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    out = np.full((c, oh, ow), -np.inf, np.float32)
    off = -(padding // 2)
    for k in range(c):
        for i in range(oh):
            for j in range(ow):
                for n in range(size):
                    for m in range(size):
                        y, xx = off + i * stride + n, off + j * stride + m
                        if 0 <= y < h and 0 <= xx < w:
                            out[k, i, j] = max(out[k, i, j], x[k, y, xx])
    return out


@pytest.mark.parametrize(
    "size,stride,side", [(2, 2, 8), (2, 2, 7), (2, 1, 6), (3, 2, 7), (5, 1, 6), (13, 1, 5), (3, 1, 4)]
)
def test_maxpool_matches_darknet_loops(size, stride, side):
    x = torch.randn(2, side, side, generator=torch.Generator().manual_seed(side))
    ours = _MaxPool(size, stride, size - 1)(x[None])[0].numpy()
    np.testing.assert_array_equal(ours, _darknet_maxpool(x.numpy(), size, stride))


def test_decode_level_matches_loop():
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 3, 4, 5, 8, generator=g)
    anchors = torch.tensor([[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]])
    dec = decode_level(raw, anchors, 8.0).numpy()

    def sig(v):
        return 1 / (1 + np.exp(-v))

    r = raw.numpy().astype(np.float64)
    for b in range(2):
        for a in range(3):
            for gy in range(4):
                for gx in range(5):
                    t = r[b, a, gy, gx]
                    want = [
                        (sig(t[0]) + gx) * 8,
                        (sig(t[1]) + gy) * 8,
                        np.exp(t[2]) * anchors[a, 0].item(),
                        np.exp(t[3]) * anchors[a, 1].item(),
                        *sig(t[4:]),
                    ]
                    np.testing.assert_allclose(dec[b, a, gy, gx], want, rtol=1e-5, atol=1e-5)


def test_fused_model_gives_the_same_outputs(tiny_cfg):
    model = build_model(tiny_cfg)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model.detect(x), model.fuse().detect(x)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)
    assert not model.fused and "BatchNorm2d" in dict(model.module_list[0].named_children())


@pytest.mark.parametrize(
    "text,where",
    [
        (
            "[net]\nwidth=64\nheight=64\n\n[region]\nclasses=2\n",
            r"bad.cfg line 5, section \[region\] \(layer 0\): unsupported layer type",
        ),
        (
            "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=4\nsize=3\nactivation=swish\n",
            r"line 7, section \[convolutional\] \(layer 0\): unsupported activation 'swish'",
        ),
        ("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=4\nbogus=1\n", r"line 6, .*unknown option 'bogus'"),
        (
            "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=4\ndilation=2\n",
            r"line 6, .*unsupported option dilation=2",
        ),
        (
            "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=four\n",
            r"line 5, .*filters must be an integer, got 'four'",
        ),
        (
            "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=4\n[route]\nlayers=3\n",
            r"line 7, section \[route\] \(layer 1\): layers refers to layer 3",
        ),
        (
            "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=4\n[convolutional]\nfilters=8\n[shortcut]\nfrom=-2\n",
            r"line 9, section \[shortcut\] \(layer 2\): from=-2 adds layer 0 \(4 channels\)",
        ),
        (
            "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=20\n[yolo]\nmask=0\nanchors=1,2\nclasses=2\n",
            r"line 6, section \[yolo\] \(layer 1\): expects 1 x \(5 \+ 2\) = 7 input channels, "
            r"the previous layer gives 20",
        ),
        (
            "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=7\n[yolo]\nmask=3\nanchors=1,2\nclasses=2\n",
            r"line 7, .*mask must be distinct anchor indices in 0..0",
        ),
        (
            "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=7\n[yolo]\nanchors=1,2\nclasses=2\nscale_x_y=1.05\n",
            r"line 9, .*unsupported option scale_x_y=1.05",
        ),
        ("width=64\n[net]\n", r"bad.cfg line 1: option 'width=64' before the first \[section\]"),
        ("[convolutional]\nfilters=4\n", r"the first section must be \[net\], got \[convolutional\] at line 1"),
        ("[net]\nwidth=64\nheight\n", r"line 3, section \[net\]: expected key=value"),
        ("[net]\nwidth=64\nwidth=32\n", r"line 3, section \[net\]: key 'width' repeated \(first at line 2\)"),
        ("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=4\n", r"no \[yolo\] section"),
        ("[net]\nwidth=64\nheight=64\nchannels=1\n", r"line 4, section \[net\]: channels must be 3"),
    ],
)
def test_bad_cfg_names_section_and_line(tmp_path, text, where):
    assert re.search(where, _cfg_error(tmp_path, text))


def test_missing_cfg(tmp_path):
    with pytest.raises(ModelFormatError, match="does not exist"):
        parse_cfg(tmp_path / "nope.cfg")


# --------------------------------------------------------------------------------------------------
# .weights
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version,header", [((0, 2, 0), 20), ((0, 1, 0), 16), ((1, 0, 0), 20)])
def test_weights_round_trip(tiny_cfg, tmp_path, version, header):
    model = build_model(tiny_cfg, seed=1)
    path = write_weights(model, tmp_path / "w.weights", version=version, seen=123456)
    assert path.stat().st_size == header + 4 * TINY_VALUES
    other = build_model(tiny_cfg, seed=2)
    info = read_weights(other, path)
    assert info["version"] == list(version) and info["seen"] == 123456
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    a, b = model.state_dict(), other.state_dict()
    for k in a:
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(a[k], b[k]), k
    # writing again gives the same bytes
    assert write_weights(other, tmp_path / "w2.weights", version=version, seen=123456).read_bytes() == path.read_bytes()


def test_weights_values_in_darknet_order(tiny_cfg, tmp_path):
    """First conv: bn biases, scales, means, variances (8 each), then 8x3x3x3 weights."""
    model = build_model(tiny_cfg)
    data = np.fromfile(write_weights(model, tmp_path / "w.weights"), "<f4", offset=20)
    conv, bn = model.module_list[0].Conv2d, model.module_list[0].BatchNorm2d
    want = torch.cat([bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight.reshape(-1)]).detach().numpy()
    np.testing.assert_array_equal(data[: want.size], want)
    conv3 = model.module_list[3].Conv2d  # no batch norm: bias then weights
    start = (8 * 4 + 8 * 27) + (16 * 4 + 16 * 72)
    np.testing.assert_array_equal(data[start : start + 16], conv3.bias.detach().numpy())


@pytest.mark.parametrize("delta", [-8, -4, 4])
def test_weights_wrong_size(tiny_cfg, tmp_path, delta):
    path = write_weights(build_model(tiny_cfg), tmp_path / "w.weights")
    data = path.read_bytes()
    path.write_bytes(data[:delta] if delta < 0 else data + b"\0" * delta)
    with pytest.raises(ModelFormatError) as exc:
        read_weights(build_model(tiny_cfg), path)
    want = f"w.weights: cfg tiny.cfg expects {TINY_VALUES} values, file holds {TINY_VALUES + delta // 4}"
    assert want in str(exc.value)


def test_weights_odd_bytes_and_short_header(tiny_cfg, tmp_path):
    path = write_weights(build_model(tiny_cfg), tmp_path / "w.weights")
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ModelFormatError, match=f"expects {TINY_VALUES} values, file holds {TINY_VALUES - 1}.25 "):
        read_weights(build_model(tiny_cfg), path)
    path.write_bytes(b"\0" * 10)
    with pytest.raises(ModelFormatError, match="10 bytes is too short for a Darknet weights header"):
        read_weights(build_model(tiny_cfg), path)
    with pytest.raises(ModelFormatError, match="does not exist"):
        read_weights(build_model(tiny_cfg), tmp_path / "missing.weights")


def test_fused_model_cannot_write_weights(tiny_cfg, tmp_path):
    with pytest.raises(ModelFormatError, match="fused"):
        write_weights(build_model(tiny_cfg).fuse(), tmp_path / "w.weights")


# --------------------------------------------------------------------------------------------------
# ultralytics .pt checkpoints
# --------------------------------------------------------------------------------------------------
def _same_params(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.endswith("num_batches_tracked"))


def test_checkpoint_round_trip(tiny_cfg, tmp_path):
    model = build_model(tiny_cfg, seed=3)
    path = save_checkpoint(model, tmp_path / "last.pt", epoch=7)
    loaded = load_model(tiny_cfg, path)
    assert _same_params(model, loaded) and loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.module_list[0].BatchNorm2d.eps == ULTRALYTICS_BN_EPS
    assert read_checkpoint(build_model(tiny_cfg), path)["epoch"] == 7


def test_checkpoint_variants(tiny_cfg, tmp_path):
    model = build_model(tiny_cfg, seed=4)
    sd = model.state_dict()
    # a bare state dict, a DataParallel prefix, half precision (strip_optimizer) all load
    torch.save(sd, tmp_path / "bare.pt")
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "dp.pt")
    torch.save({"model": {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}}, tmp_path / "half.pt")
    assert _same_params(model, load_model(tiny_cfg, tmp_path / "bare.pt"))
    assert _same_params(model, load_model(tiny_cfg, tmp_path / "dp.pt"))
    h = load_model(tiny_cfg, tmp_path / "half.pt")
    torch.testing.assert_close(h.module_list[0].Conv2d.weight, model.module_list[0].Conv2d.weight, rtol=1e-3, atol=1e-3)


def test_checkpoint_needing_unpickling_is_refused(tiny_cfg, tmp_path):
    model = build_model(tiny_cfg)
    torch.save({"model": model, "epoch": 1}, tmp_path / "module.pt")  # a pickled nn.Module
    with pytest.raises(ModelFormatError) as exc:
        load_model(tiny_cfg, tmp_path / "module.pt")
    want = "module.pt: refused: the checkpoint needs arbitrary unpickling (it needs cocostat.models.DarknetModel)"
    assert want in str(exc.value)
    assert "weights_only=True" in str(exc.value)


def test_bad_checkpoints(tiny_cfg, tmp_path):
    sd = build_model(tiny_cfg).state_dict()
    missing = {k: v for k, v in sd.items() if k != "module_list.0.Conv2d.weight"}
    torch.save({"model": missing}, tmp_path / "missing.pt")
    with pytest.raises(
        ModelFormatError, match=r"missing.pt: .*1 key\(s\) of cfg tiny.cfg missing \(e.g. module_list.0.Conv2d.weight\)"
    ):
        load_model(tiny_cfg, tmp_path / "missing.pt")
    bad = dict(sd, **{"module_list.0.Conv2d.weight": torch.zeros(8, 3, 1, 1)})
    torch.save({"model": bad}, tmp_path / "shape.pt")
    shape_msg = r"module_list.0.Conv2d.weight has shape \(8, 3, 1, 1\), cfg tiny.cfg expects \(8, 3, 3, 3\)"
    with pytest.raises(ModelFormatError, match=shape_msg):
        load_model(tiny_cfg, tmp_path / "shape.pt")
    torch.save({"model": dict(sd, extra=torch.zeros(1))}, tmp_path / "extra.pt")
    with pytest.raises(ModelFormatError, match=r"1 unexpected key\(s\) \(e.g. extra\)"):
        load_model(tiny_cfg, tmp_path / "extra.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelFormatError, match="junk.pt: not a readable torch checkpoint"):
        load_model(tiny_cfg, tmp_path / "junk.pt")
    torch.save({"model": [1, 2]}, tmp_path / "list.pt")
    with pytest.raises(ModelFormatError, match="expected a dict whose 'model' entry is a state dict"):
        load_model(tiny_cfg, tmp_path / "list.pt")
    (tmp_path / "w.bin").write_bytes(b"")
    with pytest.raises(ModelFormatError, match="expected a Darknet .weights file or an ultralytics .pt/.pth"):
        load_model(tiny_cfg, tmp_path / "w.bin")


def test_load_model_random_and_eps(tiny_cfg, tmp_path):
    m = load_model(tiny_cfg, device="cpu")
    assert m.weights_path is None and not m.training
    assert m.module_list[0].BatchNorm2d.eps == DARKNET_BN_EPS
    assert _same_params(m, load_model(tiny_cfg))  # seeded


# --------------------------------------------------------------------------------------------------
# letterbox
# --------------------------------------------------------------------------------------------------
def test_letterbox_geometry_and_pixels():
    lb = Letterbox(416)
    p = lb.params([640, 480, 416], [480, 640, 416])
    np.testing.assert_array_equal(p.new_w, [416, 312, 416])
    np.testing.assert_array_equal(p.new_h, [312, 416, 416])
    np.testing.assert_array_equal(p.pad_x, [0, 52, 0])
    np.testing.assert_array_equal(p.pad_y, [52, 0, 0])
    img = Image.new("RGB", (64, 32), (200, 10, 30))
    arr = Letterbox(32).apply(img)
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    assert (arr[:8] == 128).all() and (arr[24:] == 128).all()  # 32 x 16 image centred: rows 8..23
    assert (arr[8:24] == [200, 10, 30]).all()


@settings(max_examples=50, deadline=None)
@given(
    w=st.integers(1, 3000),
    h=st.integers(1, 3000),
    size=st.sampled_from([64, 320, 416, 608]),
    box=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_letterbox_maps_both_ways(w, h, size, box):
    p = Letterbox(size).params(w, h)
    assert (p.new_w <= size).all() and (p.new_h <= size).all() and max(p.new_w[0], p.new_h[0]) == size
    xyxy = np.array([[box[0] * w, box[1] * h, box[2] * w, box[3] * h]])
    inp = p.to_input(xyxy)
    assert (inp >= -1e-9).all() and (inp <= size + 1e-9).all()  # image pixels land inside the canvas
    np.testing.assert_allclose(p.to_image(inp), xyxy, rtol=1e-9, atol=1e-6)
    # the image's corners land on the resized area's corners
    np.testing.assert_allclose(
        p.to_input(np.array([[0, 0, w, h]])),
        [[p.pad_x[0], p.pad_y[0], p.pad_x[0] + p.new_w[0], p.pad_y[0] + p.new_h[0]]],
    )


# --------------------------------------------------------------------------------------------------
# Against OpenCV DNN (an independent reader of the same Darknet files)
# --------------------------------------------------------------------------------------------------
def _opencv_rows(cfg: Path, weights: Path, x: torch.Tensor) -> list[np.ndarray]:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.fail(f"OpenCV {cv2.__version__} has no Darknet importer; install opencv-python-headless<5")
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setInput(x.numpy())
    return [o.reshape(x.shape[0], -1, o.shape[-1]) for o in net.forward(net.getUnconnectedOutLayersNames())]


def _compare_with_opencv(decoded: list[torch.Tensor], rows: list[np.ndarray], size: int, tol: float) -> None:
    """OpenCV rows are (gy, gx, anchor) with boxes as fractions of the input; class scores are
    objectness x probability, zeroed under its threshold."""
    assert len(decoded) == len(rows)
    for d, o in zip(decoded, rows, strict=True):
        b, a, h, w, k = d.shape
        ours = d.permute(0, 2, 3, 1, 4).reshape(b, h * w * a, k).numpy()
        assert o.shape == ours.shape
        np.testing.assert_allclose(ours[..., :4] / size, o[..., :4], rtol=0, atol=tol)
        np.testing.assert_allclose(ours[..., 4], o[..., 4], rtol=0, atol=tol)
        scores = ours[..., 4:5] * ours[..., 5:]
        kept = o[..., 5:] > 0
        np.testing.assert_allclose(scores[kept], o[..., 5:][kept], rtol=0, atol=tol)
        assert (scores[~kept] < o[..., 5:][kept].min(initial=1.0) + tol).all()


def test_tiny_random_cfg_matches_opencv(tiny_cfg, tmp_path):
    model = build_model(tiny_cfg, seed=5)
    weights = write_weights(model, tmp_path / "tiny.weights")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        decoded = model.detect(x)
    _compare_with_opencv(decoded, _opencv_rows(tiny_cfg, weights, x), 64, 1e-4)


@pytest.mark.realdata
def test_yolov3_tiny_matches_opencv_on_real_images(real_data):
    cfg, weights = real_data / "models/yolov3-tiny.cfg", real_data / "models/yolov3-tiny.weights"
    model = load_model(cfg, weights)
    assert model.weights_sha256 == "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
    files = sorted((real_data / "coco-tiny/val2017").glob("*.jpg"))[:3]
    lb = Letterbox(416)
    x = torch.from_numpy(np.stack([lb.apply(Image.open(f)) for f in files])).permute(0, 3, 1, 2).float() / 255
    rows = _opencv_rows(cfg, weights, x)
    with torch.no_grad():
        _compare_with_opencv(model.detect(x), rows, 416, 1e-3)
        _compare_with_opencv(model.fuse().detect(x.contiguous(memory_format=torch.channels_last)), rows, 416, 1e-3)


@pytest.mark.realdata
def test_real_weights_round_trip(real_data, tmp_path):
    cfg, weights = real_data / "models/yolov3-tiny.cfg", real_data / "models/yolov3-tiny.weights"
    model = build_model(cfg)
    info = read_weights(model, weights)
    assert info["version"] == [0, 2, 0] and model.cfg.num_values == 8_858_734
    out = write_weights(model, tmp_path / "copy.weights", version=tuple(info["version"]), seen=info["seen"])
    assert out.read_bytes() == weights.read_bytes()  # byte-identical file
    again = build_model(cfg, seed=9)
    read_weights(again, out)
    assert _same_params(model, again)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name,values", [("yolov3", 62_001_757), ("yolov3-spp", 63_052_381)])
def test_stock_cfgs_run_and_match_opencv(real_data, tmp_path, name, values):
    """The stock cfgs build, run at 160 with random weights, and agree with OpenCV reading the same files."""
    cfg = real_data / "cfg" / f"{name}.cfg"
    model = build_model(cfg, seed=0)
    assert model.cfg.num_values == values  # 62,001,757 is the count in the published yolov3.weights
    assert model.strides(160) == [32, 16, 8]
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        decoded = model.detect(x)
    assert [tuple(d.shape) for d in decoded] == [(1, 3, 5, 5, 85), (1, 3, 10, 10, 85), (1, 3, 20, 20, 85)]
    weights = write_weights(model, tmp_path / f"{name}.weights")
    _compare_with_opencv(decoded, _opencv_rows(cfg, weights, x), 160, 1e-3)


# --------------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_cuda_outputs_match_cpu(tiny_cfg):
    model = build_model(tiny_cfg)
    x = torch.rand(2, 3, 64, 64)
    gpu = load_model(tiny_cfg, device="cuda")
    assert gpu.device.type == "cuda"
    with torch.no_grad():
        cpu_out = model.detect(x)
        gpu_out = gpu.detect(x.cuda())
        half_out = gpu.fuse().half().detect(x.cuda().half())
    for c, g, h in zip(cpu_out, gpu_out, half_out, strict=True):
        assert g.device.type == "cuda" and h.dtype == torch.float32  # decoding is float32
        torch.testing.assert_close(g.cpu(), c, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(h.cpu()[..., 4:], c[..., 4:], rtol=0, atol=2e-2)
