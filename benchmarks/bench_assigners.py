"""Benchmark: ``cocostat assigners`` (every assigner) on a val2017-sized predictions table.

Synthetic candidates (:func:`benchmarks.bench_audit.synthetic_candidates`: val2017's 36,781
annotations, 446 of them crowd and left out, x 81 candidates = 9 yolov3 anchors x a 3x3
neighbourhood, predictions of the yolov3 layout scattered around each object like a trained
model's) go through :func:`cocostat.lab.assigner_lab` with all ten assigners: the five box-only
ones over the whole 416 px grid (10,647 slots per image), the five prediction-aware ones over the
stored slots, every figure, in image-aligned blocks.

The baseline is the brute-force reference of the tests (``tests/test_assigners.py``: plain Python
loops over every slot of the whole grid, or over the stored rows), run on the objects of the first
images (``--loop-objects``, whole images) because it takes about a second per object and
assigner; its time is extrapolated per object to the whole table, and its positive sets are
compared with cocostat's on those objects.

    python -m benchmarks.bench_assigners [--scale 1.0] [--loop-objects 150] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

VAL2017_ANNOTATIONS, VAL2017_CROWD = 36_781, 446


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of val2017's 36,781 annotations")
    ap.add_argument("--loop-objects", type=int, default=150, help="objects the brute-force loop runs on")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--report", type=Path, default=Path("reports/bench_assigners.md"))
    args = ap.parse_args(argv)

    import warnings

    import torch

    from benchmarks.bench_audit import InMemoryPredictions, synthetic_candidates, synthetic_dataset
    from cocostat import assigners
    from cocostat.assign import grid_from_manifest
    from cocostat.assigners import candidate_slots, grid_slots
    from cocostat.atomic import write_text
    from cocostat.audit import dense_image_index
    from cocostat.candidates import to_arrays
    from cocostat.data import from_dict
    from cocostat.errors import CocostatWarning
    from cocostat.lab import _block_arrays, assigner_lab

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_assigners import ref_box_only, ref_pred_aware  # the tests' brute-force references

    warnings.simplefilter("ignore", CocostatWarning)
    load = os.getloadavg()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    G = max(1, round(VAL2017_ANNOTATIONS * args.scale))
    t = time.perf_counter()
    frame, manifest = synthetic_candidates(G, neighborhood=1, crowd=VAL2017_CROWD / VAL2017_ANNOTATIONS, seed=0)
    ds = from_dict(synthetic_dataset(frame), name="synthetic")
    preds = InMemoryPredictions(frame, manifest)
    print(f"generated {G} annotations x 81 candidates in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    rss0 = peak_rss_mib()
    t = time.perf_counter()
    lab = assigner_lab(ds, preds, iou="iou", device=device)
    t_lab = time.perf_counter() - t
    rss_lab = peak_rss_mib()
    per = {}
    for name in lab.table["name"]:  # each assigner alone (the lab runs yolov3 as reference once more)
        t = time.perf_counter()
        assigner_lab(ds, preds, assigners=[name], reference=name, device=device)
        per[name] = time.perf_counter() - t
    t = time.perf_counter()
    box_only = assigner_lab(ds, None, anchors="yolov3", size=416, device=device)
    t_box = time.perf_counter() - t

    # the brute-force loop on the first images' objects, against cocostat's positives on the same objects
    crowd = frame["iscrowd"].to_numpy()
    arrays = to_arrays(frame[~crowd])
    grid = grid_from_manifest(manifest)
    _, images = dense_image_index(arrays.image_id)
    n_loop = int(np.searchsorted(images, images[min(args.loop_objects, images.size) - 1], side="right"))
    sub = _block_arrays(arrays, np.arange(n_loop))
    img = images[:n_loop]
    boxes = torch.from_numpy(sub.gt.astype(np.float64))
    loop_t, agree = {}, {}
    for name in lab.table["name"]:
        asg = assigners.create(name)
        t = time.perf_counter()
        if asg.needs_predictions:
            want = ref_pred_aware(name, sub, img, grid)
            slots = candidate_slots(boxes, grid, sub, torch.from_numpy(img))
        else:
            want = ref_box_only(name, sub.gt.astype(np.float64), img, grid)
            slots = grid_slots(boxes, grid, asg.reach(grid), torch.from_numpy(img))
        loop_t[name] = time.perf_counter() - t
        pos = asg.positives(slots)
        got = [set() for _ in range(n_loop)]
        for g, n in torch.nonzero(pos).tolist():
            got[g].add(int(slots.key[g, n]))
        agree[name] = got == want
    objects = lab.objects
    loop_total = sum(loop_t.values()) / n_loop * objects

    lines = [
        "# Benchmark: `cocostat assigners` on a val2017-sized predictions table",
        "",
        (
            f"Synthetic predictions of the yolov3 layout: {G:,} annotations ({objects:,} non-crowd objects in "
            f"{lab.images:,} images) x 81 candidates (9 anchors x 3x3 cells), 416 px input (10,647 slots per image). "
            f"Device: {device}. Every assigner, every figure (`assigner_lab`), in image-aligned blocks of 4,096 "
            f"objects. Times are single runs."
        ),
        "",
        "| what | seconds |",
        "|---|---:|",
        f"| all 10 assigners with predictions, every figure (one `assigner_lab` call) | {t_lab:.1f} |",
        f"| the 5 box-only assigners without predictions (whole grid, letterboxed boxes) | {t_box:.1f} |",
    ]
    for name, sec in per.items():
        lines.append(f"| {name} alone (its figures, itself as reference) | {sec:.1f} |")
    lines += [
        "",
        (
            f"Brute-force reference loop (tests/test_assigners.py: plain Python over every slot of the whole grid, "
            f"or over the stored rows) on the first {n_loop} objects (whole images): "
            f"{sum(loop_t.values()):.1f} s for all 10 assigners, {sum(loop_t.values()) / n_loop:.2f} s per object, "
            f"so about {loop_total / 3600:.1f} h for the {objects:,} objects: "
            f"{loop_total / t_lab:,.0f}x the vectorised run."
        ),
        "",
        "| assigner | loop s / object | positive sets equal to cocostat's |",
        "|---|---:|---|",
    ]
    for name in loop_t:
        lines.append(f"| {name} | {loop_t[name] / n_loop:.3f} | {'yes' if agree[name] else 'NO'} |")
    lines += [
        "",
        (
            f"Peak memory (VmHWM) of the process: {rss0:.0f} MiB after generating the table, {rss_lab:.0f} MiB after "
            f"the full run."
        ),
        "",
        "Figures of the full run (positives per object: mean; objects without a positive):",
        "",
        "| assigner | positives | per object | without | mean pred IoU | Jaccard with yolov3 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in lab.table.itertuples(index=False):
        lines.append(
            f"| {r.name} | {r.positives:,} | {r.per_object_mean:.2f} | {r.objects_without_positive:,} | "
            f"{r.mean_pred_iou:.3f} | {r.mean_jaccard:.3f} |"
        )
    lines += [
        "",
        (
            f"Box-only run without predictions: {box_only.objects:,} objects (the synthetic dataset's boxes "
            f"letterboxed again, identical as its images are 416 x 416)."
        ),
        "",
        (
            f"Machine: {platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{os.cpu_count()} CPU(s), torch threads {torch.get_num_threads()}, load average before the run "
            f"{load[0]:.2f} (other processes share the CPUs when it is high)."
        ),
        "",
        (
            f"Command: `python -m benchmarks.bench_assigners --scale {args.scale:g} --loop-objects {args.loop_objects} "
            f"--device {args.device}" + (f" --threads {args.threads}" if args.threads else "") + "`"
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.report, text)
    return 0 if all(agree.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
