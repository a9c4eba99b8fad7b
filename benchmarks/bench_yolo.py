"""Benchmark: loading a train2017-size YOLO dataset vs loading the equivalent COCO JSON, both with cocostat.

Generates once into ``--dir`` (default ``/tmp/bench-yolo``, reused by later runs): the synthetic
train2017 COCO file of :mod:`benchmarks.synth` (118,287 images, 860,001 boxes), one small real JPEG
per distinct declared image size, hard-linked under every image name, and its YOLO layout written by
``cocostat convert``'s :func:`cocostat.yolo.write_yolo` (image symlinks, ``labels/train2017/*.txt``
with the 849,951 non-crowd boxes, ``yolo.yaml``). Then each loader runs in its own fresh Python
process (files in the OS page cache, cocostat's array cache off unless named "cached"):

- coco-cold: ``load_coco(json, cache=False)``, the baseline of the cold loads;
- coco-cached: ``load_coco(json)`` after one load has written the cache, the baseline of the cached
  load (it hashes the JSON's bytes for its key, then reads the ``.npz``);
- yolo-cold-process: ``load_dataset(yaml, split="train", cache=False)``, the default process pool;
- yolo-cold-thread: the same with a thread pool of as many workers;
- yolo-cold-serial: the same with ``workers=1`` (everything in the main process);
- yolo-cached: ``load_dataset(yaml, split="train")`` after one load has written the cache;
- yolo-cached-before (with ``--before DIR``): the same with the cocostat of the checkout DIR, interleaved
  with yolo-cached, to measure a change against the revision before it in the same run.

Peak memory is each process's ``VmHWM`` (main process, and the largest pool worker's, which each
worker writes to a file when it finishes a chunk).

    python -m benchmarks.bench_yolo [--dir DIR] [--scale 1.0] [--repeat 1]
        [--only coco-cached,yolo-cached] [--before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

_CHILD = r"""
import json, os, sys, time
which, folder = sys.argv[1], sys.argv[2]
def vmhwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
if which.startswith("coco-"):
    from cocostat.data import load_coco
    t = time.perf_counter()
    ds = load_coco(os.path.join(folder, "instances_train2017_synth.json"), cache=(which == "coco-cached"))
else:
    import warnings
    from cocostat import yolo
    from cocostat.data import load_dataset
    import benchmarks.bench_yolo as b
    yolo._read_chunk = b.measured_chunk          # workers record their VmHWM
    pool = {"yolo-cold-thread": "thread"}.get(which, "process")
    workers = 1 if which == "yolo-cold-serial" else None
    kw = {"pool": pool, "workers": workers}
    orig = yolo.load_yolo
    yolo.load_yolo = lambda src, cache=True: orig(src, cache=cache, **kw)
    warnings.simplefilter("ignore")
    t = time.perf_counter()
    ds = load_dataset(os.path.join(folder, "yolo", "yolo.yaml"), split="train", cache=(which == "yolo-cached"))
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "peak_mb": vmhwm(), "images": ds.num_images, "boxes": ds.num_annotations}))
"""

PEAKS_DIR = "peaks"


def measured_chunk(images, num_classes):
    """:func:`cocostat.yolo._read_chunk`, then write this process's VmHWM to ``$BENCH_YOLO_PEAKS/<pid>``."""
    out = _ORIGINAL_READ_CHUNK(images, num_classes)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    folder = os.environ.get("BENCH_YOLO_PEAKS")
    if folder:
        Path(folder, str(os.getpid())).write_text(f"{peak}")
    return out


def _original():
    import cocostat.yolo as y

    return y._read_chunk


_ORIGINAL_READ_CHUNK = _original()


def generate(folder: Path, scale: float) -> None:
    """The synthetic COCO file, the JPEGs and the YOLO layout under ``folder`` (skipped when present)."""
    import numpy as np
    from PIL import Image

    from benchmarks.synth import write_for_benchmark
    from cocostat.data import load_coco
    from cocostat.yolo import write_yolo

    folder.mkdir(parents=True, exist_ok=True)
    coco = folder / "instances_train2017_synth.json"
    if not coco.is_file():
        write_for_benchmark(folder, like="train2017", scale=scale)
    if (folder / "yolo" / "yolo.yaml").is_file():
        return
    t = time.perf_counter()
    ds = load_coco(coco, cache=False, image_dir=folder / "src")
    sizes = folder / "jpeg-sizes"
    sizes.mkdir(exist_ok=True)
    (folder / "src").mkdir(exist_ok=True)
    wh = np.stack([ds.width, ds.height], axis=1)
    for w, h in np.unique(wh, axis=0).tolist():
        Image.new("RGB", (w, h), (90, 120, 150)).save(sizes / f"{w}x{h}.jpg", quality=20)
    for name, (w, h) in zip(ds.file_name.tolist(), wh.tolist(), strict=True):
        dst = folder / "src" / name
        if not dst.exists():
            os.link(sizes / f"{w}x{h}.jpg", dst)
    write_yolo(ds, folder / "yolo", split="train", folder="train2017")
    print(f"generated the YOLO layout in {time.perf_counter() - t:.0f} s", file=sys.stderr)


def run_child(which: str, folder: Path, src: Path | None = None) -> dict:
    """One load in a fresh process; ``src``: the checkout whose cocostat it imports (default this one)."""
    peaks = folder / PEAKS_DIR / which
    peaks.mkdir(parents=True, exist_ok=True)
    for p in peaks.iterdir():
        p.unlink()
    env = {
        **os.environ,
        "COCOSTAT_CACHE": str(folder / "cache"),
        "BENCH_YOLO_PEAKS": str(peaks),
        "PYTHONPATH": os.pathsep.join(
            [str(src or Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, which, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=src,  # python -c puts the working folder first on sys.path, before PYTHONPATH
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    worker = [float(p.read_text()) for p in peaks.iterdir()]
    pooled = which == "yolo-cold-process"  # elsewhere the chunks run in the main process
    res["worker_peak_mb"] = max(worker) if worker and pooled else None
    res["workers"] = len(worker) if pooled else None
    return res


LOADERS = ("coco-cold", "coco-cached", "yolo-cold-process", "yolo-cold-thread", "yolo-cold-serial", "yolo-cached")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the data is generated once and reused [default: /tmp/bench-yolo, "
        "/tmp/bench-yolo-SCALE for another --scale]",
    )
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each loader; the fastest is reported")
    ap.add_argument(
        "--only",
        default=",".join(LOADERS),
        help="comma-separated loaders to run (the report needs coco-cold for the cold ratios and coco-cached "
        "for the cached one) [default: all]",
    )
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout of another revision (git worktree add /tmp/before main): its cached YOLO load runs "
        "interleaved with this one's, as the row yolo-cached-before",
    )
    ap.add_argument("--report", type=Path, default=Path("reports/bench_yolo.md"))
    args = ap.parse_args(argv)
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    if not set(only) <= set(LOADERS) or not only:
        ap.error(f"--only takes some of {', '.join(LOADERS)}, got {args.only!r}")
    if args.dir is None:
        args.dir = Path("/tmp/bench-yolo" if args.scale == 1.0 else f"/tmp/bench-yolo-{args.scale:g}")
    generate(args.dir, args.scale)
    import shutil

    shutil.rmtree(args.dir / "cache", ignore_errors=True)
    results = {}
    load_before = os.getloadavg()
    for which in (w for w in LOADERS if w in only):
        before = which == "yolo-cached" and args.before is not None
        if which.endswith("-cached"):
            run_child(which, args.dir)  # the first cached load writes the cache
            if before:
                run_child(which, args.dir, args.before)  # its key differs: its own entry
        runs, runs_before = [], []
        for _ in range(args.repeat):  # interleaved, so that both meet the same load
            runs.append(run_child(which, args.dir))
            if before:
                runs_before.append(run_child(which, args.dir, args.before))
        for name, rs in ((which, runs), ("yolo-cached-before", runs_before)):
            if rs:
                results[name] = min(rs, key=lambda r: r["seconds"])
                results[name]["all_seconds"] = [r["seconds"] for r in rs]
                print(name, results[name], file=sys.stderr)
    load_after = os.getloadavg()
    any_run = next(iter(results.values()))
    labels = args.dir / "yolo" / "labels" / "train2017"
    n_labels = sum(1 for _ in os.scandir(labels))
    yolo_boxes = next((r["boxes"] for w, r in results.items() if w.startswith("yolo-")), None)
    lines = [
        "# YOLO-layout load benchmark: cocostat on a YOLO dataset vs on the equivalent COCO JSON",
        "",
        f"Data: synthetic train2017 x{args.scale} ({any_run['images']:,} images"
        + (f", {results['coco-cold']['boxes']:,} COCO boxes" if "coco-cold" in results else "")
        + f"); its YOLO layout has {n_labels:,} label files"
        + (f" with {yolo_boxes:,} lines" if yolo_boxes is not None else "")
        + " (crowd left out), image symlinks to real JPEGs of the declared sizes. "
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs (shared with other jobs), Python "
        f"{platform.python_version()}. Each loader in a fresh process, files in the OS page cache; fastest of "
        f"{args.repeat} run(s) (every run's seconds in the last column). Load average (1, 5, 15 min) "
        f"{_load(load_before)} before and {_load(load_after)} after: the 2 cores were shared with other jobs, "
        "so compare the ratios, which are measured in the same run.",
        "",
        "| loader | seconds | vs coco-cold | vs coco-cached | main process peak (MB) | largest worker peak (MB) "
        "| every run (s) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for which, r in results.items():
        wp = f"{r['worker_peak_mb']:.0f}" if r.get("worker_peak_mb") else "-"
        lines.append(
            f"| {which} | {r['seconds']:.2f} | {_ratio(r, results.get('coco-cold'))} | "
            f"{_ratio(r, results.get('coco-cached'))} | {r['peak_mb']:.0f} | {wp} | "
            + ", ".join(f"{x:.2f}" for x in r["all_seconds"])
            + " |"
        )
    lines.append("")
    if "yolo-cold-process" in results and "coco-cold" in results:
        cold = results["yolo-cold-process"]["seconds"] / results["coco-cold"]["seconds"]
        lines.append(
            f"Target: cold YOLO load <= 1.5x the COCO JSON load: {cold:.2f}x ({'met' if cold <= 1.5 else 'NOT met'})."
        )
    if "yolo-cached" in results:
        c = results["yolo-cached"]["seconds"]
        vs = (
            f", {c / results['coco-cached']['seconds']:.2f}x the cached COCO JSON load of the same boxes"
            if "coco-cached" in results
            else ""
        )
        lines.append(
            f"Target: from the cache in under 1 s: {c:.2f} s ({'met' if c < 1 else 'NOT met'}){vs}. Its key "
            f"(`cocostat.yolo.cache_key`) takes one `stat` per label file and one per image folder: "
            f"{any_run['images'] + 1:,} calls, after the listing of the image folder that every load makes."
        )
    if "yolo-cached-before" in results and "yolo-cached" in results:
        rev = _revision(args.before)
        lines.append(
            f"yolo-cached-before is the same load with the cocostat of {rev}, interleaved with this one's: "
            f"{results['yolo-cached-before']['seconds']:.2f} s, so this revision takes "
            f"{results['yolo-cached']['seconds'] / results['yolo-cached-before']['seconds']:.2f}x its time."
        )
    from cocostat.atomic import write_text

    write_text(args.report, "\n".join(lines) + "\n")
    print(args.report.read_text())
    return 0


def _revision(src: Path) -> str:
    """``<commit> (<subject>)`` of a checkout, or its path when git cannot say."""
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "log", "-1", "--format=%h"], capture_output=True, text=True, check=True
        )
        return f"commit {out.stdout.strip()}" if out.stdout.strip() else str(src)
    except (OSError, subprocess.CalledProcessError):
        return str(src)


def _load(avg: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.1f}" for x in avg)


def _ratio(r: dict, base: dict | None) -> str:
    return f"{r['seconds'] / base['seconds']:.2f}x" if base else "-"


if __name__ == "__main__":
    sys.exit(main())
