"""Benchmark: anchor design, cocostat vs ultralytics' ``kmean_anchors`` and a darknet-style IoU k-means.

All three designers get the same boxes: the non-crowd, non-zero boxes of one dataset letterboxed to
``--size`` (default 416; each image's long side becomes 416), as :func:`cocostat.anchors.box_sizes`
gives them, and every anchor set is scored by :func:`cocostat.anchors.fitness` on those exact sizes.
Side by side in one run, on the same machine:

- **cocostat**: :func:`cocostat.anchors.design_anchors` (IoU k-means with k-means++ starts and
  restarts, then ``--gen`` evolution generations), timed from the box sizes to the checked result;
  also the whole ``cocostat.anchors.kmeans`` call (box sizes, design, figures) for reference.
- **ultralytics**: ``kmean_anchors(dataset, n=k, img_size=size, thr=4.0, gen=--gen, verbose=False)``
  from the ``yolov5`` package's ``yolov5/utils/autoanchor.py`` (the function YOLOv5's AutoAnchor
  runs: scipy k-means on whitened sizes with 30 restarts, then a genetic search on the ratio
  fitness). The ``yolov5`` package is NOT imported (its dependencies would pull a multi-GB CUDA
  torch and torchvision): install it with ``pip install --no-deps yolov5`` (or pass the wheel or the
  file with ``--yolov5``); this script then executes that one source file with light stand-ins for
  the five names it imports and does not use in ``kmean_anchors``' computation: ``tqdm`` (an
  iterator with a ``desc`` attribute), ``yaml`` (unused: the dataset is passed as an object),
  ``yolov5.utils.TryExcept`` (identity decorator, only on ``check_anchors``),
  ``yolov5.utils.general.LOGGER`` (a silent ``logging`` logger), ``TQDM_BAR_FORMAT`` and
  ``colorstr``. Its dataset argument is a stand-in object with the two attributes it reads:
  ``shapes`` (I, 2) image ``[w, h]`` and ``labels`` (one (n, 5) ``[class, x, y, w, h]`` array per
  image, normalised). Its global numpy/python RNGs are seeded with ``--seed`` for repeatability.
  It is timed with torch's default thread count and with one thread; the faster is the reference
  (``--ultralytics-threads N`` times one setting only).
- **darknet**: a plain darknet-style IoU k-means written here in numpy as Darknet's
  ``calc_anchors`` works: k distinct random boxes as the start (seeded here; Darknet is not),
  assignment by highest wh-IoU, mean width/height update, until no assignment changes.

``python -m benchmarks.bench_kmeans [--scale 1.0] [--like train2017] [--file PATH] [--gen 1000] [--device cuda]``
writes ``reports/bench_kmeans.md`` (machine, load average, fitness table, time ratios).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import platform
import random
import sys
import tempfile
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import torch

from cocostat.anchors import PRESETS, box_sizes, design_anchors, fitness, kmeans


# --------------------------------------------------------------------------------------------------
# ultralytics kmean_anchors, loaded from its source file with stand-ins for its imports
# --------------------------------------------------------------------------------------------------
def _autoanchor_source(spec: str | None) -> tuple[str, str]:
    """(source text, where it came from) of yolov5/utils/autoanchor.py."""
    inner = "yolov5/utils/autoanchor.py"
    if spec:
        path = Path(spec)
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as z:
                return z.read(inner).decode(), f"{path.name}:{inner}"
        return path.read_text(), str(path)
    try:
        dist = importlib.metadata.distribution("yolov5")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(
            "yolov5 is not installed: run `pip install --no-deps yolov5` or pass --yolov5 "
            "PATH (the wheel from `pip download --no-deps yolov5`, or autoanchor.py)"
        ) from None
    path = Path(dist.locate_file(inner))
    return path.read_text(), f"yolov5 {dist.version} ({path})"


class _Tqdm:
    """Stand-in for tqdm.tqdm: iterates, and accepts the ``desc`` kmean_anchors sets."""

    def __init__(self, iterable=None, **kwargs):
        self.iterable = iterable
        self.desc = ""

    def __iter__(self):
        return iter(self.iterable)


def load_kmean_anchors(spec: str | None = None):
    """``kmean_anchors`` from yolov5's autoanchor.py, executed with stand-ins for its imports."""
    source, where = _autoanchor_source(spec)
    stubs = {
        "tqdm": types.SimpleNamespace(tqdm=_Tqdm),
        "yaml": types.SimpleNamespace(safe_load=None),
        "yolov5": types.SimpleNamespace(),
        "yolov5.utils": types.SimpleNamespace(TryExcept=lambda msg="": lambda f: f),
        "yolov5.utils.general": types.SimpleNamespace(
            LOGGER=logging.getLogger("bench_kmeans.yolov5"), TQDM_BAR_FORMAT="", colorstr=lambda *a: a[-1]
        ),
    }
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)  # only while the module's top-level imports run
    try:
        mod = types.ModuleType("yolov5_autoanchor")
        exec(compile(source, where, "exec"), mod.__dict__)  # the baseline's own source file
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return mod.kmean_anchors, where


class _YoloDataset:
    """The two attributes kmean_anchors reads from a yolov5 LoadImagesAndLabels."""

    def __init__(self, ds, keep: np.ndarray):
        self.shapes = np.stack([ds.width, ds.height], axis=1).astype(np.float64)  # (I, 2) w, h
        bbox = ds.bbox[keep]
        img = ds.image_index[keep]
        wh_img = self.shapes[img]
        xywh = np.concatenate([(bbox[:, :2] + bbox[:, 2:] / 2) / wh_img, bbox[:, 2:] / wh_img], axis=1)
        rows = np.concatenate([ds.class_idx[keep][:, None].astype(np.float64), xywh], axis=1)  # (G, 5)
        counts = np.bincount(img, minlength=ds.num_images)
        self.labels = np.split(rows, np.cumsum(counts)[:-1])


# --------------------------------------------------------------------------------------------------
# darknet-style IoU k-means
# --------------------------------------------------------------------------------------------------
def darknet_kmeans(wh: np.ndarray, k: int, seed: int, max_iter: int = 1000) -> tuple[np.ndarray, int]:
    """Darknet ``calc_anchors``-style k-means: random boxes as start, 1 - IoU, mean update."""
    rng = np.random.default_rng(seed)
    centres = wh[rng.choice(wh.shape[0], size=k, replace=False)].copy()
    prev = None
    it = 0
    block = 1 << 17
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned after the loop
        assign = np.empty(wh.shape[0], dtype=np.int64)
        for lo in range(0, wh.shape[0], block):
            g = wh[lo : lo + block]
            inter = np.minimum(g[:, None, 0], centres[None, :, 0]) * np.minimum(g[:, None, 1], centres[None, :, 1])
            iou = inter / (g[:, None, 0] * g[:, None, 1] + centres[None, :, 0] * centres[None, :, 1] - inter)
            assign[lo : lo + block] = iou.argmax(axis=1)
        if prev is not None and np.array_equal(assign, prev):
            break
        prev = assign
        n = np.bincount(assign, minlength=k)
        for d in (0, 1):
            s = np.bincount(assign, weights=wh[:, d], minlength=k)
            centres[:, d] = np.where(n > 0, s / np.maximum(n, 1), centres[:, d])
    return centres[np.argsort(centres.prod(axis=1))], it


# --------------------------------------------------------------------------------------------------
def _load(args, tmp: Path):
    from cocostat.data import load_coco

    path = args.file
    if path is None:
        from benchmarks.synth import write_for_benchmark

        path = write_for_benchmark(tmp, like=args.like, scale=args.scale)
    ds = load_coco(path, cache=False)
    if args.file is None:
        path.unlink()
    return ds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--like", default="train2017")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--file", type=Path, help="benchmark this COCO file instead of a synthetic one")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("-k", type=int, default=9)
    ap.add_argument("--gen", type=int, default=1000, help="evolution generations (both evolvers)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="device of cocostat's search (cpu, cuda)")
    ap.add_argument("--yolov5", help="yolov5 wheel or autoanchor.py (default: the installed yolov5)")
    ap.add_argument("--skip-ultralytics", action="store_true")
    ap.add_argument(
        "--ultralytics-threads",
        type=int,
        default=None,
        help="time kmean_anchors with this torch thread count only (default: the default count "
        "and 1, keeping the faster)",
    )
    ap.add_argument("--report", type=Path, default=Path("reports/bench_kmeans.md"))
    args = ap.parse_args(argv)

    import warnings

    warnings.simplefilter("ignore")
    kmean_anchors, yolov5_where = (None, "skipped") if args.skip_ultralytics else load_kmean_anchors(args.yolov5)
    tmp = Path(tempfile.mkdtemp(prefix="cocostat-bench-"))
    ds = _load(args, tmp)
    load0 = os.getloadavg()
    sizes = box_sizes(ds, size=args.size, resize="letterbox")
    wh = sizes.wh
    print(f"{ds.name}: {wh.shape[0]:,} boxes at {args.size} px letterbox", file=sys.stderr)

    rows: dict[str, dict] = {}
    times: dict[str, float] = {}

    device = torch.device(args.device)
    design_anchors(wh[:2000], args.k, evolve=10, device=device)  # warm-up (torch kernels, CUDA context)
    t = time.perf_counter()
    d = design_anchors(wh, args.k, seed=args.seed, evolve=args.gen, device=device)
    times["cocostat"] = time.perf_counter() - t
    rows["cocostat"] = fitness(wh, d.wh)
    t = time.perf_counter()
    kmeans(ds, size=args.size, k=args.k, seed=args.seed, evolve=args.gen, device=device)
    times["cocostat kmeans() end to end"] = time.perf_counter() - t
    print(
        f"cocostat: {times['cocostat']:.2f} s, {d.points:,} search points, {d.iterations} k-means "
        f"iterations, {d.accepted} accepted moves",
        file=sys.stderr,
    )

    t = time.perf_counter()
    dk, dk_iter = darknet_kmeans(wh, args.k, args.seed)
    times["darknet k-means"] = time.perf_counter() - t
    rows["darknet k-means"] = fitness(wh, dk)
    print(f"darknet k-means: {times['darknet k-means']:.2f} s, {dk_iter} iterations", file=sys.stderr)

    ul_times = {}
    if kmean_anchors is not None:
        keep = ~ds.iscrowd & (ds.bbox[:, 2:] > 0).all(axis=1)
        yds = _YoloDataset(ds, keep)
        default_threads = torch.get_num_threads()
        thread_counts = (
            sorted({default_threads, 1}, reverse=True)
            if args.ultralytics_threads is None
            else [args.ultralytics_threads]
        )
        for threads in thread_counts:
            torch.set_num_threads(threads)
            np.random.seed(args.seed)
            random.seed(args.seed)
            t = time.perf_counter()
            ul = kmean_anchors(yds, n=args.k, img_size=args.size, thr=4.0, gen=args.gen, verbose=False)
            ul_times[threads] = time.perf_counter() - t
            print(f"ultralytics ({threads} thread(s)): {ul_times[threads]:.2f} s", file=sys.stderr)
        torch.set_num_threads(default_threads)
        times["ultralytics kmean_anchors"] = min(ul_times.values())
        rows["ultralytics kmean_anchors"] = fitness(wh, np.asarray(ul, dtype=np.float64))
        ul_anchors = np.asarray(ul, dtype=np.float64)
    for name in ("yolov3", "yolov3-tiny"):
        rows[f"preset {name}"] = fitness(wh, PRESETS[name].wh)
    load1 = os.getloadavg()

    # ---------------------------------------------------------------------------------------------
    def fmt_anchors(a):
        return ", ".join(f"{w:.0f}x{h:.0f}" for w, h in a)

    src = f"synthetic {args.like} x{args.scale:g} (benchmarks.synth, seed 0)" if args.file is None else str(args.file)
    lines = [
        "# kmeans benchmark: cocostat vs ultralytics kmean_anchors vs darknet-style IoU k-means",
        "",
        (
            f"Data: {src}, {ds.num_annotations:,} annotations, {wh.shape[0]:,} boxes used (non-crowd, non-zero), "
            f"letterboxed to {args.size} px; k = {args.k}; {args.gen} evolution generations for both evolvers; "
            f"seed {args.seed}."
        ),
        (
            f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads by default), numpy {np.__version__}; "
            f"cocostat search on {device}. Load average before/after: {load0[0]:.2f} / {load1[0]:.2f} "
            "(the machine is shared; timings are one run each, side by side)."
        ),
        f"ultralytics source: {yolov5_where}.",
        "",
        "## Fit (all scored by cocostat.anchors.fitness on the same boxes; wh-IoU threshold 0.225, ratio 4.0)",
        "",
        "| anchors | avg IoU | BPR (IoU > 0.225) | anchors > 0.225 / box | BPR (ratio < 4) | anchors < 4 / box"
        " | ultralytics fitness | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in rows.items():
        sec = f"{times[name]:.2f}" if name in times else "-"
        lines.append(
            f"| {name} | {m['avg_iou']:.4f} | {m['bpr_iou']:.4f} | {m['anchors_above_iou']:.3f} | "
            f"{m['bpr_ratio']:.4f} | {m['anchors_above_ratio']:.3f} | {m['fitness_ratio']:.4f} | {sec} |"
        )
    lines += ["", "## Time", "", "| designer | seconds | cocostat (design_anchors) is faster by |", "|---|---:|---:|"]
    for name, sec in times.items():
        ratio = "-" if name.startswith("cocostat") else f"{sec / times['cocostat']:.1f}x"
        lines.append(f"| {name} | {sec:.2f} | {ratio} |")
    if ul_times:
        lines.append("")
        lines.append(
            "ultralytics by torch thread count: "
            + ", ".join(f"{n} thread(s) {s:.2f} s" for n, s in sorted(ul_times.items()))
            + "."
        )
    lines += [
        "",
        "## Anchors (w x h, px at the network input)",
        "",
        (
            f"- cocostat: {fmt_anchors(d.wh)} (k-means start fitness {d.start_fitness:.4f}, after evolution "
            f"{d.fitness:.4f}; {d.points:,} search points from {d.distinct:,} distinct sizes; "
            f"{d.iterations} k-means iterations, {d.accepted} accepted moves)"
        ),
        f"- darknet k-means: {fmt_anchors(dk)} ({dk_iter} iterations)",
    ]
    if ul_times:
        lines.append(f"- ultralytics kmean_anchors: {fmt_anchors(ul_anchors)}")
    checks = []
    c = rows["cocostat"]
    for base in ("ultralytics kmean_anchors", "darknet k-means"):
        if base in rows:
            b = rows[base]
            checks.append(
                f"- vs {base}: avg IoU {c['avg_iou']:.4f} vs {b['avg_iou']:.4f} "
                f"({'higher' if c['avg_iou'] > b['avg_iou'] else 'NOT higher'}), BPR "
                f"{c['bpr_iou']:.4f} vs {b['bpr_iou']:.4f} "
                f"({'not lower' if c['bpr_iou'] >= b['bpr_iou'] else 'LOWER'}), time "
                f"{times['cocostat']:.2f} s vs {times[base]:.2f} s ({times[base] / times['cocostat']:.1f}x)"
            )
    lines += ["", "## Checks", "", *checks]
    text = "\n".join(lines) + "\n"
    print(text)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    from cocostat.atomic import write_text

    write_text(args.report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
