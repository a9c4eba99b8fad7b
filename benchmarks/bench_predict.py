"""Benchmark: ``cocostat predict`` at real scale, against the model alone and against OpenCV DNN.

Writes ``reports/bench_predict.md`` (CPU) or, with ``--gpu``, ``reports/bench_predict_gpu.md``::

    python -m benchmarks.bench_predict [--images 5000] [--yardstick-images 400] [--spp-images 8] [--rounds 2]
    python -m benchmarks.bench_predict --gpu [--images 5000]      # on a CUDA machine (benchmarks/gpu_predict.sh)

Images: the 80 real coco-tiny val2017 JPEGs cycled under new names (symlinks in a temporary folder,
with a generated COCO JSON whose annotations are the originals' under new ids), so the pipeline
decodes real JPEGs at any count. Sections of the CPU report:

1. **Scale**: yolov3-tiny (the real weights) end to end over ``--images`` images (JPEG files to a
   finished predictions folder, :func:`cocostat.predict.predict` in this process) against the
   forward-only images/s of the same model and batch in the same run (batch-norm-fused,
   channels-last forward + YOLO decoding over already letterboxed float input; timed before and
   after the end-to-end run, the mean taken), with every stage's ms per image and the ``Speed:``
   line. yolov3-spp (random weights; its cfg) the same way over ``--spp-images`` images.
2. **Batch size on the CPU**: end to end and forward-only at batch 1, 4 and 16 over
   ``--sweep-images`` images (the evidence for :func:`cocostat.predict.default_batch_size`).
3. **Yardstick**: ``python -m cocostat predict`` in a child process over ``--yardstick-images``
   images, process start to finished folder, against OpenCV DNN's bare batch-1 forward passes of the
   same yolov3-tiny over the same letterboxed images (letterboxing not timed on the OpenCV side), in
   interleaved rounds; also with ``OMP_WAIT_POLICY=PASSIVE`` and with the old default batch 16.
   Process start-up (imports, model load) is the child's wall time less predict's own total.
4. **Against OpenCV DNN end to end** on the 80 images (the comparison of the earlier report):
   detections with the same rule on both sides, COCO AP.

``--gpu`` (see ``benchmarks/gpu_predict.sh``): yolov3-spp and yolov3-tiny at 416, batch 1/32/64,
float32 and ``--half``, over ``--images`` images on CUDA, end to end, with the decode-only
throughput of the same loader and workers (:func:`cocostat.predict.image_loader`, no model) as the
bound, and the CPU-vs-CUDA agreement of the detections.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("COCOSTAT_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# The OpenCV baseline (also used by tests/test_predict.py)
# --------------------------------------------------------------------------------------------------
def opencv_net(cfg: str | Path, weights: str | Path):
    """``cv2.dnn.readNetFromDarknet`` on the CPU backend."""
    import cv2

    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def opencv_outputs(net, x: np.ndarray) -> list[np.ndarray]:
    """YOLO-layer outputs for (B, 3, S, S) float32 input in [0, 1]: per level (B, H*W*A, 5 + C), rows
    ordered (gy, gx, anchor), ``cx cy w h`` as fractions of S, objectness, then class scores already
    multiplied by objectness and zeroed under OpenCV's own threshold."""
    net.setInput(np.ascontiguousarray(x, np.float32))
    outs = net.forward(net.getUnconnectedOutLayersNames())
    return [o.reshape(x.shape[0], -1, o.shape[-1]) for o in outs]


def opencv_detections(
    net, dataset, letterbox, *, conf: float = 0.001, nms_iou: float = 0.6, max_det: int = 100
) -> list[dict]:
    """Detections (COCO results) of OpenCV DNN on every image of ``dataset``, one image per forward,
    with the same thresholds, NMS rule, mapping, clipping and rounding as :func:`cocostat.predict.predict`."""
    import cv2
    from PIL import Image

    cat_ids = dataset.categories["category_id"].to_numpy(np.int64)
    out: list[dict] = []
    size = letterbox.size
    for i in range(dataset.num_images):
        with Image.open(dataset.image_dir / str(dataset.file_name[i])) as im:
            im.load()
            arr = letterbox.apply(im)
            geo = letterbox.params(im.width, im.height)
        x = arr.transpose(2, 0, 1)[None].astype(np.float32) / 255
        rows = np.concatenate([o[0] for o in opencv_outputs(net, x)])  # (R, 5 + C)
        scores = rows[:, 5:]
        r, c = np.nonzero(scores > conf)
        if r.size == 0:
            continue
        s = scores[r, c]
        cxcywh = rows[r, :4] * size
        xywh = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, 2:]], 1)
        keep = np.asarray(
            cv2.dnn.NMSBoxesBatched(xywh.astype(np.float64), s.astype(np.float32), c.astype(np.int32), conf, nms_iou),
            dtype=np.int64,
        ).reshape(-1)
        keep = keep[np.argsort(-s[keep], kind="stable")][:max_det]
        xyxy = np.concatenate([xywh[keep, :2], xywh[keep, :2] + xywh[keep, 2:]], 1)
        box = geo.to_image(xyxy, np.zeros(len(keep), np.int64))
        w, h = float(dataset.width[i]), float(dataset.height[i])
        box = np.clip(box, 0, [w, h, w, h])
        ok = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
        box, cls, sc = box[ok], c[keep][ok], s[keep][ok]
        bb = np.round(np.concatenate([box[:, :2], box[:, 2:] - box[:, :2]], 1), 3)
        out += [
            {"image_id": int(dataset.image_id[i]), "category_id": int(cat_ids[k]), "bbox": b, "score": v}
            for k, b, v in zip(cls.tolist(), bb.tolist(), np.round(sc.astype(np.float64), 5).tolist(), strict=True)
        ]
    return out


def coco_ap(annotation_file: str | Path, detections: list[dict], image_ids) -> tuple[float, float]:
    """(AP, AP50) of ``detections`` by pycocotools on ``image_ids``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotation_file))
        ev = COCOeval(gt, gt.loadRes(detections), "bbox")
        ev.params.imgIds = [int(i) for i in image_ids]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------
def cycled_coco(folder: Path, n: int, split: str = "val2017") -> tuple[Path, str]:
    """A COCO root of ``n`` images: coco-tiny ``split``'s real JPEGs cycled under new names.

    Writes ``folder/annotations/instances_cycledN.json`` (image k is original image k mod 80 with id
    k + 1 and file ``k:08d.jpg``; its annotations are the original's with new ids) and the symlinks
    ``folder/cycledN/k:08d.jpg``. Returns (root, split name) for ``load_dataset(name, root=root)``
    and ``cocostat predict --root ROOT NAME``.
    """
    base = json.loads((DATA / f"coco-tiny/annotations/instances_{split}.json").read_text())
    name = f"cycled{n}"
    img_dir = folder / name
    img_dir.mkdir(parents=True, exist_ok=True)
    by_image: dict[int, list] = {}
    for a in base["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images, anns = [], []
    for k in range(n):
        src = base["images"][k % len(base["images"])]
        file = f"{k:08d}.jpg"
        link = img_dir / file
        if not link.exists():
            link.symlink_to(DATA / "coco-tiny" / split / src["file_name"])
        images.append({**src, "id": k + 1, "file_name": file})
        anns += [{**a, "id": len(anns) + j + 1, "image_id": k + 1} for j, a in enumerate(by_image.get(src["id"], []))]
    (folder / "annotations").mkdir(exist_ok=True)
    coco = {"images": images, "annotations": anns, "categories": base["categories"]}
    (folder / "annotations" / f"instances_{name}.json").write_text(json.dumps(coco))
    return folder, name


def letterboxed(ds, size: int, n: int):
    """(n, S, S, 3) uint8 torch tensor: the dataset's first ``min(n, 80)`` distinct images letterboxed."""
    import torch
    from PIL import Image

    from cocostat.models import Letterbox

    lb = Letterbox(size)
    imgs = []
    for f in ds.file_name[: min(n, 80)]:
        with Image.open(ds.image_dir / str(f)) as im:
            imgs.append(lb.apply(im))
    return torch.from_numpy(np.stack(imgs))


def fused(model, device, half: bool = False):
    """The runner :func:`cocostat.predict.predict` uses: batch norm folded, channels-last, eval."""
    import torch

    runner = model.fuse().to(device)
    runner = runner.half() if half else runner.float()
    return runner.to(memory_format=torch.channels_last).eval()


def forward_only(runner, imgs, batch: int, images: int, size: int, device, half: bool = False) -> float:
    """Images/s of the forward pass + YOLO decoding alone, over ``images`` images in batches of ``batch``
    cycled from ``imgs`` ((N, S, S, 3) uint8), already float in [0, 1] on ``device``."""
    import torch

    xs = []
    for k in range(0, max(batch, len(imgs) - len(imgs) % batch), batch):
        idx = torch.arange(k, k + batch) % len(imgs)
        x = imgs[idx].to(device).permute(0, 3, 1, 2)
        xs.append((x.half() if half else x.float()).mul_(1 / 255))
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    steps = max(1, images // batch)
    with torch.inference_mode():
        runner.decode(runner(xs[0]), size)  # warm-up
        sync()
        t = time.perf_counter()
        for i in range(steps):
            runner.decode(runner(xs[i % len(xs)]), size)
        sync()
    return steps * batch / (time.perf_counter() - t)


def _stage_ms(res) -> dict[str, float]:
    return {k: 1000 * v / max(1, res.images) for k, v in res.timings.items()}


def _load_avg() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def _machine() -> str:
    import torch

    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads)"
    )


def _spp_model(device="cpu"):
    """yolov3-spp from its Darknet cfg with random weights (seeded), its heads set as an untrained
    detector's are (ultralytics' prior biases: objectness ``log(8 / (640 / stride)^2)``, classes
    ``log(0.6 / (C - 0.99))``; head weights x 0.1).

    With plain random heads every objectness and class probability is near 0.5, so all 10,647 x 80
    (box, class) pairs of an image pass conf 0.001 and NMS compares every pair of boxes within each
    (image, class): billions of IoUs per image, which is not what a model does. With the prior
    biases almost nothing passes, so these rows time the network; a trained model's NMS costs
    what yolov3-tiny's rows show (a few ms per image).
    """
    import math

    import torch

    from cocostat.models import load_model

    torch.manual_seed(0)
    model = load_model(DATA / "cfg/yolov3-spp.cfg", None)
    with torch.no_grad():
        for lv, stride in zip(model.levels, model.check_size(416), strict=True):
            conv = model.module_list[lv.layer - 1].Conv2d
            bias = conv.bias.view(len(lv.mask), -1)  # (A_l, 5 + C)
            bias[:, 4] = math.log(8 / (640 / stride) ** 2)
            bias[:, 5:] = math.log(0.6 / (model.num_classes - 0.99))
            conv.weight.mul_(0.1)
    return model.to(device)


def _tiny_model(device="cpu"):
    from cocostat.models import load_model

    return load_model(DATA / "models/yolov3-tiny.cfg", DATA / "models/yolov3-tiny.weights", device=device)


def _subset(ds, n: int):
    return _first_images(ds, n)


# --------------------------------------------------------------------------------------------------
# 1. scale, 2. batch sweep (in this process)
# --------------------------------------------------------------------------------------------------
def e2e_vs_forward(ds, model, batch: int, size: int, work: Path, fwd_images: int, device="cpu", half=False) -> dict:
    """One end-to-end run (into a fresh folder) between two forward-only timings of the same model and batch."""
    from cocostat.predict import predict

    runner = fused(model, device, half)
    imgs = letterboxed(ds, size, 80)
    f0 = forward_only(runner, imgs, batch, fwd_images, size, device, half)
    out = work / "pred"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    res = predict(ds, model, size=size, batch_size=batch, device=device, half=half, progress=False, out_dir=out)
    wall = time.perf_counter() - t
    f1 = forward_only(runner, imgs, batch, fwd_images, size, device, half)
    shutil.rmtree(out, ignore_errors=True)
    fwd = (f0 + f1) / 2
    e2e = res.images / wall
    return {
        "images": res.images,
        "batch": batch,
        "e2e": e2e,
        "fwd": fwd,
        "fwd_runs": (f0, f1),
        "ratio": e2e / fwd,
        "stages": _stage_ms(res),
        "speed": res.speed["line"] if res.speed else "-",
        "workers": res.settings.workers if res.settings else None,
        "detections": res.manifest["detections"]["count"],
    }


def _stage_table(rows: list[tuple[str, dict]], digits: int = 1, bound: bool = False) -> list[str]:
    """Markdown rows: images/s end to end and forward-only, their ratio, every stage's ms per image
    (:data:`cocostat.predict.STAGES`); with ``bound``, the decode-only images/s and the share of it reached."""
    from cocostat.predict import STAGES

    extra = " decode-only images/s | end to end / decode-only |" if bound else ""
    lines = [
        "| run | images | batch | end to end images/s | forward-only images/s | ratio | "
        + " | ".join(STAGES)
        + " | total |"
        + extra,
        "|---|---:|---:|---:|---:|---:|" + "---:|" * (len(STAGES) + 1 + 2 * bound),
    ]
    for name, r in rows:
        st = r["stages"]
        lines.append(
            f"| {name} | {r['images']} | {r['batch']} | {r['e2e']:.1f} | {r['fwd']:.1f} | {r['ratio']:.2f}x | "
            + " | ".join(f"{st.get(k, 0.0):.{digits}f}" for k in STAGES)
            + f" | {st['total']:.{digits}f} |"
            + (f" {r['bound']:.0f} | {r['e2e'] / r['bound']:.2f}x |" if bound else "")
        )
    return lines


def scale_section(args, work: Path) -> list[str]:
    import torch

    from cocostat.data import load_dataset
    from cocostat.predict import default_batch_size

    root, name = cycled_coco(work / "scale", args.images)
    ds = load_dataset(name, root=root, cache=False)
    batch = args.batch_size or default_batch_size(torch.device("cpu"))
    load0 = _load_avg()
    tiny = e2e_vs_forward(ds, _tiny_model(), batch, args.size, work, args.fwd_images)
    print(f"tiny {tiny['images']}: {tiny['e2e']:.1f} vs {tiny['fwd']:.1f} img/s", file=sys.stderr)
    spp_ds = _subset(ds, args.spp_images)
    spp = e2e_vs_forward(spp_ds, _spp_model(), min(batch, args.spp_images), args.size, work, args.spp_images)
    print(f"spp {spp['images']}: {spp['e2e']:.2f} vs {spp['fwd']:.2f} img/s", file=sys.stderr)
    load1 = _load_avg()
    lines = [
        f"## End to end at scale vs the model alone (CPU, {args.size} x {args.size})",
        "",
        f"{args.images} images (coco-tiny val2017's 80 JPEGs cycled under new names), "
        f"{ds.num_annotations} annotations; end to end = JPEG files to a finished predictions folder "
        f"({tiny['workers']} decoding worker process(es), the default); forward-only = the same fused model "
        f"and batch on already letterboxed float input, timed before and after the end-to-end run "
        f"({tiny['fwd_runs'][0]:.1f} and {tiny['fwd_runs'][1]:.1f} images/s for yolov3-tiny). Stage columns: "
        f"ms per image (definitions: docs/commands/predict.md). Load average (1/5/15 min) {load0} at the "
        f"start, {load1} at the end.",
        "",
        *_stage_table([("yolov3-tiny (real weights)", tiny), ("yolov3-spp (random weights)", spp)]),
        "",
        f"- yolov3-tiny: `{tiny['speed']}` ({tiny['detections']} detections)",
        f"- yolov3-spp: `{spp['speed']}` ({spp['detections']} detections: random weights with an untrained "
        f"detector's prior head biases, see `_spp_model`) — only {spp['images']} images: on these 2 shared "
        f"cores yolov3-spp runs at about {spp['fwd']:.1f} images/s (forward only), so 5,000 images would take "
        f"{5000 / spp['fwd'] / 60:.0f} minutes.",
        "",
        f"End to end / forward-only for yolov3-tiny: **{tiny['ratio']:.2f}x** (target 0.8x; decoding shares "
        f"the two cores with the forward pass, so its CPU time is lost to the model).",
    ]
    return lines


def sweep_section(args, work: Path) -> list[str]:
    from cocostat.data import load_dataset

    root, name = cycled_coco(work / "sweep", args.sweep_images)
    ds = load_dataset(name, root=root, cache=False)
    model = _tiny_model()
    rows = []
    load0 = _load_avg()
    for b in (1, 4, 16):
        r = e2e_vs_forward(ds, model, b, args.size, work, max(64, args.fwd_images // 2))
        print(f"batch {b}: {r['e2e']:.1f} vs {r['fwd']:.1f} img/s", file=sys.stderr)
        rows.append((f"yolov3-tiny, batch {b}", r))
    return [
        f"## Batch size on the CPU ({args.sweep_images} images, yolov3-tiny)",
        "",
        f"Load average {load0} at the start, {_load_avg()} at the end.",
        "",
        *_stage_table(rows),
    ]


# --------------------------------------------------------------------------------------------------
# 3. the yardstick: a cocostat process against OpenCV's bare batch-1 forward passes
# --------------------------------------------------------------------------------------------------
def _cli_run(root: Path, name: str, out: Path, env: dict, extra: list[str]) -> tuple[float, dict]:
    """``python -m cocostat predict`` in a child process: (wall seconds from start to exit, its JSON summary)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "cocostat", "predict", "--root", str(root), name,
        "--cfg", str(DATA / "models/yolov3-tiny.cfg"), "--weights", str(DATA / "models/yolov3-tiny.weights"),
        "-o", str(out), "--no-progress", "--no-cache", "--format", "json", *extra,
    ]  # fmt: skip
    t = time.perf_counter()
    cwd = Path(env.get("PYTHONPATH") or REPO)  # python -m finds the package in the working folder first
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not (out / "manifest.json").is_file():
        raise RuntimeError(f"cocostat predict failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout)


def yardstick_section(args, work: Path) -> list[str]:
    import cv2

    from cocostat.data import load_dataset

    root, name = cycled_coco(work / "yardstick", args.yardstick_images)
    ds = load_dataset(name, root=root, cache=False)
    net = opencv_net(DATA / "models/yolov3-tiny.cfg", DATA / "models/yolov3-tiny.weights")
    x80 = letterboxed(ds, args.size, 80).permute(0, 3, 1, 2).float().div(255).numpy()  # (80, 3, S, S)
    n = ds.num_images
    base_env = {**os.environ, "PYTHONPATH": str(REPO)}
    base_env.pop("OMP_WAIT_POLICY", None)  # as a user's shell: the CLI decides
    variants = {
        "this branch, defaults": (base_env, []),
        "this branch, OMP_WAIT_POLICY= (OpenMP's spin-wait default)": ({**base_env, "OMP_WAIT_POLICY": ""}, []),
    }
    if args.before and Path(args.before, "cocostat").is_dir():  # the code before this change, its defaults
        variants["before (" + args.before + ", batch 16, spin-wait)"] = ({**base_env, "PYTHONPATH": args.before}, [])
    if args.no_spin_variant:
        del variants["this branch, OMP_WAIT_POLICY= (OpenMP's spin-wait default)"]
    walls: dict[str, list[float]] = {k: [] for k in [*variants, "opencv"]}
    startup: dict[str, list[float]] = {k: [] for k in variants}
    summaries: dict[str, dict] = {}
    load0 = _load_avg()
    opencv_outputs(net, x80[:1])  # warm-up
    for r in range(args.rounds):
        for k, (env, extra) in variants.items():
            wall, summary = _cli_run(root, name, work / "yardstick-out", env, extra)
            walls[k].append(wall)
            startup[k].append(wall - summary["seconds"])
            summaries[k] = summary
        t = time.perf_counter()
        for i in range(n):
            opencv_outputs(net, x80[i % len(x80)][None])
        walls["opencv"].append(time.perf_counter() - t)
        print(f"yardstick round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in walls.items()), file=sys.stderr)
    load1 = _load_avg()
    med = {k: statistics.median(v) for k, v in walls.items()}
    lines = [
        f"## Yardstick: `cocostat predict` as a process vs OpenCV DNN's bare forward passes ({n} images)",
        "",
        f"cocostat: `python -m cocostat predict` over {n} images (coco-tiny val2017 cycled), yolov3-tiny at "
        f"{args.size}, timed from process start to exit with the folder finished. OpenCV DNN "
        f"{cv2.__version__} ({cv2.getNumThreads()} threads): `net.forward` at batch 1 over the same "
        f"{n} letterboxed images, letterboxed beforehand (not timed). {args.rounds} interleaved rounds, "
        f"medians; load average {load0} at the start, {load1} at the end.",
        "",
        "| run | seconds (median) | rounds | vs OpenCV | start-up s (imports, model load) | predict's own s "
        "| Speed line |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for k in variants:
        s = summaries[k]
        lines.append(
            f"| cocostat, {k} | {med[k]:.1f} | {', '.join(f'{v:.1f}' for v in walls[k])} | "
            f"{med[k] / med['opencv']:.2f}x | {statistics.median(startup[k]):.1f} | {s['seconds']:.1f} | "
            f"`{(s.get('speed') or {}).get('line', '-')}` |"
        )
    stage_lines = [
        f"- {k}: "
        + ", ".join(
            f"{st} {1000 * v / max(1, summaries[k]['images_processed']):.1f}"
            for st, v in summaries[k]["timings"].items()
        )
        for k in variants
    ]
    lines.append(
        f"| OpenCV DNN, batch-1 forward only | {med['opencv']:.1f} | "
        f"{', '.join(f'{v:.1f}' for v in walls['opencv'])} | 1.00x | | | |"
    )
    first = next(iter(variants))
    lines += [
        "",
        f"Ratio at the default settings: **{med[first] / med['opencv']:.2f}x** (target at most 1.4x).",
        "",
        "Stages of the last round, ms per image (the code before this change had fewer stages: its "
        "`inference` is forward + decode + copy):",
        "",
        *stage_lines,
    ]
    return lines


# --------------------------------------------------------------------------------------------------
# 4. against OpenCV DNN end to end (80 images)
# --------------------------------------------------------------------------------------------------
def _time(fn, repeat: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def _inputs(args):
    """The real yolov3-tiny cfg and weights, and the first ``--scale`` share of coco-tiny val2017."""
    from cocostat.data import load_dataset

    full = load_dataset("val2017", root=DATA / "coco-tiny")
    ds = _first_images(full, max(1, min(full.num_images, round(full.num_images * args.scale))))
    return DATA / "models/yolov3-tiny.cfg", DATA / "models/yolov3-tiny.weights", ds


def _model_only(model, net, ds, size: int, batches, rounds: int) -> dict[int, tuple[float, float]]:
    """Best-of-rounds seconds per image of torch and of OpenCV on the same letterboxed input, per batch."""
    import torch

    xb = letterboxed(ds, size, max(batches)).permute(0, 3, 1, 2).float() / 255
    runner = fused(model, "cpu")
    fwd = {}
    for b in batches:
        x = xb[:b].contiguous(memory_format=torch.channels_last)
        xn = xb[:b].contiguous().numpy()
        tt, tc = [], []
        for _ in range(rounds):
            with torch.inference_mode():
                tt.append(_time(lambda x=x: runner.decode(runner(x), size), max(1, 16 // b)) / b)
            if net is not None:
                tc.append(_time(lambda xn=xn: opencv_outputs(net, xn), max(1, 16 // b)) / b)
        fwd[b] = (min(tt), min(tc) if tc else float("nan"))
    return fwd


def opencv_section(args) -> list[str]:
    """cocostat end to end (in this process and with OMP_WAIT_POLICY=PASSIVE in a child) vs OpenCV DNN."""
    import cv2
    import torch

    from cocostat.models import Letterbox, load_model
    from cocostat.predict import default_batch_size, predict

    cfg, weights, ds = _inputs(args)
    n = ds.num_images
    batch = args.batch_size or default_batch_size(torch.device("cpu"))
    model = load_model(cfg, weights, device="cpu")
    net = opencv_net(cfg, weights)
    lb = Letterbox(args.size)
    load0 = _load_avg()
    predict(_first_images(ds, 2), model, size=args.size, batch_size=2, progress=False)  # warm-up

    runs: dict[str, list[float]] = {"cocostat": [], "opencv": [], "passive": []}
    shares, stages, det_c, det_o, fwd_passive = [], [], None, None, []
    # the child runs under the other wait policy than this process (which has the CLI's PASSIVE unless told)
    here_policy = os.environ.get("OMP_WAIT_POLICY") or "OpenMP's default (spin-wait)"
    other = "" if os.environ.get("OMP_WAIT_POLICY") == "PASSIVE" else "PASSIVE"
    other_policy = other or "OpenMP's default (spin-wait)"
    env = {**os.environ, "OMP_WAIT_POLICY": other, "PYTHONPATH": str(REPO)}
    child_cmd = [sys.executable, "-m", "benchmarks.bench_predict", "--child", "--scale", str(args.scale)]
    child_cmd += ["--size", str(args.size), "--batch-size", str(batch)]
    for r in range(args.rounds):
        child = subprocess.run(child_cmd, capture_output=True, text=True, env=env, check=True, cwd=REPO)
        got = json.loads(child.stdout.strip().splitlines()[-1])
        runs["passive"].append(got["seconds"])
        fwd_passive.append(got["fwd"])
        t = time.perf_counter()
        res = predict(ds, model, size=args.size, batch_size=batch, progress=False)
        runs["cocostat"].append(time.perf_counter() - t)
        shares.append(res.timings["candidates"] / (res.timings["forward"] + res.timings["decode"]))
        stages.append(res.timings)
        det_c = res.detections
        t = time.perf_counter()
        det_o = opencv_detections(net, ds, lb)
        runs["opencv"].append(time.perf_counter() - t)
        print(
            f"round {r + 1}: cocostat {n / runs['cocostat'][-1]:.1f} img/s, "
            f"(OMP_WAIT_POLICY={other_policy}: {n / runs['passive'][-1]:.1f}), "
            f"opencv {n / runs['opencv'][-1]:.1f} img/s",
            file=sys.stderr,
        )
    fwd = _model_only(model, net, ds, args.size, sorted({1, batch, 16}), args.rounds)
    load1 = _load_avg()
    ap_c = coco_ap(ds.path, det_c or [], ds.image_id)
    ap_o = coco_ap(ds.path, det_o or [], ds.image_id)
    med = {k: statistics.median(v) for k, v in runs.items()}
    best = {k: min(v) for k, v in runs.items()}
    lines = [
        f"## Against OpenCV DNN end to end ({n} images)",
        "",
        (
            f"The first {n} images of coco-tiny val2017, letterboxed to {args.size}; cocostat batch size {batch}, "
            f"default workers, no folder written; OpenCV DNN {cv2.__version__} ({cv2.getNumThreads()} threads), one "
            f"image per forward, decoding in the same process, as a user's loop does; conf 0.001, NMS IoU 0.6, "
            f"100 detections per image on both sides. Load average {load0} at the start, {load1} at the end "
            f"(rounds interleaved)."
        ),
        "",
        "| pipeline | images/s (median of rounds) | images/s (best round) | time vs OpenCV (median) |",
        "|---|---:|---:|---:|",
    ]
    names = {
        "cocostat": f"cocostat, OMP_WAIT_POLICY={here_policy}",
        "passive": f"cocostat, OMP_WAIT_POLICY={other_policy} (a child process)",
        "opencv": "OpenCV DNN",
    }
    for k in ("cocostat", "passive", "opencv"):
        lines.append(f"| {names[k]} | {n / med[k]:.1f} | {n / best[k]:.1f} | {med[k] / med['opencv']:.2f}x |")
    lines += [
        "",
        "cocostat's stages (median ms per image): "
        + ", ".join(f"{k} {1000 * statistics.median(t[k] for t in stages) / n:.1f}" for k in stages[0])
        + ". `detections` thresholds at conf 0.001 (hundreds of boxes per image, where OpenCV keeps only "
        "scores above 0.2) and runs NMS.",
        "",
        "Model only (same letterboxed input, forward + YOLO decoding; best of rounds):",
        "",
        f"| batch | torch ms/image ({here_policy}) | torch ms/image ({other_policy}) | OpenCV ms/image "
        "| torch time vs OpenCV |",
        "|---:|---:|---:|---:|---:|",
    ]
    for b, (tt, tc) in fwd.items():
        tp = min(f[str(b)] for f in fwd_passive)
        lines.append(f"| {b} | {tt * 1000:.1f} | {tp * 1000:.1f} | {tc * 1000:.1f} | {tt / tc:.2f}x |")
    lines += [
        "",
        f"- candidate extraction: {100 * statistics.median(shares):.2f}% of cocostat's inference time "
        f"(forward + decode; median over rounds; target < 5%)",
        f"- COCO AP / AP50 on these {n} images: cocostat {ap_c[0]:.4f} / {ap_c[1]:.4f}, OpenCV DNN "
        f"{ap_o[0]:.4f} / {ap_o[1]:.4f} ({len(det_c or [])} and {len(det_o or [])} detections; OpenCV zeroes "
        f"class scores under its own 0.2 threshold)",
    ]
    return lines


def _child(args) -> dict:
    """End-to-end seconds and model-only seconds per image in this process (started with the other wait policy)."""
    from cocostat.predict import predict

    ds = _inputs(args)[2]
    model = _tiny_model()
    predict(_first_images(ds, 2), model, size=args.size, batch_size=2, progress=False)  # warm-up
    t = time.perf_counter()
    predict(ds, model, size=args.size, batch_size=args.batch_size, progress=False)
    seconds = time.perf_counter() - t
    fwd = _model_only(model, None, ds, args.size, sorted({1, args.batch_size, 16}), 1)
    return {"seconds": seconds, "fwd": {str(b): v[0] for b, v in fwd.items()}}


def _first_images(ds, n: int):
    """The dataset restricted to its first ``n`` images (and their annotations)."""
    from dataclasses import replace

    if n >= ds.num_images:
        return ds
    end = int(ds.offsets[n])
    cols = {
        k: getattr(ds, k)[:end]
        for k in ("ann_id", "image_index", "category_id", "class_idx", "bbox", "area", "iscrowd")
    }
    return replace(
        ds,
        image_id=ds.image_id[:n],
        file_name=ds.file_name[:n],
        width=ds.width[:n],
        height=ds.height[:n],
        offsets=ds.offsets[: n + 1],
        **cols,
    )


# --------------------------------------------------------------------------------------------------
# GPU matrix
# --------------------------------------------------------------------------------------------------
def decode_only(ds, size: int, batch: int, workers: int, device) -> float:
    """Images/s of the loader alone (the same :func:`cocostat.predict.image_loader` and workers predict
    uses, pinned memory on CUDA, no model): the bound the end-to-end rate cannot pass."""
    from cocostat.models import Letterbox
    from cocostat.predict import image_loader

    paths = [str(ds.image_dir / str(f)) for f in ds.file_name]
    batches = [list(range(k, min(k + batch, len(paths)))) for k in range(0, len(paths), batch)]
    t = time.perf_counter()
    n = 0
    for idx, _imgs, _wh, _err in image_loader(paths, Letterbox(size), batches, workers, device):
        n += len(idx)
    return n / (time.perf_counter() - t)


def _agreement(ds, device: str) -> str:
    """Largest CPU float32 vs CUDA float32 difference of yolov3-tiny's detections on the first 16 images."""
    from cocostat.predict import predict

    sub = _first_images(ds, 16)
    a = predict(sub, _tiny_model("cpu"), progress=False, batch_size=16).detections
    b = predict(sub, _tiny_model(device), progress=False, batch_size=16).detections
    if len(a) != len(b):
        return f"detection counts differ: {len(a)} on the CPU, {len(b)} on CUDA"
    box = max(
        (max(abs(p - q) for p, q in zip(x["bbox"], y["bbox"], strict=True)) for x, y in zip(a, b, strict=True)),
        default=0.0,
    )
    score = max((abs(x["score"] - y["score"]) for x, y in zip(a, b, strict=True)), default=0.0)
    same = all(
        x["category_id"] == y["category_id"] and x["image_id"] == y["image_id"] for x, y in zip(a, b, strict=True)
    )
    return (
        f"{len(a)} detections on both; largest box difference {box:.2e} px (target 1e-3), largest score "
        f"difference {score:.2e} (target 1e-4); same images and classes in the same order: {same}"
    )


def gpu_main(args) -> int:
    """The CUDA matrix: yolov3-spp and yolov3-tiny x batch 1/32/64 x float32/--half, end to end."""
    import torch

    from cocostat.data import load_dataset
    from cocostat.predict import default_workers

    device = args.device
    work = Path(tempfile.mkdtemp(prefix="bench-predict-gpu-"))
    try:
        root, name = cycled_coco(work, args.images)
        ds = load_dataset(name, root=root, cache=False)
        dev = torch.device(device)
        workers = default_workers(dev)
        gpu_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"no GPU ({device})"
        load0 = _load_avg()
        bound = {b: decode_only(ds, args.size, b, workers, dev) for b in args.gpu_batches}
        print(f"decode-only: {bound}", file=sys.stderr)
        rows = []
        for model_name, make in (("yolov3-spp (random weights)", _spp_model), ("yolov3-tiny", _tiny_model)):
            model = make(device)
            for half in (False, True) if dev.type == "cuda" else (False,):
                for b in args.gpu_batches:
                    r = e2e_vs_forward(
                        ds, model, b, args.size, work, max(args.fwd_images, 16 * b), device=device, half=half
                    )
                    r["bound"] = bound[b]
                    rows.append((f"{model_name}, {'--half' if half else 'float32'}", r))
                    print(f"{rows[-1][0]} batch {b}: {r['e2e']:.0f} img/s, {r['speed']}", file=sys.stderr)
        agree = _agreement(ds, device) if dev.type == "cuda" else "not measured (no CUDA)"
        load1 = _load_avg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "# Predict benchmark on a GPU machine",
        "",
        f"{args.images} images (coco-tiny val2017's 80 real JPEGs cycled under new names), {args.size} x "
        f"{args.size}, end to end = JPEG files to a finished predictions folder. Device: {gpu_name}; "
        f"{_machine()}; {workers} decoding workers (the default). Load average {load0} at the start, {load1} "
        f"at the end. decode-only = the same loader and workers without the model (the bound when JPEG "
        f"decoding is the limit). Stage columns: ms per image.",
        "",
        *_stage_table(rows, digits=2, bound=True),
    ]
    lines += ["", "Speed lines:", ""] + [f"- {n_}, batch {r['batch']}: `{r['speed']}`" for n_, r in rows]
    lines += ["", f"CPU float32 vs CUDA float32 (yolov3-tiny, 16 images): {agree}."]
    text = "\n".join(lines) + "\n"
    print(text)
    from cocostat.atomic import write_text

    write_text(args.report.with_name("bench_predict_gpu.md"), text)
    return 0


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=5000, help="images of the scale run (and of --gpu)")
    ap.add_argument("--spp-images", type=int, default=8, help="images of the yolov3-spp CPU run")
    ap.add_argument("--sweep-images", type=int, default=400, help="images per batch size of the CPU sweep")
    ap.add_argument("--yardstick-images", type=int, default=400)
    ap.add_argument("--fwd-images", type=int, default=320, help="images per forward-only timing")
    ap.add_argument(
        "--scale", type=float, default=1.0, help="share of every image count (of the 80 images in the OpenCV section)"
    )
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--batch-size", type=int, default=None, help="default: predict's default for the device")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sections", default="yardstick,scale,sweep,opencv", help="CPU sections to run, in order")
    ap.add_argument("--report", type=Path, default=REPO / "reports/bench_predict.md")
    ap.add_argument(
        "--gpu", "--gpu-only", action="store_true", help="the CUDA matrix instead (reports/bench_predict_gpu.md)"
    )
    ap.add_argument("--device", default="cuda", help="device of --gpu (cpu only to try the script out)")
    ap.add_argument("--gpu-batches", default="1,32,64", type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument(
        "--before", default="", help="a checkout of the code before (e.g. /work/main): its CLI joins the yardstick"
    )
    ap.add_argument("--no-spin-variant", action="store_true", help="yardstick without the spin-wait run")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    if args.scale < 1:  # a quick run (benchmarks.run_all --scale 0.1): fewer images everywhere
        for k in ("images", "sweep_images", "yardstick_images", "fwd_images"):
            setattr(args, k, max(16, round(getattr(args, k) * args.scale)))
    if args.gpu:
        return gpu_main(args)
    # as `cocostat predict` does on the CPU (cocostat.cli._passive_omp_wait), before torch is imported
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from cocostat.atomic import write_text

    sections = args.sections.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    lines = [
        "# Predict benchmark: cocostat at scale, against the model alone and against OpenCV DNN (CPU)",
        "",
        f"Machine: {_machine()}; a shared 2-core machine (other programs run beside it, so compare within "
        "a table: rows of one table run in the same process one after another, or interleaved). In-process "
        f"runs use OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')!r}, as the CLI sets it. "
        "`python -m benchmarks.bench_predict` wrote this page.",
    ]
    try:
        runs = {
            "scale": scale_section,
            "sweep": sweep_section,
            "yardstick": yardstick_section,
            "opencv": lambda a, w: opencv_section(a),
        }
        for name in sections:
            lines += ["", *runs[name](args, work)]
            print("\n".join(lines), file=sys.stderr)
            write_text(args.report, "\n".join(lines) + "\n")  # what is measured so far
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines += ["", "No CUDA device on this machine: GPU figures in bench_predict_gpu.md (`benchmarks/gpu_predict.sh`)."]
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
