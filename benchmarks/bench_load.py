"""Benchmark: loading a COCO annotation file, cocostat vs ``pycocotools.coco.COCO``.

Runs each loader in its own fresh Python process (so peak memory is that loader's alone) on a
synthetic train2017-like file from :mod:`benchmarks.synth` (same counts, box statistics and polygon
segmentations as the real 448 MB file), side by side in one run, and writes
``reports/bench_load.md``:

- pycocotools: ``COCO(path)`` (``json.load`` plus its index dicts);
- cocostat, cold: ``load_coco(path, cache=False)`` (msgspec decode into typed structs, arrays);
- cocostat, cached: ``load_coco(path)`` after one load has written the array cache.

Peak memory is the process's peak resident set (``VmHWM``) minus its resident set after the
imports, so library import costs do not blur the comparison (both are printed).

    python -m benchmarks.bench_load [--scale 1.0] [--like train2017] [--file PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, sys, time, os
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
which, path = sys.argv[1], sys.argv[2]
if which == "pycocotools":
    import contextlib, io
    from pycocotools.coco import COCO
    base = rss_mb(); t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO(path)
    n = len(c.anns)
else:
    from cocostat.data import load_coco
    base = rss_mb(); t = time.perf_counter()
    ds = load_coco(path, cache=(which == "cocostat-cached"))
    n = ds.num_annotations
dt = time.perf_counter() - t
# VmHWM is this process image's own peak; ru_maxrss would carry over the forking parent's peak
# across exec (Linux keeps it), which inflates every child of a parent that generated the file.
with open("/proc/self/status") as f:
    peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
print(json.dumps({"seconds": dt, "peak_mb": peak, "base_mb": base, "annotations": n}))
"""


def run_child(which: str, path: Path, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, which, str(path)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--like", default="train2017")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--file", type=Path, help="benchmark this COCO file instead of a synthetic one")
    ap.add_argument("--report", type=Path, default=Path("reports/bench_load.md"))
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="cocostat-bench-"))
    path = args.file
    if path is None:
        from benchmarks.synth import write_for_benchmark

        path = write_for_benchmark(tmp, like=args.like, scale=args.scale)
    env = {**os.environ, "COCOSTAT_CACHE": str(tmp / "cache")}
    results = {}
    for which in ("pycocotools", "cocostat-cold", "cocostat-cached"):
        if which == "cocostat-cached":
            run_child("cocostat-cached", path, env)  # first call writes the cache
        results[which] = run_child(which, path, env)
        print(which, results[which], file=sys.stderr)

    base = results["pycocotools"]
    size_mb = path.stat().st_size / 2**20
    lines = [
        "# Load benchmark: cocostat vs pycocotools.coco.COCO",
        "",
        f"File: {'synthetic ' + args.like + ' x' + str(args.scale) if args.file is None else path.name}, "
        f"{size_mb:.0f} MB, {base['annotations']:,} annotations. Machine: {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. Each loader in a fresh process.",
        "",
        "| loader | seconds | speed-up vs pycocotools | peak memory over imports (MB)"
        " | share of pycocotools' memory | process peak (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for which, r in results.items():
        mem = r["peak_mb"] - r["base_mb"]
        base_mem = base["peak_mb"] - base["base_mb"]
        lines.append(
            f"| {which} | {r['seconds']:.2f} | {base['seconds'] / r['seconds']:.1f}x | {mem:.0f} | "
            f"{mem / base_mem:.2f} | {r['peak_mb']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    if args.file is None:
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
