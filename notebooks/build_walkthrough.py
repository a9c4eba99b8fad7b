"""Write (and execute) ``notebooks/walkthrough.ipynb`` from the cells below.

The notebook is generated rather than hand-edited so its source stays reviewable as Python;
``tests/test_notebook.py`` executes it on every test run, so it cannot rot.

    python notebooks/build_walkthrough.py          # write and execute in place
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    (
        "md",
        """# cocostat walkthrough

The Python API on the built-in sample (a bounding-box-only extract of the real COCO128 annotations,
bundled in the package). Every analysis returns a frozen dataclass with `to_dict()` (what
`--format json` prints), `to_frame()` (pandas) and `sections()` (the tables the CLI prints).""",
    ),
    (
        "code",
        """import matplotlib
matplotlib.use("Agg")
from pathlib import Path
from IPython.display import Image, display

from cocostat.data import load_dataset
ds = load_dataset("sample")          # or load_dataset("val2017", root="~/datasets/coco")
print(ds.num_images, "images,", ds.num_annotations, "annotations,", ds.num_classes, "categories")
ds.annotations_frame().head()""",
    ),
    ("md", """## What the dataset holds: `cocostat info`"""),
    (
        "code",
        """from cocostat.summary import info
rep = info(ds)
print({k: rep.to_dict()[k] for k in ("images", "images_with_annotations", "annotations", "crowd")})
print(rep.size_buckets)
rep.per_category.sort_values("annotations", ascending=False).head(8)""",
    ),
    (
        "md",
        """## Pairs of objects in one image: `cocostat overlap`

Gap (closest points), IoU and centre distance over every pair of annotations of the same image.""",
    ),
    (
        "code",
        """from cocostat.pairs import overlap, plot_overlap
ov = overlap(ds, size=416, by_category=True)
d = ov.to_dict()
print("pairs:", d["pairs"], "| gap < 10 px:", d["gap"]["pairs"], "| IoU > 0.6:", d["iou"]["pairs"],
      "| crowded images:", d["crowded"]["images"])
ov.to_frame()""",
    ),
    (
        "code",
        """plots = plot_overlap(ov, Path("walkthrough_plots"))
display(Image(filename=str(plots[0])))""",
    ),
    (
        "md",
        """## Anchors: `cocostat kmeans --size 416`

IoU k-means plus an evolutionary refinement, compared with the stock YOLOv3 anchor sets.""",
    ),
    (
        "code",
        """from cocostat.anchors import kmeans
km = kmeans(ds, size=416, k=9, seed=0, compare=["yolov3", "yolov3-tiny"],
            plot="walkthrough_plots/anchors.png")
print("anchors:", km.to_dict()["anchors"])
km.to_frame()""",
    ),
    ("code", """display(Image(filename="walkthrough_plots/anchors.png"))"""),
    (
        "md",
        """## Which anchors the assigner matches: `cocostat anchor-audit`

Without a model, the audit reports what the boxes and anchors alone decide (the prediction
columns are empty). Run `cocostat predict` first, or pass `--cfg/--weights`, for the rest.""",
    ),
    (
        "code",
        """from cocostat.audit import anchor_audit
audit = anchor_audit(ds, anchors="yolov3-spp", size=416, iou="giou")
print("objects:", audit.to_dict()["objects"], "| with no matched anchor:", audit.to_dict()["unmatched_objects"])
audit.to_frame()""",
    ),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 600) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def main() -> int:
    here = Path(__file__).resolve().parent
    nb = execute(build(), here)
    nbformat.write(nb, here / "walkthrough.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
