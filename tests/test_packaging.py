"""The built wheel works on its own: installed into a fresh virtual environment, run from outside
the source tree, its console script answers ``cocostat info`` and ``cocostat kmeans --size 416`` on
the built-in sample. This catches package data left out of the wheel (the sample) and modules that
only import from a checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(args: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{args} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # pip wheel builds in an isolated environment from pyproject's [build-system]; --no-build-isolation
    # uses the installed setuptools instead, so the test needs no network.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, ROOT], cwd=out)
    (whl,) = out.glob("cocostat-*.whl")
    return whl


def test_the_wheel_holds_every_data_file_the_package_reads(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cocostat/sample/instances_sample.json" in names and "cocostat/sample/LICENSE.md" in names
    source = {
        str(p.relative_to(ROOT)) for p in (ROOT / "cocostat").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert source - names == set()  # every file of the package folder, every subpackage included
    assert not any(n.startswith(("tests/", "benchmarks/", "notebooks/")) for n in names)


def test_installed_wheel_runs_info_and_kmeans_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    # --system-site-packages: torch, numpy... come from this interpreter, not downloaded again;
    # --no-deps installs only the wheel, the package itself then comes only from the venv.
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=tmp_path)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    _run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel], cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(MPLBACKEND="Agg", COCOSTAT_CACHE=str(tmp_path / "cache"))
    work = tmp_path / "elsewhere"  # cwd outside the checkout: `import cocostat` cannot find the source tree
    work.mkdir()

    where = _run([bin_dir / "python", "-c", "import cocostat; print(cocostat.__file__)"], work, env).stdout.strip()
    assert Path(where).is_relative_to(venv) or not Path(where).is_relative_to(ROOT), where

    info = json.loads(_run([bin_dir / "cocostat", "info", "--format", "json"], work, env).stdout)
    assert info["images"] == 128 and info["annotations"] == 939  # the built-in sample (README)

    km = json.loads(_run([bin_dir / "cocostat", "kmeans", "--size", "416", "--format", "json"], work, env).stdout)
    assert km["size"] == 416 and len(km["anchors"]) == 9

    args = ["kmeans", "--size", "416", "--compare", "yolov3", "--compare", "yolov3-tiny", "--format", "json"]
    km = json.loads(_run([bin_dir / "cocostat", *args], work, env).stdout)
    assert len(km["compare"]) == 2  # the preset anchor sets come with the wheel
