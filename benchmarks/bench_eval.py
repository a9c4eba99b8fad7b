"""Benchmark: ``cocostat eval`` / ``cocostat errors`` against pycocotools run by hand.

A synthetic val2017-like file (:mod:`benchmarks.synth`) and detections made by jittering its
ground truth (12 % missed, class swaps, duplicates, background boxes; seeded) are evaluated:

- baseline: ``COCO(gt)``, ``loadRes``, ``COCOeval.evaluate/accumulate/summarize``, as a user writes it;
- ``cocostat.evaluate.evaluate(..., backend="pycocotools")`` (from the loaded Dataset);
- the same with ``backend="faster"`` when faster-coco-eval is installed;
- ``cocostat.diagnose.diagnose`` (the TIDE-style breakdown, which pycocotools has no equivalent of).

    python -m benchmarks.bench_eval [--scale 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def jittered_detections(coco: dict, seed: int = 0) -> list[dict]:
    """Detections from the ground truth: vectorised jitter, misses, class swaps, duplicates, background."""
    rng = np.random.default_rng(seed)
    anns = coco["annotations"]
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    img = np.array([a["image_id"] for a in anns])
    cat = np.array([a["category_id"] for a in anns])
    box = np.array([a["bbox"] for a in anns], dtype=float).reshape(-1, 4)
    cats = np.array([c["id"] for c in coco["categories"]])
    keep = rng.random(len(anns)) >= 0.12
    dup = rng.random(len(anns)) < 0.15
    idx = np.concatenate([np.flatnonzero(keep), np.flatnonzero(keep & dup)])
    n = idx.size
    scale = np.where(rng.random(n) < 0.8, 0.08, 0.3)[:, None]
    j = rng.normal(0, 1, (n, 4)) * scale
    b = box[idx]
    out_box = np.stack(
        [
            b[:, 0] + j[:, 0] * b[:, 2],
            b[:, 1] + j[:, 1] * b[:, 3],
            b[:, 2] * np.exp(j[:, 2]),
            b[:, 3] * np.exp(j[:, 3]),
        ],
        axis=1,
    )
    out_cat = np.where(rng.random(n) < 0.1, rng.choice(cats, n), cat[idx])
    score = rng.beta(5, 2, n)
    # background: Poisson(4) random boxes per image
    ids = np.array(list(sizes))
    nb = rng.poisson(4, ids.size)
    bg_img = np.repeat(ids, nb)
    wh = np.array([sizes[i] for i in bg_img], dtype=float).reshape(-1, 2)
    bw = rng.uniform(0.05, 0.5, (bg_img.size, 2)) * wh
    bxy = rng.uniform(0, 1, (bg_img.size, 2)) * (wh - bw)
    all_img = np.concatenate([img[idx], bg_img])
    all_box = np.concatenate([out_box, np.concatenate([bxy, bw], axis=1)])
    all_cat = np.concatenate([out_cat, rng.choice(cats, bg_img.size)])
    all_score = np.concatenate([score, rng.beta(2, 5, bg_img.size)])
    W = np.array([sizes[i][0] for i in all_img], float)
    H = np.array([sizes[i][1] for i in all_img], float)
    x = np.clip(all_box[:, 0], 0, W - 1)
    y = np.clip(all_box[:, 1], 0, H - 1)
    w = np.clip(all_box[:, 2], 1, W - x)
    h = np.clip(all_box[:, 3], 1, H - y)
    return [
        {
            "image_id": int(i),
            "category_id": int(c),
            "bbox": [round(a, 2), round(b_, 2), round(c_, 2), round(d, 2)],
            "score": round(float(s), 4),
        }
        for i, c, a, b_, c_, d, s in zip(all_img, all_cat, x, y, w, h, all_score, strict=True)
    ]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--report", type=Path, default=Path("reports/bench_eval.md"))
    args = ap.parse_args(argv)

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from benchmarks.synth import generate
    from cocostat.data import load_coco
    from cocostat.diagnose import diagnose
    from cocostat.evaluate import evaluate

    tmp = Path(tempfile.mkdtemp(prefix="cocostat-bench-eval-"))
    coco = generate(like="val2017", seed=0, scale=args.scale)
    gt_path, det_path = tmp / "instances_val2017.json", tmp / "detections.json"
    gt_path.write_text(json.dumps(coco))
    dets = jittered_detections(coco)
    det_path.write_text(json.dumps(dets))
    ds = load_coco(gt_path, cache=False)

    def by_hand():
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(gt_path))
            ev = COCOeval(gt, gt.loadRes(str(det_path)), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev.stats

    base_stats, t_base = timed(by_hand)
    rows = [("pycocotools by hand (load JSON + COCOeval)", t_base, True)]
    rep, t = timed(lambda: evaluate(ds, det_path))
    rows.append(("cocostat eval (pycocotools backend)", t, np.array_equal(rep.stats, base_stats)))
    try:
        rep_f, t = timed(lambda: evaluate(ds, det_path, backend="faster"))
        rows.append(("cocostat eval --backend faster", t, bool(np.allclose(rep_f.stats, base_stats, atol=1e-12))))
    except Exception as exc:  # faster-coco-eval missing
        print(f"faster backend skipped: {exc}", file=sys.stderr)
    _, t = timed(lambda: diagnose(ds, det_path))
    rows.append(("cocostat errors (TIDE-style breakdown)", t, None))

    lines = [
        "# Eval benchmark: cocostat eval / errors vs pycocotools by hand",
        "",
        f"Synthetic val2017 x{args.scale} ({len(coco['images']):,} images, {len(coco['annotations']):,} "
        f"annotations), {len(dets):,} jittered detections. Machine: {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}.",
        "",
        "| run | seconds | speed-up vs by hand | stats equal to pycocotools |",
        "|---|---:|---:|---|",
    ]
    for name, sec, same in rows:
        agree = "-" if same is None else ("yes" if same else "NO")
        lines.append(f"| {name} | {sec:.2f} | {t_base / sec:.1f}x | {agree} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
