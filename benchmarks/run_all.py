"""Run every benchmark and gather their tables into ``reports/benchmarks.md``.

Each ``benchmarks/bench_NAME.py`` measures one hot path against the baseline a user has today,
side by side in the same run, and writes ``reports/bench_NAME.md``. This script runs them one after
another (each in its own process, so one's memory does not weigh on the next) and concatenates the
reports under a header naming the machine.

    python -m benchmarks.run_all [--scale 1.0] [--only load overlap ...]

``--scale`` shrinks the synthetic datasets for a quick run (0.1 runs in a couple of minutes);
1.0 is COCO train2017 size and takes about 10 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

#: extra arguments per benchmark, to keep the whole run under 15 minutes on 2 cores
EXTRA_ARGS = {"kmeans": ["--ultralytics-threads", "1"]}
BENCHMARKS = ("load", "yolo", "overlap", "kmeans", "audit", "predict", "predict_gpu", "eval")


def _demoted(report: Path) -> list[str]:
    """A report's lines with every markdown heading one level deeper, to nest under this page's title."""
    return ["#" + line if line.startswith("#") else line for line in report.read_text().strip().splitlines()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--only", nargs="*", default=None, choices=BENCHMARKS)
    ap.add_argument(
        "--collect",
        action="store_true",
        help="run nothing: gather the reports/bench_*.md already written into reports/benchmarks.md",
    )
    args = ap.parse_args(argv)
    here = Path(__file__).resolve().parent
    reports = here.parent / "reports"
    parts = [
        "# cocostat benchmarks",
        "",
        (
            f"Gathered {datetime.date.today()} from the reports/bench_*.md files; each names its own run and machine."
            if args.collect
            else f"Run {datetime.date.today()} on {platform.platform()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, scale {args.scale}."
        )
        + " Every figure is a ratio against a baseline measured in the same run on the same machine.",
    ]
    failed = []
    for name in args.only or BENCHMARKS:
        report = reports / f"bench_{name}.md"
        if args.collect or not (here / f"bench_{name}.py").is_file():
            # predict_gpu is written by `bench_predict --gpu-only` on a GPU machine: gathered, never run here
            if report.is_file():
                parts += ["", *_demoted(report)]
            continue
        t = time.perf_counter()
        cmd = [sys.executable, "-m", f"benchmarks.bench_{name}", "--scale", str(args.scale), *EXTRA_ARGS.get(name, [])]
        print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
        rc = subprocess.run(cmd, cwd=here.parent).returncode
        print(f"  {name}: exit {rc} in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        if rc or not report.is_file():
            failed.append(name)
            continue
        parts += ["", *_demoted(report)]
    (reports / "benchmarks.md").write_text("\n".join(parts) + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
