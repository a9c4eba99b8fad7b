"""Darknet YOLOv3 models in torch: cfg parser, ``nn.Module``, ``.weights`` and ``.pt`` files, letterbox.

What is supported (enough for the stock yolov3, yolov3-spp and yolov3-tiny cfgs):

- ``[net]`` / ``[network]``: ``width``, ``height``, ``channels`` (must be 3) are read; every other
  ``[net]`` key is a training hyper-parameter and is ignored.
- ``[convolutional]``: ``batch_normalize``, ``filters``, ``size``, ``stride``, ``pad`` (when 1 the
  padding is ``size // 2``), ``padding`` (used when ``pad`` is 0), ``groups``, ``activation`` one of
  ``leaky`` (slope 0.1), ``linear``, ``relu``, ``mish``, ``logistic``.
- ``[maxpool]``: ``size``, ``stride``, ``padding`` (default ``size - 1``). As in Darknet the output
  is ``(w + padding - size) // stride + 1`` wide, the window starts ``padding // 2`` pixels before
  the input and out-of-image pixels are ignored, so ``size=2 stride=1`` (yolov3-tiny) keeps the size
  and the SPP block's ``size=5/9/13 stride=1`` pools are centred.
- ``[upsample]``: ``stride`` (nearest neighbour).
- ``[route]``: ``layers`` (negative: relative to this layer, else absolute layer indices), channels
  concatenated in the order given.
- ``[shortcut]``: ``from`` (relative or absolute), ``activation``; the two inputs must have the
  same shape.
- ``[yolo]``: ``mask``, ``anchors``, ``classes``, ``num``; training-only keys (``jitter``,
  ``ignore_thresh``, ``truth_thresh``, ``random`` ...) are ignored.

Anything else (another section, an unknown key, an unsupported value) is a
:class:`~cocostat.errors.ModelFormatError` naming the file, the line and the section.

Layer indices count sections after ``[net]`` from 0, as Darknet and ultralytics do, so
``module_list.N`` in a state dict is cfg layer N.

YOLO outputs (Darknet's ``get_yolo_box`` in input pixels). For level l with stride s (input pixels
per cell), anchor a of its ``mask`` with size (aw, ah) in input pixels, and cell (gy, gx), the raw
output ``t = (tx, ty, tw, th, to, tc_0 .. tc_{C-1})`` decodes to::

    cx = (sigmoid(tx) + gx) * s        cy = (sigmoid(ty) + gy) * s
    w  = exp(tw) * aw                  h  = exp(th) * ah
    objectness = sigmoid(to)           class probability c = sigmoid(tc_c)

The score of a (box, class) pair is ``objectness * probability`` (Darknet's ``prob``).

Letterbox (see :class:`Letterbox`): the image is resized by ``s = min(S / w, S / h)`` to
``round(w * s) x round(h * s)`` (bilinear), pasted centred on an ``S x S`` grey canvas
(``pad_value`` 128 of 255, Darknet's 0.5 grey) at offset ``((S - nw) // 2, (S - nh) // 2)``,
RGB, scaled to [0, 1]. Image pixels map to input pixels by ``x' = x * nw / w + pad_x`` and
``y' = y * nh / h + pad_y`` (the exact per-axis scales of the resize), and back by the inverse.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import io
import math
import os
import pickle
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cocostat.atomic import atomic_path, write_bytes
from cocostat.errors import ModelFormatError, OptionError

__all__ = [
    "ACTIVATIONS",
    "ConvSpec",
    "DarknetCfg",
    "DarknetModel",
    "Letterbox",
    "LetterboxParams",
    "MaxPoolSpec",
    "RouteSpec",
    "ShortcutSpec",
    "UpsampleSpec",
    "YoloLevel",
    "YoloSpec",
    "build_model",
    "decode_level",
    "letterbox_scale",
    "load_model",
    "parse_cfg",
    "read_checkpoint",
    "read_weights",
    "save_checkpoint",
    "write_weights",
]

ACTIVATIONS = ("leaky", "linear", "relu", "mish", "logistic")

#: Batch-norm epsilon for Darknet weights: Darknet's cuDNN path (how the stock weights were trained and
#: are usually run) adds 1e-5 to the variance. Darknet's CPU path adds 1e-6 to sqrt(var), OpenCV 1e-6 to
#: the variance: differences far below the 1e-3 agreement checked against OpenCV.
DARKNET_BN_EPS = 1e-5
#: Batch-norm epsilon of ultralytics YOLOv3 2020 (``nn.BatchNorm2d(filters, momentum=0.03, eps=1E-4)``);
#: its 2019 releases used torch's default 1e-5. Pass ``bn_eps`` to :func:`load_model` to choose.
ULTRALYTICS_BN_EPS = 1e-4

_NET_SECTIONS = ("net", "network")
# Training-only keys, accepted and ignored.
_YOLO_IGNORED = {
    "jitter",
    "ignore_thresh",
    "truth_thresh",
    "random",
    "counters_per_class",
    "label_smooth_eps",
    "iou_normalizer",
    "cls_normalizer",
    "obj_normalizer",
    "delta_normalizer",
    "iou_loss",
    "iou_thresh",
    "iou_thresh_kind",
    "max_delta",
    "focal_loss",
    "uc_normalizer",
    "objectness_smooth",
    "nms_kind",
    "beta_nms",
    "resize",
    "max",
    "map",
    "embedding_layer",
    "track_history_size",
    "sim_thresh",
    "dets_for_track",
    "dets_for_show",
    "track_ciou_norm",
    "stride",
    "show_details",
    "thresh",
}
_KNOWN = {
    "convolutional": {"batch_normalize", "filters", "size", "stride", "pad", "padding", "activation", "groups"},
    "maxpool": {"size", "stride", "padding"},
    "upsample": {"stride"},
    "route": {"layers"},
    "shortcut": {"from", "activation"},
    "yolo": {"mask", "anchors", "classes", "num"} | _YOLO_IGNORED,
}
# Keys whose default value is harmless, and which are refused otherwise.
_DEFAULT_ONLY: dict[str, dict[str, str | None]] = {
    "convolutional": {
        "dilation": "1",
        "binary": "0",
        "xnor": "0",
        "share_index": None,
        "antialiasing": "0",
        "stride_x": None,
        "stride_y": None,
        "flipped": "0",
        "dot": "0",
    },
    "maxpool": {"stride_x": None, "stride_y": None, "maxpool_depth": "0", "antialiasing": "0"},
    "upsample": {"scale": "1"},
    "route": {"groups": "1", "group_id": "0"},
    "shortcut": {"weights_type": "none", "weights_normalization": "none"},
    "yolo": {"scale_x_y": "1", "new_coords": "0"},
}


# --------------------------------------------------------------------------------------------------
# cfg parsing
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Section:
    kind: str
    line: int  # 1-based line of the [header]
    options: dict[str, str]
    option_lines: dict[str, int]


@dataclass(frozen=True)
class ConvSpec:
    """``[convolutional]``: a conv (bias only without batch norm), batch norm, activation."""

    index: int
    line: int
    in_channels: int
    filters: int
    size: int
    stride: int
    padding: int
    groups: int
    batch_normalize: bool
    activation: str

    @property
    def out_channels(self) -> int:
        return self.filters

    @property
    def num_values(self) -> int:
        """float32 values this layer holds in a ``.weights`` file."""
        per_filter = 4 if self.batch_normalize else 1
        return self.filters * per_filter + self.filters * (self.in_channels // self.groups) * self.size**2


@dataclass(frozen=True)
class MaxPoolSpec:
    """``[maxpool]`` with Darknet's padding rule (see the module docstring)."""

    index: int
    line: int
    channels: int
    size: int
    stride: int
    padding: int

    @property
    def out_channels(self) -> int:
        return self.channels


@dataclass(frozen=True)
class UpsampleSpec:
    """``[upsample]``: nearest-neighbour, by an integer ``stride``."""

    index: int
    line: int
    channels: int
    stride: int

    @property
    def out_channels(self) -> int:
        return self.channels


@dataclass(frozen=True)
class RouteSpec:
    """``[route]``: channel concatenation of the outputs of ``layers`` (absolute indices)."""

    index: int
    line: int
    layers: tuple[int, ...]
    out_channels: int


@dataclass(frozen=True)
class ShortcutSpec:
    """``[shortcut]``: previous output plus the output of ``source`` (absolute index), then activation."""

    index: int
    line: int
    source: int
    channels: int
    activation: str

    @property
    def out_channels(self) -> int:
        return self.channels


@dataclass(frozen=True)
class YoloSpec:
    """``[yolo]``: decodes the previous layer's ``len(mask) * (5 + classes)`` channels."""

    index: int
    line: int
    channels: int
    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]  # all of the cfg's anchors (w, h), input pixels
    classes: int

    @property
    def out_channels(self) -> int:
        return self.channels


LayerSpec = ConvSpec | MaxPoolSpec | UpsampleSpec | RouteSpec | ShortcutSpec | YoloSpec


@dataclass(frozen=True)
class DarknetCfg:
    """A parsed Darknet cfg.

    Attributes:
        name: the file name (or ``<string>``), used in messages.
        width, height, channels: ``[net]`` input size (pixels) and channels.
        layers: one spec per section after ``[net]``, index = cfg layer index.
    """

    name: str
    width: int
    height: int
    channels: int
    layers: tuple[LayerSpec, ...]
    text_sha256: str = field(default="", repr=False)

    @property
    def yolo_layers(self) -> tuple[YoloSpec, ...]:
        return tuple(spec for spec in self.layers if isinstance(spec, YoloSpec))

    @property
    def anchors(self) -> tuple[tuple[float, float], ...]:
        """(A, 2) anchor sizes (w, h) in input pixels, cfg order (the first ``[yolo]`` layer's list)."""
        return self.yolo_layers[0].anchors

    @property
    def num_classes(self) -> int:
        return self.yolo_layers[0].classes

    @property
    def num_values(self) -> int:
        """float32 values a ``.weights`` file for this cfg holds after its header."""
        return sum(spec.num_values for spec in self.layers if isinstance(spec, ConvSpec))


class _Where:
    """Builds "FILE line N, section [KIND] (layer I): ..." messages."""

    def __init__(self, name: str, sec: _Section, index: int):
        self.name, self.sec, self.index = name, sec, index

    def error(self, msg: str, key: str | None = None) -> ModelFormatError:
        line = self.sec.option_lines.get(key, self.sec.line) if key else self.sec.line
        layer = f" (layer {self.index})" if self.index >= 0 else ""
        return ModelFormatError(f"{self.name} line {line}, section [{self.sec.kind}]{layer}: {msg}")

    def get(self, key: str, default: str | None = None) -> str:
        if key in self.sec.options:
            return self.sec.options[key]
        if default is None:
            raise self.error(f"missing required key {key!r}")
        return default

    def int(self, key: str, default: int | None = None, *, minimum: int | None = None) -> int:
        raw = self.get(key, None if default is None else str(default))
        try:
            value = int(raw)
        except ValueError:
            raise self.error(f"{key} must be an integer, got {raw!r}", key) from None
        if minimum is not None and value < minimum:
            raise self.error(f"{key} must be >= {minimum}, got {value}", key)
        return value

    def ints(self, key: str) -> list[builtins.int]:  # `int` here is the method above
        raw = self.get(key)
        try:
            return [int(v) for v in raw.split(",") if v.strip()]
        except ValueError:
            raise self.error(f"{key} must be a comma-separated list of integers, got {raw!r}", key) from None

    def floats(self, key: str) -> list[float]:
        raw = self.get(key)
        try:
            values = [float(v) for v in raw.split(",") if v.strip()]
        except ValueError:
            raise self.error(f"{key} must be a comma-separated list of numbers, got {raw!r}", key) from None
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise self.error(f"{key} must be positive numbers, got {raw!r}", key)
        return values

    def activation(self, key: str = "activation") -> str:
        act = self.get(key, "linear" if self.sec.kind == "shortcut" else "logistic")
        if act not in ACTIVATIONS:
            raise self.error(f"unsupported activation {act!r}; supported: {', '.join(ACTIVATIONS)}", key)
        return act

    def check_keys(self) -> None:
        known = _KNOWN[self.sec.kind]
        defaults = _DEFAULT_ONLY.get(self.sec.kind, {})
        for key, value in self.sec.options.items():
            if key in known:
                continue
            if key in defaults:
                if defaults[key] is not None and value.strip().lower() == defaults[key]:
                    continue
                raise self.error(f"unsupported option {key}={value}", key)
            raise self.error(f"unknown option {key!r} (supported: {', '.join(sorted(known - _YOLO_IGNORED))})", key)


def _split_sections(text: str, name: str) -> list[_Section]:
    sections: list[_Section] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ModelFormatError(
                    f"{name} line {lineno}: expected a section header like [convolutional], got {raw.strip()!r}"
                )
            sections.append(_Section(line[1:-1].strip().lower(), lineno, {}, {}))
            continue
        if not sections:
            raise ModelFormatError(f"{name} line {lineno}: option {line!r} before the first [section]")
        if "=" not in line:
            raise ModelFormatError(
                f"{name} line {lineno}, section [{sections[-1].kind}]: expected key=value, got {raw.strip()!r}"
            )
        key, value = (s.strip() for s in line.split("=", 1))
        sec = sections[-1]
        if key in sec.options:
            raise ModelFormatError(
                f"{name} line {lineno}, section [{sec.kind}]: key {key!r} repeated "
                f"(first at line {sec.option_lines[key]})"
            )
        sec.options[key] = value
        sec.option_lines[key] = lineno
    return sections


def _absolute(w: _Where, index: int, i: int, key: str) -> int:
    """A [route]/[shortcut] layer reference (negative: relative to ``index``) as an absolute index."""
    j = index + i if i < 0 else i
    if not 0 <= j < index:
        raise w.error(f"{key} refers to layer {j}, expected an earlier layer (0..{index - 1})", key)
    return j


def parse_cfg(source: str | os.PathLike, *, text: str | None = None) -> DarknetCfg:
    """Parse a Darknet cfg file (or ``text`` when given; ``source`` then only names it in messages).

    Channels are inferred layer by layer, so a bad ``[route]`` index, a ``[shortcut]`` between
    layers of different channels or a ``[yolo]`` layer whose input does not have
    ``len(mask) * (5 + classes)`` channels is found here.

    Raises:
        ModelFormatError: the file is missing or unreadable, or a section, key or value is
            unsupported or malformed; the message names the file, line and section.
    """
    if text is None:
        path = Path(source)
        if not path.is_file():
            raise ModelFormatError(f"cfg file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8", errors="strict")
        except (UnicodeDecodeError, OSError) as exc:
            raise ModelFormatError(f"{path}: cannot read the cfg as text: {exc}") from None
        name = path.name
    else:
        name = str(source)
    sections = _split_sections(text, name)
    if not sections or sections[0].kind not in _NET_SECTIONS:
        got = f"[{sections[0].kind}] at line {sections[0].line}" if sections else "no section"
        raise ModelFormatError(f"{name}: the first section must be [net], got {got}")
    net = _Where(name, sections[0], -1)
    width, height = net.int("width", minimum=1), net.int("height", minimum=1)
    channels = net.int("channels", 3)
    if channels != 3:
        raise net.error(f"channels must be 3 (RGB input), got {channels}", "channels")

    layers: list[LayerSpec] = []
    out_ch: list[int] = []
    for index, sec in enumerate(sections[1:]):
        w = _Where(name, sec, index)
        if sec.kind not in _KNOWN:
            raise w.error(f"unsupported layer type; supported: [{'], ['.join(_KNOWN)}]")
        w.check_keys()
        prev = out_ch[-1] if out_ch else channels

        spec: LayerSpec
        if sec.kind == "convolutional":
            size = w.int("size", 1, minimum=1)
            pad = w.int("pad", 0, minimum=0)
            padding = size // 2 if pad else w.int("padding", 0, minimum=0)
            groups = w.int("groups", 1, minimum=1)
            filters = w.int("filters", 1, minimum=1)
            if prev % groups or filters % groups:
                raise w.error(
                    f"groups={groups} must divide the input channels ({prev}) and filters ({filters})", "groups"
                )
            spec = ConvSpec(
                index,
                sec.line,
                prev,
                filters,
                size,
                w.int("stride", 1, minimum=1),
                padding,
                groups,
                bool(w.int("batch_normalize", 0)),
                w.activation(),
            )
        elif sec.kind == "maxpool":
            size = w.int("size", 1, minimum=1)
            stride = w.int("stride", 1, minimum=1)
            spec = MaxPoolSpec(index, sec.line, prev, size, stride, w.int("padding", size - 1, minimum=0))
        elif sec.kind == "upsample":
            spec = UpsampleSpec(index, sec.line, prev, w.int("stride", 2, minimum=1))
        elif sec.kind == "route":
            srcs = tuple(_absolute(w, index, i, "layers") for i in w.ints("layers"))
            if not srcs:
                raise w.error("layers must name at least one layer", "layers")
            spec = RouteSpec(index, sec.line, srcs, sum(out_ch[j] for j in srcs))
        elif sec.kind == "shortcut":
            src = _absolute(w, index, w.int("from"), "from")
            if out_ch[src] != prev:
                raise w.error(
                    f"from={sec.options['from']} adds layer {src} ({out_ch[src]} channels) to the "
                    f"previous layer ({prev} channels); they must match",
                    "from",
                )
            spec = ShortcutSpec(index, sec.line, src, prev, w.activation())
        else:  # yolo
            anchors = w.floats("anchors")
            if len(anchors) % 2:
                raise w.error(f"anchors must be w,h pairs, got {len(anchors)} numbers", "anchors")
            pairs = tuple(zip(anchors[0::2], anchors[1::2], strict=True))
            num = w.int("num", len(pairs), minimum=1)
            if num != len(pairs):
                raise w.error(f"num={num} but anchors holds {len(pairs)} pairs", "num")
            mask = tuple(w.ints("mask")) if "mask" in sec.options else tuple(range(num))
            if not mask or not all(0 <= m < num for m in mask) or len(set(mask)) != len(mask):
                raise w.error(f"mask must be distinct anchor indices in 0..{num - 1}, got {list(mask)}", "mask")
            classes = w.int("classes", 20, minimum=1)
            need = len(mask) * (5 + classes)
            if prev != need:
                raise w.error(
                    f"expects {len(mask)} x (5 + {classes}) = {need} input channels, the previous layer gives {prev}"
                )
            spec = YoloSpec(index, sec.line, prev, mask, pairs, classes)
        layers.append(spec)
        out_ch.append(spec.out_channels)

    cfg = DarknetCfg(name, width, height, channels, tuple(layers), hashlib.sha256(text.encode("utf-8")).hexdigest())
    yolos = cfg.yolo_layers
    if not yolos:
        raise ModelFormatError(f"{name}: no [yolo] section; a detection model needs at least one")
    for y in yolos[1:]:
        if y.anchors != yolos[0].anchors or y.classes != yolos[0].classes:
            raise ModelFormatError(
                f"{name} line {y.line}, section [yolo] (layer {y.index}): anchors and classes "
                f"must match the first [yolo] section (line {yolos[0].line})"
            )
    seen: dict[int, int] = {}
    for y in yolos:
        for m in y.mask:
            if m in seen:
                raise ModelFormatError(
                    f"{name} line {y.line}, section [yolo] (layer {y.index}): anchor {m} is "
                    f"already used by the [yolo] section at line {seen[m]}"
                )
            seen[m] = y.line
    return cfg


# --------------------------------------------------------------------------------------------------
# The torch module
# --------------------------------------------------------------------------------------------------
def _activation(name: str) -> nn.Module | None:
    return {
        "leaky": lambda: nn.LeakyReLU(0.1, inplace=True),
        "relu": lambda: nn.ReLU(inplace=True),
        "mish": nn.Mish,
        "logistic": nn.Sigmoid,
        "linear": lambda: None,
    }[name]()


class _MaxPool(nn.Module):
    """Darknet maxpool: window starts ``padding // 2`` before the input, out-of-image pixels ignored."""

    def __init__(self, size: int, stride: int, padding: int):
        super().__init__()
        self.size, self.stride = size, stride
        self.left, self.right = padding // 2, padding - padding // 2

    def forward(self, x: Tensor) -> Tensor:
        if self.left == self.right and self.left <= self.size // 2:
            return F.max_pool2d(x, self.size, self.stride, padding=self.left)
        x = F.pad(x, (self.left, self.right, self.left, self.right), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class _Upsample(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=self.stride, mode="nearest")


class _Route(nn.Module):
    """Placeholder module for ``[route]``; the model does the concatenation."""

    def __init__(self, layers: Sequence[int]):
        super().__init__()
        self.layers = tuple(layers)


class _Shortcut(nn.Module):
    """Placeholder for ``[shortcut]``; holds the activation applied after the sum."""

    def __init__(self, source: int, activation: str):
        super().__init__()
        self.source = source
        act = _activation(activation)
        self.activation: nn.Module = act if act is not None else nn.Identity()


class _Yolo(nn.Module):
    """Reshapes (B, A*(5+C), H, W) to (B, A, H, W, 5+C); decoding is :func:`decode_level`."""

    def __init__(self, num_anchors: int, classes: int):
        super().__init__()
        self.num_anchors, self.classes = num_anchors, classes

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        return x.view(b, self.num_anchors, 5 + self.classes, h, w).permute(0, 1, 3, 4, 2).contiguous()


@dataclass(frozen=True)
class YoloLevel:
    """One output level (a ``[yolo]`` layer), in cfg order.

    Attributes:
        level: index among the ``[yolo]`` layers. layer: cfg layer index.
        mask: anchor indices into the cfg's anchors list. anchors: (A_l, 2) sizes (w, h), input px.
        (The stride depends on the input size: :meth:`DarknetModel.strides`.)
    """

    level: int
    layer: int
    mask: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]


class DarknetModel(nn.Module):
    """A Darknet cfg as a torch module.

    ``module_list[i]`` is cfg layer ``i``; a ``[convolutional]`` layer is an ``nn.Sequential`` with
    children ``Conv2d``, ``BatchNorm2d`` (when ``batch_normalize=1``) and ``activation`` (unless
    linear), the ultralytics YOLOv3 naming, so their state dicts load as they are.

    Attributes:
        cfg: the parsed :class:`DarknetCfg`. levels: the :class:`YoloLevel` of each ``[yolo]`` layer.
        anchors: (A, 2) float32 tensor buffer, anchor sizes (w, h) in input pixels, cfg order.
        num_classes: C. weights_path, weights_sha256: the loaded weights file (None: random).
    """

    anchors: Tensor  # registered buffer; declared so the type checker knows it is not a submodule

    def __init__(self, cfg: DarknetCfg, *, bn_eps: float = DARKNET_BN_EPS):
        super().__init__()
        self.cfg = cfg
        self.fused = False
        self.weights_path: str | None = None
        self.weights_sha256: str | None = None
        mods = nn.ModuleList()
        for spec in cfg.layers:
            if isinstance(spec, ConvSpec):
                seq = nn.Sequential()
                seq.add_module(
                    "Conv2d",
                    nn.Conv2d(
                        spec.in_channels,
                        spec.filters,
                        spec.size,
                        spec.stride,
                        spec.padding,
                        groups=spec.groups,
                        bias=not spec.batch_normalize,
                    ),
                )
                if spec.batch_normalize:
                    seq.add_module("BatchNorm2d", nn.BatchNorm2d(spec.filters, eps=bn_eps))
                act = _activation(spec.activation)
                if act is not None:
                    seq.add_module("activation", act)
                mods.append(seq)
            elif isinstance(spec, MaxPoolSpec):
                mods.append(_MaxPool(spec.size, spec.stride, spec.padding))
            elif isinstance(spec, UpsampleSpec):
                mods.append(_Upsample(spec.stride))
            elif isinstance(spec, RouteSpec):
                mods.append(_Route(spec.layers))
            elif isinstance(spec, ShortcutSpec):
                mods.append(_Shortcut(spec.source, spec.activation))
            else:
                mods.append(_Yolo(len(spec.mask), spec.classes))
        self.module_list = mods
        self.levels = tuple(
            YoloLevel(i, y.index, y.mask, tuple(y.anchors[m] for m in y.mask)) for i, y in enumerate(cfg.yolo_layers)
        )
        self.register_buffer("anchors", torch.tensor(cfg.anchors, dtype=torch.float32), persistent=False)
        self.num_classes = cfg.num_classes
        needed: set[int] = set()
        for spec in cfg.layers:
            if isinstance(spec, RouteSpec):
                needed.update(spec.layers)
            elif isinstance(spec, ShortcutSpec):
                needed.add(spec.source)
        self._keep = frozenset(needed)

    # -- properties ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def max_stride(self) -> int:
        """Total downsampling of the deepest level for an input of the cfg's size (an input side
        must be a multiple of it)."""
        return max(self.strides(max(self.cfg.width, self.cfg.height)))

    def strides(self, size: int) -> list[int]:
        """Stride (input pixels per cell) of each level for a ``size x size`` input, from the layer shapes."""
        return [size // g for g in self.grid_sizes(size)]

    def grid_sizes(self, size: int) -> list[int]:
        """Grid side of each level for a ``size x size`` input (computed from the cfg, no forward pass)."""
        sides: list[int] = []
        grids = []
        for spec in self.cfg.layers:
            prev = sides[-1] if sides else size
            if isinstance(spec, ConvSpec):
                s = (prev + 2 * spec.padding - spec.size) // spec.stride + 1
            elif isinstance(spec, MaxPoolSpec):
                s = (prev + spec.padding - spec.size) // spec.stride + 1
            elif isinstance(spec, UpsampleSpec):
                s = prev * spec.stride
            elif isinstance(spec, RouteSpec):
                s = sides[spec.layers[0]]
            else:
                s = prev
            sides.append(s)
            if isinstance(spec, YoloSpec):
                grids.append(s)
        return grids

    def check_size(self, size: int) -> list[int]:
        """Strides for ``size``; OptionError unless every level's grid divides ``size`` exactly."""
        if size <= 0:
            raise OptionError(f"size must be a positive multiple of 32, got {size}", param="size")
        grids = self.grid_sizes(size)
        if any(g <= 0 or size % g for g in grids):
            base = self.max_stride
            raise OptionError(
                f"size must be a multiple of {base} for {self.cfg.name} (its output levels "
                f"need whole grid cells), got {size}",
                param="size",
            )
        return [size // g for g in grids]

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> list[Tensor]:
        """Raw outputs.

        Args:
            x: (B, 3, H, W) float, RGB in [0, 1], H and W multiples of :attr:`max_stride`.

        Returns:
            one (B, A_l, H_l, W_l, 5 + C) tensor per level, cfg order, raw (before sigmoid/exp).
        """
        saved: dict[int, Tensor] = {}
        outputs: list[Tensor] = []
        for i, (spec, mod) in enumerate(zip(self.cfg.layers, self.module_list, strict=True)):
            if isinstance(spec, RouteSpec):
                parts = [saved[j] for j in spec.layers]
                x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            elif isinstance(spec, ShortcutSpec):
                x = cast(_Shortcut, mod).activation(x + saved[spec.source])
            elif isinstance(spec, YoloSpec):
                outputs.append(mod(x))
            else:
                x = mod(x)
            if i in self._keep:
                saved[i] = x
        return outputs

    def decode(self, outputs: Sequence[Tensor], size: int) -> list[Tensor]:
        """Decode :meth:`forward`'s outputs for a ``size x size`` input with :func:`decode_level`.

        Returns:
            one (B, A_l, H_l, W_l, 5 + C) float32 tensor per level: ``cx, cy, w, h`` (input pixels),
            objectness, C class probabilities.
        """
        return [
            decode_level(raw, self.anchors[list(lvl.mask)], size / raw.shape[3])
            for lvl, raw in zip(self.levels, outputs, strict=True)
        ]

    def detect(self, x: Tensor) -> list[Tensor]:
        """``decode(forward(x), x.shape[-1])`` for a square input batch (B, 3, S, S)."""
        return self.decode(self.forward(x), x.shape[-1])

    # -- inference copy ----------------------------------------------------------------------------
    def fuse(self) -> DarknetModel:
        """A copy with every batch norm folded into its convolution (for inference; same outputs).

        The copy cannot write ``.weights`` files (they store batch-norm values separately).
        """
        model = copy.deepcopy(self)
        for spec, seq in zip(model.cfg.layers, model.module_list, strict=True):
            if not isinstance(spec, ConvSpec) or not spec.batch_normalize:
                continue
            conv, bn = _conv_bn(seq)
            fused = nn.Conv2d(
                spec.in_channels, spec.filters, spec.size, spec.stride, spec.padding, groups=spec.groups, bias=True
            ).to(conv.weight.device, conv.weight.dtype)
            with torch.no_grad():
                scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)  # (F,)
                fused.weight.copy_((conv.weight.double() * scale[:, None, None, None]).to(conv.weight.dtype))
                cast(Tensor, fused.bias).copy_(  # bias=True above
                    (bn.bias.double() - bn.running_mean.double() * scale).to(conv.weight.dtype)
                )
            seq.Conv2d = fused
            del seq.BatchNorm2d
        model.fused = True
        return model


def decode_level(raw: Tensor, anchors: Tensor, stride: float) -> Tensor:
    """Darknet YOLOv3 decoding of one level (formulas in the module docstring).

    Args:
        raw: (B, A_l, H, W, 5 + C) raw outputs (any float dtype; decoded in float32).
        anchors: (A_l, 2) anchor sizes (w, h), input pixels.
        stride: input pixels per cell (input side / W).

    Returns:
        (B, A_l, H, W, 5 + C) float32: cx, cy, w, h (input pixels), objectness, C class probabilities.
    """
    raw = raw.float()
    _, _, h, w, _ = raw.shape
    gy, gx = torch.meshgrid(
        torch.arange(h, device=raw.device, dtype=torch.float32),
        torch.arange(w, device=raw.device, dtype=torch.float32),
        indexing="ij",
    )
    grid = torch.stack([gx, gy], dim=-1)  # (H, W, 2)
    xy = (torch.sigmoid(raw[..., :2]) + grid) * stride  # (B, A, H, W, 2)
    wh = torch.exp(raw[..., 2:4]) * anchors.to(raw.device, torch.float32)[None, :, None, None, :]  # (B, A, H, W, 2)
    return torch.cat([xy, wh, torch.sigmoid(raw[..., 4:])], dim=-1)


def build_model(
    cfg: DarknetCfg | str | os.PathLike, *, bn_eps: float = DARKNET_BN_EPS, seed: int | None = 0
) -> DarknetModel:
    """A model with random weights (torch's default init, seeded when ``seed`` is not None), eval mode.

    Batch-norm running statistics are randomised too (means ~N(0, 0.1), variances ~U(0.5, 1.5)), so a
    ``.weights`` round trip exercises every value.
    """
    if not isinstance(cfg, DarknetCfg):
        cfg = parse_cfg(cfg)
    gen_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = DarknetModel(cfg, bn_eps=bn_eps)
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.normal_(0, 0.1)
                    cast(Tensor, mod.running_mean).normal_(0, 0.1)  # track_running_stats=True
                    cast(Tensor, mod.running_var).uniform_(0.5, 1.5)
    finally:
        if seed is not None:
            torch.random.set_rng_state(gen_state)
    return model.eval()


# --------------------------------------------------------------------------------------------------
# Darknet .weights files
# --------------------------------------------------------------------------------------------------
def _header_size(major: int, minor: int) -> int:
    # Darknet parser.c load_weights: seen is a size_t (64 bits) from version 0.2 on, else an int.
    return 20 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else 16


class _BatchNorm(nn.BatchNorm2d):
    """Type of the batch norms built here (with running statistics, so those are never None)."""

    running_mean: Tensor
    running_var: Tensor


def _conv_bn(seq: nn.Module) -> tuple[nn.Conv2d, _BatchNorm]:
    """The ``Conv2d`` and ``BatchNorm2d`` children of a ``[convolutional]`` block (see :class:`DarknetModel`).

    Only the names are looked up; ``bn`` is read only where the cfg says ``batch_normalize=1``.
    """
    return cast(nn.Conv2d, seq.Conv2d), cast(_BatchNorm, getattr(seq, "BatchNorm2d", None))


def _conv_tensors(model: DarknetModel) -> list[Tensor]:
    """Parameters in ``.weights`` order: per conv, bn bias, bn weight, mean, var (or conv bias); conv weight."""
    out: list[Tensor] = []
    for spec, seq in zip(model.cfg.layers, model.module_list, strict=True):
        if not isinstance(spec, ConvSpec):
            continue
        conv, bn = _conv_bn(seq)
        if spec.batch_normalize:
            out += [bn.bias, bn.weight, bn.running_mean, bn.running_var]
        else:
            out.append(cast(Tensor, conv.bias))  # bias=not batch_normalize
        out.append(conv.weight)
    return out


def read_weights(model: DarknetModel, path: str | os.PathLike) -> dict:
    """Load a Darknet ``.weights`` file into ``model`` (in place).

    Layout (little endian): int32 major, minor, revision; ``seen`` as uint64 when
    ``major * 10 + minor >= 2`` else int32; then float32 values, per ``[convolutional]`` in cfg order:
    batch-norm biases, scales, rolling means, rolling variances (``filters`` each) or conv biases,
    then the ``filters x in/groups x size x size`` conv weights.

    Returns:
        ``{"version": [major, minor, revision], "seen": int, "sha256": hex}``.

    Raises:
        ModelFormatError: missing file, short header, or a value count that differs from the cfg's
            ("cfg expects N values, file holds M").
    """
    if model.fused:
        raise ModelFormatError("cannot load .weights into a fused model; load first, then fuse()")
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"weights file {path} does not exist")
    data = path.read_bytes()
    if len(data) < 16:
        raise ModelFormatError(
            f"{path.name}: {len(data)} bytes is too short for a Darknet weights header (16 or 20 bytes)"
        )
    major, minor, revision = np.frombuffer(data, "<i4", 3).tolist()
    hsize = _header_size(major, minor)
    seen = int(np.frombuffer(data, "<u8" if hsize == 20 else "<i4", 1, 12)[0]) if len(data) >= hsize else 0
    body = len(data) - hsize
    expected = model.cfg.num_values
    if body < 0 or body % 4 or body // 4 != expected:
        held = "none" if body < 0 else str(body // 4) if body % 4 == 0 else f"{body / 4:.2f}"
        raise ModelFormatError(
            f"{path.name}: cfg {model.cfg.name} expects {expected} values, file holds {held} "
            f"(header version {major}.{minor}.{revision}, {len(data)} bytes)"
        )
    values = np.frombuffer(data, "<f4", expected, hsize)
    pos = 0
    with torch.no_grad():
        for t in _conv_tensors(model):
            n = t.numel()
            t.copy_(torch.from_numpy(values[pos : pos + n].copy()).view_as(t))
            pos += n
    model.weights_path = str(path)
    model.weights_sha256 = hashlib.sha256(data).hexdigest()
    return {"version": [major, minor, revision], "seen": seen, "sha256": model.weights_sha256}


def write_weights(
    model: DarknetModel, path: str | os.PathLike, *, version: tuple[int, int, int] = (0, 2, 0), seen: int = 0
) -> Path:
    """Write ``model``'s convolution parameters as a Darknet ``.weights`` file (atomically).

    ``version`` decides the header (0.2+ writes ``seen`` as uint64, older as int32), see :func:`read_weights`.
    """
    if model.fused:
        raise ModelFormatError("cannot write .weights from a fused model (batch norm was folded into the convs)")
    major, minor, revision = version
    header = np.array([major, minor, revision], "<i4").tobytes()
    header += np.array([seen], "<u8" if _header_size(major, minor) == 20 else "<i4").tobytes()
    with torch.no_grad():
        body = [
            t.detach().to("cpu", torch.float32).reshape(-1).numpy().astype("<f4").tobytes()
            for t in _conv_tensors(model)
        ]
    return write_bytes(path, header + b"".join(body))


# --------------------------------------------------------------------------------------------------
# ultralytics YOLOv3 .pt checkpoints
# --------------------------------------------------------------------------------------------------
def read_checkpoint(model: DarknetModel, path: str | os.PathLike) -> dict:
    """Load an ultralytics YOLOv3 (2019-2020, cfg-based) checkpoint into ``model`` (in place).

    The file is a ``torch.save``'d dict whose ``model`` entry is a state dict keyed
    ``module_list.N.Conv2d.weight``, ``module_list.N.Conv2d.bias``, ``module_list.N.BatchNorm2d.*``
    (a bare state dict is accepted too). It is read with ``torch.load(weights_only=True)``: a file
    that needs arbitrary unpickling (a pickled ``nn.Module``) is refused.

    Returns:
        ``{"epoch": int | None, "sha256": hex}``.

    Raises:
        ModelFormatError: not a torch file, refused unpickling, missing/unexpected keys, shapes that
            do not match the cfg.
    """
    if model.fused:
        raise ModelFormatError("cannot load a checkpoint into a fused model; load first, then fuse()")
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch files are zip archives (or, before torch 1.6, pickles starting with a protocol byte)
        if not (zipfile.is_zipfile(io.BytesIO(data)) or data[:1] == b"\x80"):
            raise ModelFormatError(
                f"{path.name}: not a readable torch checkpoint (neither a zip archive nor a pickle)"
            ) from None
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f" (it needs {found.group(1)})" if found else ""
        raise ModelFormatError(
            f"{path.name}: refused: the checkpoint needs arbitrary unpickling{what}: it stores Python objects "
            f"such as a whole nn.Module, not only tensors, and cocostat loads checkpoints with weights_only=True. "
            f"Re-save its state dict where you trust the file: torch.save({{'model': model.state_dict()}}, path)"
        ) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(f"{path.name}: not a readable torch checkpoint: {first}") from None
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        got = type(state).__name__ if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ModelFormatError(
            f"{path.name}: expected a dict whose 'model' entry is a state dict of tensors "
            f"(ultralytics YOLOv3), got {got}"
        )
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module.") :]: v for k, v in state.items()}
    own = model.state_dict()
    yolo_layers = {y.index for y in model.cfg.yolo_layers}
    unexpected = [
        k
        for k in state
        if k not in own
        and not k.endswith("num_batches_tracked")
        and not (k.startswith("module_list.") and k.split(".")[1].isdigit() and int(k.split(".")[1]) in yolo_layers)
    ]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} key(s) of cfg {model.cfg.name} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[0]})")
        raise ModelFormatError(f"{path.name}: the state dict does not fit the cfg: {'; '.join(parts)}")
    for k, v in own.items():
        if k in state and tuple(state[k].shape) != tuple(v.shape):
            raise ModelFormatError(
                f"{path.name}: {k} has shape {tuple(state[k].shape)}, cfg {model.cfg.name} expects {tuple(v.shape)}"
            )
    with torch.no_grad():
        for k, v in own.items():
            if k in state:
                v.copy_(state[k].to(v.dtype))
    model.weights_path = str(path)
    model.weights_sha256 = hashlib.sha256(data).hexdigest()
    epoch = ckpt.get("epoch") if isinstance(ckpt, dict) else None
    return {"epoch": epoch if isinstance(epoch, int) else None, "sha256": model.weights_sha256}


def save_checkpoint(model: DarknetModel, path: str | os.PathLike, *, epoch: int = -1) -> Path:
    """Write an ultralytics-YOLOv3-style checkpoint ``{"epoch", "best_fitness", "model"}`` atomically."""
    if model.fused:
        raise ModelFormatError("cannot save a fused model as an ultralytics checkpoint")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(
            {"epoch": epoch, "best_fitness": None, "training_results": None, "model": state, "optimizer": None}, tmp
        )
    return Path(path)


def load_model(
    cfg: str | os.PathLike | DarknetCfg,
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    bn_eps: float | None = None,
) -> DarknetModel:
    """Parse ``cfg``, build the model, load ``weights`` and move it to ``device``, in eval mode.

    Args:
        cfg: a cfg path (or a parsed :class:`DarknetCfg`).
        weights: ``*.weights`` (Darknet) or ``*.pt``/``*.pth`` (ultralytics YOLOv3 checkpoint); None
            gives seeded random weights (for tests).
        device: where the model lives; inference follows it.
        bn_eps: batch-norm epsilon; default :data:`DARKNET_BN_EPS` for Darknet weights and random
            weights, :data:`ULTRALYTICS_BN_EPS` for ``.pt`` checkpoints.

    Raises:
        ModelFormatError: a bad cfg, weights file or checkpoint, or an unknown weights suffix.
    """
    if not isinstance(cfg, DarknetCfg):
        cfg = parse_cfg(cfg)
    suffix = Path(weights).suffix.lower() if weights is not None else None
    if suffix not in (None, ".weights", ".pt", ".pth"):
        raise ModelFormatError(
            f"weights file {weights}: expected a Darknet .weights file or an ultralytics "
            f".pt/.pth checkpoint, got suffix {suffix!r}"
        )
    if bn_eps is None:
        bn_eps = ULTRALYTICS_BN_EPS if suffix in (".pt", ".pth") else DARKNET_BN_EPS
    model = build_model(cfg, bn_eps=bn_eps)
    if weights is None:
        pass
    elif suffix == ".weights":
        read_weights(model, weights)
    else:
        read_checkpoint(model, weights)
    return model.to(device).eval()


# --------------------------------------------------------------------------------------------------
# Letterbox
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LetterboxParams:
    """Per-image letterbox geometry, vectorised over I images (numpy).

    Attributes:
        scale_x, scale_y: (I,) float64, input pixels per image pixel (``nw / w``, ``nh / h``).
        pad_x, pad_y: (I,) int64, left and top padding, input pixels.
        new_w, new_h: (I,) int64, size of the resized image inside the canvas.
    """

    scale_x: np.ndarray
    scale_y: np.ndarray
    pad_x: np.ndarray
    pad_y: np.ndarray
    new_w: np.ndarray
    new_h: np.ndarray

    def to_input(self, boxes: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        """(G, 4) xyxy image pixels -> input pixels; ``index`` (G,) picks each box's image (default: row i)."""
        i = slice(None) if index is None else index
        s = np.stack([self.scale_x[i], self.scale_y[i], self.scale_x[i], self.scale_y[i]], -1)  # (G, 4)
        p = np.stack([self.pad_x[i], self.pad_y[i], self.pad_x[i], self.pad_y[i]], -1)  # (G, 4)
        return np.asarray(boxes, np.float64) * s + p

    def to_image(self, boxes: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        """(G, 4) xyxy input pixels -> image pixels (the inverse of :meth:`to_input`)."""
        i = slice(None) if index is None else index
        s = np.stack([self.scale_x[i], self.scale_y[i], self.scale_x[i], self.scale_y[i]], -1)  # (G, 4)
        p = np.stack([self.pad_x[i], self.pad_y[i], self.pad_x[i], self.pad_y[i]], -1)  # (G, 4)
        return (np.asarray(boxes, np.float64) - p) / s


def letterbox_scale(width, height, size) -> np.ndarray:
    """The one letterbox scale: input pixels per image pixel, ``size / max(width, height)``.

    Two variants use it (README, Conventions): sizes-only analyses (``kmeans``, ``overlap --size``)
    scale both sides by exactly this; the image letterbox (:class:`Letterbox`: ``predict`` and the
    audits) resizes to ``round(w * s) x round(h * s)`` whole pixels, so its per-axis scales are
    ``new_w / w`` and ``new_h / h`` (under half a pixel from ``s`` per side), and pads to centre.

    Args:
        width, height: (I,) image sizes in pixels (arrays or scalars).
        size: the network input side S, pixels (a scalar, or (I,) for multi-scale).

    Returns:
        (I,) float64 (``size / max(w, h)`` equals ``min(size / w, size / h)`` bit for bit).
    """
    w = np.asarray(width, np.float64)
    h = np.asarray(height, np.float64)
    return np.asarray(size, np.float64) / np.maximum(w, h)


@dataclass(frozen=True)
class Letterbox:
    """Darknet-style letterbox to ``size x size`` (see the module docstring).

    Attributes:
        size: S, the network input side in pixels. pad_value: grey level of the padding, 0..255.
    """

    size: int
    pad_value: int = 128

    def params(self, width, height) -> LetterboxParams:
        """Geometry for images of ``width`` x ``height`` pixels ((I,) arrays or scalars)."""
        w = np.atleast_1d(np.asarray(width, np.float64))
        h = np.atleast_1d(np.asarray(height, np.float64))
        s = letterbox_scale(w, h, self.size)
        nw = np.clip(np.round(w * s), 1, self.size).astype(np.int64)
        nh = np.clip(np.round(h * s), 1, self.size).astype(np.int64)
        return LetterboxParams(nw / w, nh / h, (self.size - nw) // 2, (self.size - nh) // 2, nw, nh)

    def apply(self, image) -> np.ndarray:
        """Letterbox one PIL image: (S, S, 3) uint8 RGB."""
        from PIL import Image

        image = image.convert("RGB")
        p = self.params(image.width, image.height)
        nw, nh, px, py = int(p.new_w[0]), int(p.new_h[0]), int(p.pad_x[0]), int(p.pad_y[0])
        if (nw, nh) != image.size:
            image = image.resize((nw, nh), Image.Resampling.BILINEAR)
        canvas = np.full((self.size, self.size, 3), self.pad_value, np.uint8)
        canvas[py : py + nh, px : px + nw] = np.asarray(image)
        return canvas

    def to_dict(self) -> dict:
        return {
            "mode": "letterbox",
            "size": self.size,
            "pad_value": self.pad_value,
            "interpolation": "bilinear",
            "resize": "round(w * min(S/w, S/h)) x round(h * min(S/w, S/h))",
            "offset": "((S - new_w) // 2, (S - new_h) // 2)",
            "scale": "x / 255, RGB",
        }
