"""Benchmark: ``cocostat predict`` (torch) against OpenCV DNN running the same Darknet files on the CPU.

Both sides read the same JPEG files, letterbox them the same way (:class:`cocostat.models.Letterbox`,
pillow) and apply the same detection rule (score > conf, class-aware NMS at IoU > nms_iou, at most
max_det per image), side by side in one run, in interleaved rounds (the machine is shared, so the
median and the best round are both reported):

- cocostat: :func:`cocostat.predict.predict` end to end (decoding in a worker process, batched
  inference, candidate extraction, NMS), without writing a folder;
- OpenCV: ``cv2.dnn.readNetFromDarknet``, one image per ``forward`` (decoding in the same process,
  as a user's loop does), ``cv2.dnn.NMSBoxesBatched``;
- model only: torch (batch-norm fused, channels-last) and OpenCV forward passes on the same
  pre-letterboxed input, at batch 1 and at ``--batch-size``;
- cocostat again in a child process started with ``OMP_WAIT_POLICY=PASSIVE`` (torch's OpenMP
  threads otherwise spin-wait, which costs a lot on a CPU shared with other busy programs).

It also reports the share of cocostat's inference time spent extracting candidates, and the COCO AP
of both runs (pycocotools). With CUDA, cocostat is also timed on the GPU (float32 and ``--half``).
Writes ``reports/bench_predict.md``.

    python -m benchmarks.bench_predict [--scale 1.0] [--size 416] [--batch-size 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("COCOSTAT_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


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
# Benchmark
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


def _letterboxed_batch(ds, letterbox, n: int):
    """(n, 3, S, S) float32 in [0, 1]: the dataset's first n images letterboxed, as the model takes them."""
    import torch
    from PIL import Image

    imgs = []
    for f in ds.file_name[:n]:
        with Image.open(ds.image_dir / str(f)) as im:
            imgs.append(letterbox.apply(im))
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


def gpu_only(args) -> int:
    """cocostat predict on CUDA (float32 and --half) against the same run on this machine's CPU."""
    import torch

    from cocostat.models import load_model
    from cocostat.predict import predict

    cfg, weights, ds = _inputs(args)
    n = ds.num_images
    rows = {}
    for name, device, half in (
        ("CPU float32", "cpu", False),
        ("CUDA float32", "cuda", False),
        ("CUDA float16 (--half)", "cuda", True),
    ):
        model = load_model(cfg, weights, device=device)
        predict(ds, model, size=args.size, batch_size=args.batch_size, progress=False, half=half)  # warm-up
        ts = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            res = predict(ds, model, size=args.size, batch_size=args.batch_size, progress=False, half=half)
            ts.append(time.perf_counter() - t)
        rows[name] = (statistics.median(ts), {k: v / n for k, v in res.timings.items()})
    base = rows["CPU float32"][0]
    lines = [
        "# Predict benchmark on a GPU machine: cocostat on CUDA vs the same machine's CPU",
        "",
        f"yolov3-tiny at {args.size}, the first {n} coco-tiny val2017 images, batch {args.batch_size}, "
        f"end to end (JPEG files to detections and candidate table). Machine: {platform.platform()}, "
        f"{os.cpu_count()} CPUs, {torch.cuda.get_device_name()}, torch {torch.__version__}.",
        "",
        "| run | images/s (median) | speed-up vs CPU | inference ms/image | candidates ms/image | "
        "detections ms/image |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, (sec, st) in rows.items():
        lines.append(
            f"| {name} | {n / sec:.1f} | {base / sec:.1f}x | {1000 * st['inference']:.2f} | "
            f"{1000 * st['candidates']:.2f} | {1000 * st['detections']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.report.with_name("bench_predict_gpu.md")
    out.write_text(text)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="share of the 80 coco-tiny val2017 images to use")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--report", type=Path, default=Path("reports/bench_predict.md"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--gpu-only",
        action="store_true",
        help="only cocostat on CUDA (float32, float16) against cocostat on this machine's CPU; "
        "for GPU machines whose OpenCV has no Darknet reader (OpenCV 5)",
    )
    args = ap.parse_args(argv)
    if args.gpu_only:
        return gpu_only(args)

    import cv2
    import torch

    from cocostat.models import Letterbox, load_model
    from cocostat.predict import predict

    cfg, weights, ds = _inputs(args)
    n = ds.num_images
    model = load_model(cfg, weights, device="cpu")
    if args.child:  # the same run in a process started with OMP_WAIT_POLICY=PASSIVE
        print(json.dumps(_child(ds, model, args)))
        return 0
    net = opencv_net(cfg, weights)
    lb = Letterbox(args.size)
    load0 = os.getloadavg()
    predict(_first_images(ds, 2), model, size=args.size, batch_size=2, progress=False)  # warm-up

    runs: dict[str, list[float]] = {"cocostat": [], "opencv": [], "passive": []}
    shares, stages, det_c, det_o, fwd_passive = [], [], None, None, []
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    for r in range(args.rounds):
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_predict",
                "--child",
                "--scale",
                str(args.scale),
                "--size",
                str(args.size),
                "--batch-size",
                str(args.batch_size),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        got = json.loads(child.stdout.strip().splitlines()[-1])
        runs["passive"].append(got["seconds"])
        fwd_passive.append(got["fwd"])
        t = time.perf_counter()
        res = predict(ds, model, size=args.size, batch_size=args.batch_size, progress=False)
        runs["cocostat"].append(time.perf_counter() - t)
        shares.append(res.timings["candidates"] / res.timings["inference"])
        stages.append(res.timings)
        det_c = res.detections
        t = time.perf_counter()
        det_o = opencv_detections(net, ds, lb)
        runs["opencv"].append(time.perf_counter() - t)
        print(
            f"round {r + 1}: cocostat {n / runs['cocostat'][-1]:.1f} img/s, "
            f"(OMP_WAIT_POLICY=PASSIVE: {n / runs['passive'][-1]:.1f}), "
            f"opencv {n / runs['opencv'][-1]:.1f} img/s",
            file=sys.stderr,
        )

    # model only, same pre-letterboxed input
    xb = _letterboxed_batch(ds, lb, args.batch_size)
    runner = model.fuse().to(memory_format=torch.channels_last)
    fwd = {}
    for b in (1, len(xb)):
        x = xb[:b].contiguous(memory_format=torch.channels_last)
        xn = xb[:b].contiguous().numpy()
        tt, tc = [], []
        for _ in range(args.rounds):
            with torch.inference_mode():
                tt.append(_time(lambda x=x: runner.decode(runner(x), args.size), max(1, 16 // b)) / b)
            tc.append(_time(lambda xn=xn: opencv_outputs(net, xn), max(1, 16 // b)) / b)
        fwd[b] = (min(tt), min(tc))

    gpu = {}
    if torch.cuda.is_available():
        gm = load_model(cfg, weights, device="cuda")
        for half in (False, True):
            predict(ds, gm, size=args.size, batch_size=args.batch_size, progress=False, half=half)  # warm-up
            ts = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                predict(ds, gm, size=args.size, batch_size=args.batch_size, progress=False, half=half)
                ts.append(time.perf_counter() - t)
            gpu["float16" if half else "float32"] = (statistics.median(ts), min(ts))
        gpu_name = torch.cuda.get_device_name()
    load1 = os.getloadavg()

    ap_c = coco_ap(ds.path, det_c, ds.image_id)
    ap_o = coco_ap(ds.path, det_o, ds.image_id)
    med = {k: statistics.median(v) for k, v in runs.items()}
    best = {k: min(v) for k, v in runs.items()}
    lines = [
        "# Predict benchmark: cocostat (torch) vs OpenCV DNN, yolov3-tiny on the CPU",
        "",
        (
            f"Images: the first {n} of coco-tiny val2017 (real COCO JPEGs), letterboxed to {args.size}; "
            f"cocostat batch size {args.batch_size}, default workers; conf 0.001, NMS IoU 0.6, 100 detections "
            f"per image on both sides. Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), OpenCV "
            f"{cv2.__version__} ({cv2.getNumThreads()} threads). Load average at start/end "
            f"{load0[0]:.1f}/{load1[0]:.1f} (a shared machine: compare within a row, rounds are interleaved)."
        ),
        "",
        "## End to end (JPEG files to detections)",
        "",
        "| pipeline | images/s (median of rounds) | images/s (best round) | time vs OpenCV (median) |",
        "|---|---:|---:|---:|",
    ]
    names = {"cocostat": "cocostat", "passive": "cocostat, OMP_WAIT_POLICY=PASSIVE", "opencv": "OpenCV DNN"}
    for k in ("cocostat", "passive", "opencv"):
        lines.append(f"| {names[k]} | {n / med[k]:.1f} | {n / best[k]:.1f} | {med[k] / med['opencv']:.2f}x |")
    from cocostat.predict import default_workers

    lines += [
        "",
        f"cocostat's stages (median ms per image; {default_workers(torch.device('cpu'))} decoding "
        f"worker(s)): "
        + ", ".join(
            f"{k} {1000 * statistics.median(t[k] for t in stages) / n:.1f}"
            for k in ("loading", "inference", "candidates", "detections", "total")
        )
        + ". `loading` is the wait for decoded images, `detections` is thresholding at conf 0.001 "
        "(hundreds of boxes per image, where OpenCV keeps only scores above 0.2) plus NMS.",
    ]
    lines += [
        "",
        "## Model only (same letterboxed input, forward + YOLO decoding; best of rounds)",
        "",
        (
            "| batch | torch ms/image | torch ms/image, OMP_WAIT_POLICY=PASSIVE | OpenCV ms/image "
            "| torch time vs OpenCV |"
        ),
        "|---:|---:|---:|---:|---:|",
    ]
    for b, (tt, tc) in fwd.items():
        tp = min(f[str(b)] for f in fwd_passive)
        lines.append(f"| {b} | {tt * 1000:.1f} | {tp * 1000:.1f} | {tc * 1000:.1f} | {tt / tc:.2f}x |")
    lines += [
        "",
        (
            "torch's OpenMP threads spin-wait at every parallel region; when other programs use the "
            "cores they lose their time slices there, which OMP_WAIT_POLICY=PASSIVE avoids (its rows "
            "run in a child process started with it, interleaved with the others)."
        ),
    ]
    lines += [
        "",
        "## Candidate extraction and accuracy",
        "",
        (
            f"- candidate extraction: {100 * statistics.median(shares):.2f}% of cocostat's inference time "
            f"(median over rounds; target < 5%)"
        ),
        (
            f"- COCO AP / AP50 on these {n} images: cocostat {ap_c[0]:.4f} / {ap_c[1]:.4f}, "
            f"OpenCV DNN {ap_o[0]:.4f} / {ap_o[1]:.4f} ({len(det_c)} and {len(det_o)} detections; OpenCV "
            f"zeroes class scores under its own 0.2 threshold)"
        ),
    ]
    if gpu:
        lines += [
            "",
            f"## GPU ({gpu_name})",
            "",
            "| precision | images/s (median) | images/s (best) |",
            "|---|---:|---:|",
        ]
        for k, (m, b) in gpu.items():
            lines.append(f"| {k} | {n / m:.1f} | {n / b:.1f} |")
    else:
        lines += ["", "No CUDA device on this machine: GPU figures not measured."]
    text = "\n".join(lines) + "\n"
    print(text)
    from cocostat.atomic import write_text

    write_text(args.report, text)
    return 0


def _child(ds, model, args) -> dict:
    """End-to-end seconds and model-only seconds per image (batch 1 and ``batch_size``) in this process."""
    import torch

    from cocostat.models import Letterbox
    from cocostat.predict import predict

    predict(_first_images(ds, 2), model, size=args.size, batch_size=2, progress=False)  # warm-up
    t = time.perf_counter()
    predict(ds, model, size=args.size, batch_size=args.batch_size, progress=False)
    seconds = time.perf_counter() - t
    xb = _letterboxed_batch(ds, Letterbox(args.size), args.batch_size)
    runner = model.fuse().to(memory_format=torch.channels_last)
    fwd = {}
    for b in (1, len(xb)):
        x = xb[:b].contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            fwd[str(b)] = _time(lambda x=x: runner.decode(runner(x), args.size), max(1, 16 // b)) / b
    return {"seconds": seconds, "fwd": fwd}


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


if __name__ == "__main__":
    sys.exit(main())
