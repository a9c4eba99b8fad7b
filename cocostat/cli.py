"""The ``cocostat`` command line: a thin skin over the library.

Each command parses its options, calls one library function and hands the result to
:func:`cocostat.render.emit`. Options shared by every data command come from the decorators
:func:`dataset_options` and :func:`output_options`. A :class:`~cocostat.errors.CocostatError`
becomes one line on stderr and exit status 2 (``cocostat --debug ...`` shows the traceback).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from pathlib import Path

import click

from cocostat import __version__
from cocostat.assigners import NAMES as ASSIGNER_NAMES
from cocostat.errors import CocostatError, CocostatWarning, OptionError
from cocostat.plots import KMEANS_PLOT
from cocostat.render import FORMATS, emit

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, CocostatWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        click.echo(warnings.formatwarning(message, category, filename, lineno, line).rstrip(), err=True)


#: exit status of an interrupted command (128 + SIGINT, what a shell reports for Ctrl-C), and its line.
EXIT_INTERRUPTED = 130
INTERRUPTED = "interrupted (Ctrl-C); an interrupted predict run continues with --resume"


def _one_line(exc: BaseException) -> str | None:
    """The one-line message of an error a user can cause, or None for a bug (shown with its traceback).

    - :class:`CocostatError`: its message (bad input, bad option).
    - ``OSError``: a path that cannot be read or written, named with the reason (``/proc/x.png: No
      such file or directory``); an output is never half-written (:mod:`cocostat.atomic`).
    - decode errors of an input file (``UnicodeDecodeError``, ``json.JSONDecodeError``,
      ``msgspec.DecodeError``) that a library function did not already turn into a CocostatError.
    """
    import json

    if isinstance(exc, CocostatError):
        return str(exc)
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"{exc.filename}: {reason}" if exc.filename else f"{type(exc).__name__}: {reason}"
    if isinstance(exc, (UnicodeDecodeError, json.JSONDecodeError)):
        return f"an input file is not valid {'UTF-8' if isinstance(exc, UnicodeDecodeError) else 'JSON'}: {exc}"
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and isinstance(exc, msgspec.DecodeError):
        return f"an input file is not valid JSON: {exc}"
    return None


class DeprecatedAlias(click.Option):
    """The old spelling of a renamed option, kept hidden for one release (see README, CLI conventions).

    ``cocostat CMD --old VALUE`` still works: :class:`CocostatCommand` rewrites the token to the new
    spelling before click parses the line and says ``warning: --old is deprecated, use --new`` on
    stderr. The alias takes no value of its own (``expose_value=False``) and never shows in ``--help``.
    """

    def __init__(self, param_decls, *, replaced_by: str, **kwargs):
        kwargs.update(hidden=True, expose_value=False)
        super().__init__(param_decls, **kwargs)
        self.replaced_by = replaced_by


def deprecated_alias(old: str, new: str, **kwargs):
    """Decorator: ``old`` is a hidden, deprecated spelling of the command's option ``new``.

    ``kwargs`` are the alias's click settings (type, nargs, is_flag), the same as the old option had."""
    name = "deprecated_" + old.lstrip("-").replace("-", "_")
    return click.option(old, name, cls=DeprecatedAlias, replaced_by=new, **kwargs)


class CocostatCommand(click.Command):
    """A cocostat command: rewrites deprecated option spellings (:class:`DeprecatedAlias`) before parsing."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        aliases = {alias.opts[0]: alias for alias in self.params if isinstance(alias, DeprecatedAlias)}
        if aliases:
            rewritten = []
            for i, token in enumerate(args):
                if token == "--":
                    rewritten += args[i:]
                    break
                name, eq, value = token.partition("=")
                alias = aliases.get(name)
                if alias is not None:
                    click.echo(f"warning: {name} is deprecated, use {alias.replaced_by}", err=True)
                    token = alias.replaced_by + eq + value
                rewritten.append(token)
            args = rewritten
        return super().parse_args(ctx, args)


def _flag_of(command: click.Command | None, param: str) -> str | None:
    """The long flag (``--iou-t``) of the option of ``command`` whose Python name is ``param``, else None."""
    for option in getattr(command, "params", ()):
        if isinstance(option, click.Option) and not isinstance(option, DeprecatedAlias) and option.name == param:
            return max(option.opts, key=len)
    return None


def _for_the_cli(exc: OptionError, command: click.Command | None) -> str:
    """An OptionError's message with its Python parameter name (``iou_t must ...``) spelt as the
    command's flag (``--iou-t must ...``); unchanged when it names no parameter of the command."""
    message = str(exc)
    param = exc.param
    flag = _flag_of(command, param) if param else None
    if param and flag and message.startswith(param):
        return flag + message[len(param) :]
    return message


class CocostatGroup(click.Group):
    """The one boundary between the library and the user.

    Every error a user can cause ends as exactly one line ``error: ...`` on stderr and exit status 2:
    a :class:`CocostatError`, an ``OSError`` on a path (an unwritable output, an unreadable input),
    a decode error of an input file, and click's own usage errors (an unknown option, a bad choice,
    a missing required option). Ctrl-C ends with one line and exit status 130; a ``predict`` run
    stopped so continues with ``--resume``. ``--debug`` (or ``COCOSTAT_DEBUG=1``) shows the traceback
    of every error instead.

    Library messages name Python parameters (``OptionError("iou_t must ...", param="iou_t")``); here,
    and only here, the parameter becomes the flag of the running command (``--iou-t must ...``).
    """

    command_class = CocostatCommand

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:  # usage errors: one line instead of Usage/Try/Error
            click.echo(f"error: {exc.format_message()} (see cocostat {_command_in(args)}--help)", err=True)
            rv = 2
        except (click.Abort, KeyboardInterrupt):  # Ctrl-C while click itself was parsing
            click.echo(f"error: {INTERRUPTED}", err=True)
            rv = EXIT_INTERRUPTED
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        debug = ctx.params.get("debug") or os.environ.get("COCOSTAT_DEBUG") == "1"
        with warnings.catch_warnings():
            warnings.simplefilter("always", CocostatWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except KeyboardInterrupt:
                if debug:
                    raise
                click.echo(f"error: {INTERRUPTED}", err=True)
                ctx.exit(EXIT_INTERRUPTED)
            except BrokenPipeError:  # `cocostat ... | head`: the reader left; say nothing
                sys.stdout = open(os.devnull, "w")  # so the exit flush cannot fail again
                ctx.exit(1)
            except Exception as exc:
                message = _one_line(exc)
                if message is None or debug:
                    raise
                if isinstance(exc, OptionError):
                    message = _for_the_cli(exc, self.commands.get(ctx.invoked_subcommand or ""))
                click.echo(f"error: {message}", err=True)
                ctx.exit(2)


def _command_in(args) -> str:
    """``'NAME '`` of the subcommand in ``args`` (for the --help hint of a usage error), else ``''``."""
    argv = sys.argv[1:] if args is None else list(args)
    name = next((a for a in argv if not a.startswith("-")), None)
    return f"{name} " if name in main.commands else ""


@click.group(cls=CocostatGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="cocostat")
@click.option("--debug", is_flag=True, help="Show a full traceback instead of a one-line error.")
def main(debug: bool) -> None:
    """COCO dataset statistics and YOLO anchor analytics.

    Every data command takes an optional DATASET: omitted or 'sample' for the built-in sample,
    a split name such as val2017 (looked up under --root), the path of a COCO JSON file, or a
    YOLO dataset: an ultralytics dataset YAML or Darknet .data file (with --split), an image-list
    .txt or an image folder.

    An option word means one thing in every command: --iou is an IoU kind (iou, giou, diou, ciou),
    --iou-t an IoU threshold in [0, 1], --size an integer of pixels, --anchors an anchor set,
    -k/--num-anchors a count, --examples K the images to list, --plot DIR the folder of a command's
    PNGs, and -o/--output what the command writes (a FILE, or the folder of predict and report).
    Old spellings (kmeans --anchors, overlap/errors --iou, errors --top and --draw, predict/report
    --out) still work for one release, with a warning.
    """


class OutputPath(click.Path):
    """A file or folder the command will write: refused before any work when it cannot be written.

    The nearest existing ancestor must be a folder this process may write to (``existing_file/x.json``
    is refused); a file output must not name an existing folder, a folder output not an existing file
    (``folder=None``: either). Nothing is created here: the write itself (atomic,
    :mod:`cocostat.atomic`) creates the folders.
    """

    def __init__(self, *, folder: bool | None = False):
        super().__init__(file_okay=not folder, dir_okay=folder is not False)

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        path = os.path.abspath(os.fspath(value))
        ancestor = os.path.dirname(path)
        while not os.path.lexists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            self.fail(f"{value}: cannot be written, {ancestor} is a file, not a folder", param, ctx)
        if not os.access(ancestor, os.W_OK | os.X_OK):
            self.fail(f"{value}: cannot be written, no write permission in {ancestor}", param, ctx)
        return value


OUTPUT_FILE = OutputPath()
OUTPUT_DIR = OutputPath(folder=True)
OUTPUT_FILE_OR_DIR = OutputPath(folder=None)


# --------------------------------------------------------------------------------------------------
# Shared options
# --------------------------------------------------------------------------------------------------
def dataset_options(func):
    """DATASET argument with --root, --images and --no-cache; passes a loaded ``dataset`` to the command."""

    @click.argument("dataset_name", metavar="[DATASET]", required=False)
    @click.option(
        "--root",
        type=click.Path(file_okay=False),
        default=None,
        help="COCO root holding annotations/instances_SPLIT.json (default: $COCOSTAT_ROOT, ./datasets/coco, ./coco).",
    )
    @click.option(
        "--images",
        type=click.Path(file_okay=False),
        default=None,
        help="Folder of the image files (default: ROOT/SPLIT or ROOT/images/SPLIT).",
    )
    @click.option(
        "--split",
        type=click.Choice(["train", "val", "test"]),
        default=None,
        help="Split of a YOLO dataset YAML or .data file [default: val, for every command].",
    )
    @click.option("--no-cache", is_flag=True, help="Parse the JSON again instead of using the array cache.")
    @functools.wraps(func)
    def wrapper(dataset_name, root, images, split, no_cache, **kwargs):
        from cocostat.data import load_dataset

        dataset = load_dataset(dataset_name, root=root, images=images, split=split, cache=not no_cache)
        return func(dataset=dataset, **kwargs)

    return wrapper


def output_options(func):
    """--format table|json|csv and --output FILE (written atomically)."""

    @click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people; json or csv for machines (on stdout).",
    )
    @click.option(
        "-o",
        "--output",
        type=OUTPUT_FILE,
        default=None,
        help="Write the result to FILE (atomically) instead of stdout.",
    )
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def device_option(func):
    """--device auto|cpu|cuda, resolved once here into a ``torch.device`` passed as ``device``."""

    @click.option(
        "--device",
        "device_name",
        default="auto",
        show_default=True,
        help="auto (cuda when available), cpu, cuda or cuda:N.",
    )
    @functools.wraps(func)
    def wrapper(*args, device_name, **kwargs):
        return func(*args, device=resolve_device(device_name), **kwargs)

    return wrapper


def resolve_device(name: str):
    """``auto`` -> cuda if available else cpu; an unavailable or unknown device is an OptionError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise OptionError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return device


def _wrote(*paths) -> None:
    """Name every file or folder a command wrote on stderr, one ``wrote PATH`` line each (None: skipped).

    The result of ``-o/--output`` is named by :func:`cocostat.render.emit`."""
    for path in paths:
        if path is not None and str(path):
            click.echo(f"wrote {path}", err=True)


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------
@main.command("info")
@dataset_options
@output_options
def info_cmd(dataset, fmt, output):
    """Images, annotations, categories, size buckets and box-size percentiles of a dataset."""
    from cocostat.summary import info

    emit(info(dataset), fmt, output)


@main.command("kmeans")
@dataset_options
@click.option(
    "--size",
    default=416,
    show_default=True,
    type=int,
    help="Network input side in pixels; box sizes are brought to it first. Any size >= 1: "
    "kmeans runs no model, so no grid stride constrains it (predict, anchor-audit and "
    "report need a multiple of their model's largest stride).",
)
@click.option(
    "--resize",
    type=click.Choice(["letterbox", "stretch"]),
    default="letterbox",
    show_default=True,
    help="letterbox: each image's long side becomes SIZE (ultralytics, mmdetection); "
    "stretch: width and height each become SIZE (Darknet).",
)
@click.option(
    "--multi-scale",
    nargs=2,
    type=int,
    default=None,
    metavar="MIN MAX",
    help="Each image gets a size drawn from the multiples of 32 in [MIN, MAX] (with --seed).",
)
@click.option(
    "-k",
    "--num-anchors",
    "k",
    default=9,
    show_default=True,
    type=int,
    help="Number of anchors to design (--anchors, elsewhere, is an anchor set).",
)
@deprecated_alias("--anchors", "--num-anchors", type=int)
@click.option(
    "--levels",
    default=None,
    type=int,
    help="Output levels to split the anchors into (default: round(k / 3), at least 1).",
)
@click.option(
    "--restarts",
    default=5,
    show_default=True,
    type=int,
    help="k-means runs from different k-means++ starts; the best is kept.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every random draw.")
@click.option(
    "--evolve", default=1000, show_default=True, type=int, help="Evolution generations after k-means (0: k-means only)."
)
@click.option(
    "--fitness",
    "fitness_name",
    type=click.Choice(["iou-bpr", "avg-iou", "ratio"]),
    default="iou-bpr",
    show_default=True,
    help="What the evolution maximises: iou-bpr = avg_iou + 0.05 x bpr_iou; avg-iou; "
    "ratio = ultralytics' mean(best_x * (best_x > 1/ratio_t)).",
)
@click.option(
    "--iou-t",
    default=0.225,
    show_default=True,
    type=float,
    help="wh-IoU threshold of the best possible recall and anchors-above figures.",
)
@click.option(
    "--ratio-t",
    default=4.0,
    show_default=True,
    type=float,
    help="Ratio threshold of ultralytics' ratio figures (a side ratio above it is a miss).",
)
@click.option("--include-crowd", is_flag=True, help="Keep iscrowd boxes (left out by default).")
@click.option(
    "--compare",
    multiple=True,
    metavar="ANCHORS",
    help="Also measure this anchor set: yolov3, yolov3-spp, yolov3-tiny, a Darknet cfg path, "
    "or a list '10,13, 16,30, ...'. Repeatable.",
)
@click.option(
    "--plot",
    type=OUTPUT_DIR,
    default=None,
    help=f"Write {KMEANS_PLOT} (box width/height density, log axes, anchors marked) into DIR.",
)
@device_option
@output_options
def kmeans_cmd(
    dataset,
    size,
    resize,
    multi_scale,
    k,
    levels,
    restarts,
    seed,
    evolve,
    fitness_name,
    iou_t,
    ratio_t,
    include_crowd,
    compare,
    plot,
    device,
    fmt,
    output,
):
    """Design YOLO anchors for a dataset (IoU k-means + evolution) and measure how anchor sets fit it.

    Box sizes are first brought to the network input (--resize, --size or --multi-scale). The
    anchors are printed sorted by area and split into output levels, as Darknet cfg lines, as a
    yolov5 YAML block and (--format json) as JSON. Figures, for the new anchors and every
    --compare set: avg_iou (mean best wh-IoU), bpr_iou (share of boxes with best wh-IoU > --iou-t),
    anchors_above_iou (anchors per box above it), bpr_ratio and anchors_above_ratio (ultralytics'
    side-ratio test at --ratio-t), and per anchor the boxes it is best for.
    """
    from cocostat.anchors import kmeans

    report = kmeans(
        dataset,
        size=size,
        k=k,
        resize=resize,
        multi_scale=tuple(multi_scale) if multi_scale else None,
        include_crowd=include_crowd,
        restarts=restarts,
        seed=seed,
        evolve=evolve,
        fitness_name=fitness_name,
        iou_t=iou_t,
        ratio_t=ratio_t,
        compare=compare,
        levels=levels,
        device=device,
        plot=os.path.join(plot, KMEANS_PLOT) if plot else None,
    )
    _wrote(report.plot)
    emit(report, fmt, output)


@main.command("overlap")
@dataset_options
@click.option(
    "--gap",
    "gap",
    type=float,
    default=10.0,
    show_default=True,
    help="A pair counts when the gap between its boxes is < this (pixels).",
)
@click.option(
    "--iou-t",
    "iou",
    type=float,
    default=0.6,
    show_default=True,
    help="IoU threshold: a pair counts when its IoU (or IoA, see --pair-metric) is > this.",
)
@deprecated_alias("--iou", "--iou-t", type=float)
@click.option(
    "--pair-metric",
    type=click.Choice(["iou", "ioa"]),
    default="iou",
    show_default=True,
    help="iou: intersection over union; ioa: intersection over the smaller box's area.",
)
@click.option(
    "--center",
    "center",
    type=float,
    default=10.0,
    show_default=True,
    help="A pair counts when its centre distance is < this (pixels).",
)
@click.option(
    "--crowd-pairs",
    type=int,
    default=7,
    show_default=True,
    help="An image is crowded with at least this many pairs under --center.",
)
@click.option(
    "--aspect",
    "aspect",
    type=float,
    default=4.0,
    show_default=True,
    help="An object is elongated when max(w/h, h/w) >= this.",
)
@click.option(
    "--size",
    "size",
    type=int,
    default=None,
    help="First scale each image's boxes so its long side is SIZE pixels (letterbox).",
)
@click.option("--exclude-crowd", is_flag=True, help="Drop iscrowd annotations (default: counted).")
@click.option("--by-category", is_flag=True, help="List the category pairs with most pairs per criterion.")
@click.option(
    "--per-image",
    "per_image",
    type=OUTPUT_FILE,
    default=None,
    help="Write one row per image to FILE (.csv, or .parquet/.pq).",
)
@click.option(
    "--examples",
    "examples",
    type=int,
    default=0,
    show_default=True,
    help="List the K most extreme images per criterion.",
)
@click.option(
    "--plot",
    "plot_dir",
    type=OUTPUT_DIR,
    default=None,
    help="Write PNG histograms of pair IoU, gap, centre distance and aspect ratio to DIR.",
)
@output_options
def overlap_cmd(
    dataset,
    gap,
    iou,
    pair_metric,
    center,
    crowd_pairs,
    aspect,
    size,
    exclude_crowd,
    by_category,
    per_image,
    examples,
    plot_dir,
    fmt,
    output,
):
    """How often objects of one image sit close, overlap, share a centre, or are elongated.

    Over every unordered pair of annotations in the same image (n annotations give n(n-1)/2
    pairs), with boxes in the image's original pixels unless --size is given:

    \b
    - gap: distance between the closest points of the two boxes, 0 when they
      touch or overlap; a pair counts when gap < --gap.
    - IoU: intersection over union (--pair-metric ioa: intersection over the
      smaller box's area); a pair counts when > --iou-t. 0 for zero-area boxes.
    - centre distance: between the box centres; counts when < --center.
    - crowded image: at least --crowd-pairs pairs under the centre threshold.
    - elongated object: max(w/h, h/w) >= --aspect; a zero-width or zero-height
      box counts as elongated.

    For each pair criterion: the pairs meeting it and their share of all pairs, and the images
    with at least one such pair and their share of the images with annotations. iscrowd
    annotations are counted unless --exclude-crowd.
    """
    from cocostat.pairs import overlap, per_image_format, plot_overlap, write_per_image

    if per_image:
        per_image_format(per_image)  # a bad extension fails before the analysis runs
    report = overlap(
        dataset,
        gap=gap,
        iou=iou,
        pair_metric=pair_metric,
        center=center,
        crowd_pairs=crowd_pairs,
        aspect=aspect,
        size=size,
        exclude_crowd=exclude_crowd,
        by_category=by_category,
        examples=examples,
    )
    if per_image:
        _wrote(write_per_image(report, per_image))
    if plot_dir:
        _wrote(*plot_overlap(report, plot_dir))
    emit(report, fmt, output)


def _passive_omp_wait(func):
    """``OMP_WAIT_POLICY=PASSIVE`` unless the user set it, before torch is first imported (OpenMP reads
    it once, when torch loads it): torch's threads then sleep at the end of a parallel region instead of
    spinning, which on the CPU hands the cores to the image-decoding workers and to other programs
    (``reports/bench_predict.md`` measures it). ``OMP_WAIT_POLICY=`` (empty) keeps OpenMP's own default."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if "torch" not in sys.modules:  # in a process that already has torch it would change nothing
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return func(*args, **kwargs)

    return wrapper


@main.command("predict")
@_passive_omp_wait
@dataset_options
@click.option("--cfg", "cfg", required=True, type=click.Path(dir_okay=False), help="Darknet .cfg file.")
@click.option(
    "--weights",
    required=True,
    type=click.Path(dir_okay=False),
    help="Darknet .weights file, or an ultralytics YOLOv3 .pt checkpoint (read with weights_only=True).",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=OUTPUT_DIR,
    help="Predictions folder to write (manifest.json, candidates/ and detections/ parts, detections.json).",
)
@deprecated_alias("--out", "--output", type=OUTPUT_DIR)
@click.option(
    "--size",
    default=416,
    show_default=True,
    help="Letterbox side in pixels: a multiple of the model's largest stride (32), at most 4096.",
)
@click.option(
    "--batch-size",
    default=None,
    type=int,
    help="Images per forward pass [default: 32 on CUDA, 4 on the CPU, where small batches run fastest].",
)
@device_option
@click.option("--half", is_flag=True, help="float16 inference (CUDA only).")
@click.option(
    "--conf",
    default=0.001,
    show_default=True,
    help="Keep (box, class) pairs with objectness x class probability > CONF.",
)
@click.option("--nms-iou", default=0.6, show_default=True, help="Class-aware NMS drops boxes with IoU > this.")
@click.option("--max-det", default=100, show_default=True, help="Detections kept per image.")
@click.option(
    "--neighborhood",
    default=1,
    show_default=True,
    help="Candidate cells within this many cells of each annotation's centre cell (1: a 3x3 block).",
)
@click.option(
    "--workers",
    default=None,
    type=int,
    help="Image-decoding worker processes (default: min(8, cores) on CUDA, cores // 4 from 1 to 4 "
    "on CPU; 0: decode in the main process).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT, skipping finished images.")
@click.option(
    "--skip-bad-images",
    is_flag=True,
    help="Go on without image files that are missing or cannot be decoded (counted in a warning, "
    "listed in OUT/manifest.json); default: the first one is an error.",
)
@click.option(
    "--chunk-images",
    default=None,
    type=int,
    help="Images per resumable chunk [default: 256]; --resume needs the same value.",
)
@click.option(
    "--draw",
    default=0,
    show_default=True,
    metavar="K",
    help="Save the first K images with detections drawn to OUT/draw/ (errors draws into --draw-dir).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Summary on stdout: table for people; json or csv for machines.",
)
def predict_cmd(
    dataset,
    cfg,
    weights,
    out_dir,
    size,
    batch_size,
    device,
    half,
    conf,
    nms_iou,
    max_det,
    neighborhood,
    workers,
    resume,
    skip_bad_images,
    chunk_images,
    draw,
    no_progress,
    fmt,
):
    """Run a Darknet YOLOv3 model over DATASET's images once; write detections and candidates to OUT (format 3).

    Scale past one machine with `torchrun --nproc-per-node N -m cocostat predict ...`: each rank takes
    every N-th image and writes its own part (gloo on CPU, nccl on CUDA).
    """
    from cocostat.models import load_model
    from cocostat.predict import distributed, predict

    with distributed(device) as rank_device:  # cuda:LOCAL_RANK under torchrun
        model = load_model(cfg, weights, device=rank_device)
        result = predict(
            dataset,
            model,
            size=size,
            batch_size=batch_size,
            conf=conf,
            nms_iou=nms_iou,
            max_det=max_det,
            neighborhood=neighborhood,
            workers=workers,
            half=half,
            progress=not no_progress,
            out_dir=out_dir,
            resume=resume,
            draw=draw,
            skip_bad_images=skip_bad_images,
            chunk_images=chunk_images,
        )
    if result.rank == 0:
        _wrote(result.out_dir, *result.drawn)
        emit(result, fmt)


@main.command("convert-predictions")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=OUTPUT_DIR,
    default=None,
    help="Write the converted folder here [default: convert FOLDER in place].",
)
def convert_predictions_cmd(folder, out_dir):
    """Convert a predictions folder of format 1 or 2 to the current format (3).

    Format 1 (cocostat 0.1: candidates.parquet, one row per candidate) is read once, whole, as the
    version-1 reader did, and written in parts that are read in chunks. Format 2 is rewritten part
    by part, each distinct prediction of an image stored once (about a quarter smaller on real
    predictions); it reads correctly as it is, so converting it only saves space.
    """
    from cocostat.candidates import CANDIDATES_DIR, DETECTIONS_DIR, FORMAT_VERSION, upgrade_store

    if out_dir is None and not os.access(folder, os.W_OK | os.X_OK):  # in place: checked before any work
        raise OptionError(f"{folder}: cannot be converted in place, no write permission (give -o DIR)")
    target = Path(upgrade_store(folder, out_dir))
    parts = [*sorted((target / CANDIDATES_DIR).glob("*.parquet")), *sorted((target / DETECTIONS_DIR).glob("*"))]
    _wrote(*parts, *[f for f in (target / "detections.json", target / "manifest.json") if f.is_file()])
    click.echo(f"converted {folder} to predictions format {FORMAT_VERSION} in {target}")


#: Choices of --iou, spelt out here so that `cocostat info` does not pay torch's import (boxes.IOU_KINDS
#: lives in a torch module); tests/test_cli.py keeps them equal. The assigner registry is torch-free.
IOU_CHOICES = ("iou", "giou", "diou", "ciou")
ASSIGNER_CHOICES = ASSIGNER_NAMES


def _source_options(func):
    """Where predictions come from (a folder, or cfg and weights), and the anchors and input size."""

    @click.option(
        "--predictions",
        "predictions_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Predictions folder written by `cocostat predict -o DIR` (no model needed).",
    )
    @click.option(
        "--cfg",
        "cfg",
        type=click.Path(dir_okay=False),
        default=None,
        help="Darknet cfg: run the model on the fly (with --weights).",
    )
    @click.option(
        "--weights",
        "weights",
        type=click.Path(dir_okay=False),
        default=None,
        help="Darknet .weights or ultralytics .pt checkpoint (with --cfg).",
    )
    @click.option(
        "--anchors",
        "anchors",
        default=None,
        help="Anchors the assigner matches by: preset (yolov3, yolov3-spp, yolov3-tiny), cfg path "
        "or '10,13, 16,30, ...' [default: the model's or predictions', else yolov3-spp].",
    )
    @click.option("--size", type=int, default=None, help="Network input size [default: the predictions', else 416].")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def _audit_options(func):
    """Options shared by anchor-audit and mismatch: where predictions come from, anchors, assigner, IoU."""

    @_source_options
    @click.option(
        "--iou",
        "iou",
        type=click.Choice(IOU_CHOICES),
        default="iou",
        show_default=True,
        help="How a prediction is scored against its object.",
    )
    @click.option(
        "--assigner",
        type=click.Choice(ASSIGNER_CHOICES),
        default="yolov3",
        show_default=True,
        help="Label assigner (see `cocostat assigners`); yolov3: wh-IoU > --iou-t; darknet: single "
        "best anchor; yolov5: ratios < --ratio-t plus 2 neighbour cells.",
    )
    @click.option(
        "--iou-t",
        "iou_t",
        type=float,
        default=0.225,
        show_default=True,
        help="wh-IoU threshold of the yolov3 assigner.",
    )
    @click.option(
        "--ratio-t",
        "ratio_t",
        type=float,
        default=4.0,
        show_default=True,
        help="Width/height ratio threshold of the yolov5 assigner.",
    )
    @click.option(
        "--per-object",
        "per_object",
        type=OUTPUT_FILE,
        default=None,
        help="Write one row per object to FILE (.parquet or .csv).",
    )
    @click.option("--examples", type=int, default=0, show_default=True, help="List the K worst images.")
    @click.option(
        "--batch-size",
        "batch_size",
        type=int,
        default=16,
        show_default=True,
        help="Images per forward pass (with --cfg/--weights).",
    )
    @functools.wraps(func)
    def wrapper(*args, predictions_dir, cfg, weights, **kwargs):
        from cocostat.sources import check_frame_path, check_model_source

        check_model_source(predictions_dir, cfg, weights)
        check_frame_path(kwargs.get("per_object"))
        return func(*args, predictions_dir=predictions_dir, model_files=(cfg, weights) if cfg else None, **kwargs)

    return wrapper


def _audit_predictions(dataset, predictions_dir, model_files, size, neighborhood, batch_size, device):
    """A predictions folder path, the result of running the model on the fly, or None (boxes only)."""
    if model_files is None:
        return predictions_dir
    from cocostat.sources import run_model

    return run_model(dataset, *model_files, size=size, neighborhood=neighborhood, batch_size=batch_size, device=device)


@main.command("anchor-audit")
@dataset_options
@_audit_options
@click.option(
    "--neighborhood",
    type=int,
    default=1,
    show_default=True,
    help="Cells around the centre cell that --cfg/--weights extracts (for the neighbour-cell row).",
)
@device_option
@output_options
def anchor_audit_cmd(
    dataset,
    predictions_dir,
    model_files,
    anchors,
    size,
    iou,
    assigner,
    iou_t,
    ratio_t,
    per_object,
    examples,
    batch_size,
    neighborhood,
    device,
    fmt,
    output,
):
    """Do the anchors a label assigner picks predict each object best?

    With --predictions DIR (or --cfg/--weights) it reads every anchor's raw prediction at each
    object's cell; with neither it reports what box sizes and anchors alone tell (matching counts,
    wh-IoU at matching, objects never matched).
    """
    from cocostat.audit import anchor_audit
    from cocostat.predict import _dist_info, distributed

    with distributed(device) as rank_device:  # under torchrun each rank reduces its share of the chunks
        preds = _audit_predictions(dataset, predictions_dir, model_files, size, neighborhood, batch_size, rank_device)
        report = anchor_audit(
            dataset,
            preds,
            anchors=anchors,
            size=size,
            iou=iou,
            iou_t=iou_t,
            assigner=assigner,
            ratio_t=ratio_t,
            examples=examples,
            device=rank_device,
            per_object=per_object or False,
        )
        rank, world = _dist_info()
    if rank == 0:
        if per_object and world == 1:
            _wrote(per_object)
        emit(report, fmt, output)


@main.command("mismatch")
@dataset_options
@_audit_options
@click.option(
    "--neighborhood",
    type=int,
    default=0,
    show_default=True,
    help="Candidates: every anchor at the cells within this many cells of the centre cell.",
)
@click.option(
    "--plot",
    "plot",
    type=OUTPUT_DIR,
    default=None,
    help="Write 2-D histograms of IoU against objectness and class-aware score per level into DIR.",
)
@device_option
@output_options
def mismatch_cmd(
    dataset,
    predictions_dir,
    model_files,
    anchors,
    size,
    iou,
    assigner,
    iou_t,
    ratio_t,
    per_object,
    examples,
    batch_size,
    neighborhood,
    plot,
    device,
    fmt,
    output,
):
    """Is the most confident prediction of each object also its best localised one?"""
    from cocostat.mismatch import mismatch
    from cocostat.predict import _dist_info, distributed

    with distributed(device) as rank_device:  # under torchrun each rank reduces its share of the chunks
        preds = _audit_predictions(
            dataset, predictions_dir, model_files, size, max(neighborhood, 1), batch_size, rank_device
        )
        report = mismatch(
            dataset,
            preds,
            anchors=anchors,
            size=size,
            iou=iou,
            iou_t=iou_t,
            assigner=assigner,
            ratio_t=ratio_t,
            neighborhood=neighborhood,
            examples=examples,
            plot=plot,
            device=rank_device,
            per_object=per_object or False,
        )
        rank, world = _dist_info()
    if rank == 0:
        _wrote(*report.plots)
        if per_object and world == 1:
            _wrote(per_object)
        emit(report, fmt, output)


@main.command("assigners")
@dataset_options
@_source_options
@click.option(
    "--assigners",
    "assigners",
    default=None,
    help=f"Comma-separated, from: {', '.join(ASSIGNER_NAMES)} [default: every assigner the inputs allow].",
)
@click.option(
    "--reference",
    type=click.Choice(ASSIGNER_NAMES),
    default="yolov3",
    show_default=True,
    help="The assigner the others are compared with (Jaccard of positive sets).",
)
@click.option("--topk", type=int, default=5, show_default=True, help="k of topk-anchor and topk-iou.")
@click.option(
    "--alpha",
    type=float,
    default=0.5,
    show_default=True,
    help="mixed: alpha x anchor wh-IoU + (1 - alpha) x prediction IoU.",
)
@click.option(
    "--iou",
    "iou",
    type=click.Choice(IOU_CHOICES),
    default="iou",
    show_default=True,
    help="IoU kind of the prediction figures and of topk-iou, best-pred and mixed.",
)
@click.option(
    "--iou-t",
    "iou_t",
    type=float,
    default=0.225,
    show_default=True,
    help="Threshold of yolov3 (wh-IoU) and mixed (mixed quality).",
)
@click.option(
    "--ratio-t", "ratio_t", type=float, default=4.0, show_default=True, help="Width/height ratio threshold of yolov5."
)
@click.option(
    "--plot",
    "plot",
    type=OUTPUT_DIR,
    default=None,
    help="Write assigners.png (positives per object and per level, agreement, IoU) into DIR.",
)
@click.option(
    "--per-object",
    "per_object",
    type=OUTPUT_FILE,
    default=None,
    help="Write one row per (assigner, object) to FILE (.parquet or .csv).",
)
@click.option(
    "--neighborhood",
    type=int,
    default=1,
    show_default=True,
    help="Cells around the centre cell that --cfg/--weights extracts.",
)
@click.option(
    "--batch-size",
    "batch_size",
    type=int,
    default=16,
    show_default=True,
    help="Images per forward pass (with --cfg/--weights).",
)
@device_option
@output_options
def assigners_cmd(
    dataset,
    predictions_dir,
    cfg,
    weights,
    anchors,
    size,
    assigners,
    reference,
    topk,
    alpha,
    iou,
    iou_t,
    ratio_t,
    plot,
    per_object,
    neighborhood,
    batch_size,
    device,
    fmt,
    output,
):
    """Which label assignment does this model agree with? Every assigner on the same objects and predictions.

    Box-only assigners (yolov3, darknet, yolov5, atss, topk-anchor) run over the whole grid from box
    sizes alone; with --predictions DIR (or --cfg/--weights) the prediction-aware ones (topk-iou,
    best-pred, mixed, simota, tal) choose among the stored neighbourhood, and every assigner's
    positives are scored by the model's predictions.
    """
    from cocostat.lab import assigner_lab
    from cocostat.sources import check_frame_path, check_model_source, write_frame

    check_model_source(predictions_dir, cfg, weights)
    check_frame_path(per_object)
    preds = _audit_predictions(
        dataset, predictions_dir, (cfg, weights) if cfg else None, size, neighborhood, batch_size, device
    )
    result = assigner_lab(
        dataset,
        preds,
        anchors=anchors,
        size=size,
        assigners=assigners,
        reference=reference,
        topk=topk,
        alpha=alpha,
        iou=iou,
        iou_t=iou_t,
        ratio_t=ratio_t,
        device=device,
    )
    if plot:
        _wrote(*result.plot(plot))
    if per_object:
        _wrote(write_frame(result.per_object, per_object))
    emit(result, fmt, output)


@main.command("eval")
@dataset_options
@click.option(
    "-d",
    "--detections",
    required=True,
    type=click.Path(),
    help="COCO results JSON (a list of {image_id, category_id, bbox: [x, y, w, h], score}), or a "
    "predictions folder (its columnar detections).",
)
@click.option(
    "--class-agnostic", is_flag=True, help="Localisation-only AP: every category merged into one on both sides."
)
@click.option("--per-class", is_flag=True, help="One row per class in the P/R table.")
@click.option(
    "--conf",
    type=float,
    default=None,
    help="Also give the P/R table at this confidence (besides the one maximising mean F1).",
)
@click.option(
    "--backend",
    type=click.Choice(["pycocotools", "faster"]),
    default="pycocotools",
    show_default=True,
    help="faster: faster-coco-eval, if installed (same numbers).",
)
@output_options
def eval_cmd(dataset, detections, class_agnostic, per_class, conf, backend, fmt, output):
    """COCO bbox evaluation: pycocotools' 12-line summary and the YOLOv3 P, R, mAP@0.5, F1 table."""
    from cocostat.evaluate import evaluate

    emit(
        evaluate(dataset, detections, class_agnostic=class_agnostic, conf=conf, per_class=per_class, backend=backend),
        fmt,
        output,
    )


@main.command("errors")
@dataset_options
@click.option(
    "-d",
    "--detections",
    type=click.Path(),
    default=None,
    help="COCO results JSON or a predictions folder [default: the detections of --predictions].",
)
@click.option(
    "--predictions",
    "predictions_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Predictions folder of `cocostat predict`: its candidate table gives suppressed objects.",
)
@click.option(
    "--iou-t",
    "iou",
    type=float,
    default=0.5,
    show_default=True,
    help="Foreground IoU threshold: matching, Cls/Loc/Dupe errors, good candidates.",
)
@deprecated_alias("--iou", "--iou-t", type=float)
@click.option("--bg-iou", type=float, default=0.1, show_default=True, help="Background IoU of TIDE.")
@click.option(
    "--merge-iou",
    type=float,
    default=0.3,
    show_default=True,
    help="A merged detection overlaps each of two objects with IoU above this.",
)
@click.option(
    "--conf",
    type=float,
    default=0.25,
    show_default=True,
    help="Operating confidence: objects are found when their matched detection scores this much.",
)
@click.option("--examples", "top", type=int, default=10, show_default=True, help="List the K hardest images.")
@deprecated_alias("--top", "--examples", type=int)
@click.option(
    "--draw-dir",
    "draw",
    type=OUTPUT_DIR,
    default=None,
    help="Draw ground truth and detections on the --examples images into DIR (PNG); "
    "--draw, in predict, is a count of images.",
)
@deprecated_alias("--draw", "--draw-dir", type=OUTPUT_DIR)
@output_options
def errors_cmd(dataset, detections, predictions_dir, iou, bg_iou, merge_iou, conf, top, draw, fmt, output):
    """TIDE-style errors (what each error type costs in AP), merged and suppressed objects, hard images."""
    from cocostat.diagnose import diagnose

    report = diagnose(
        dataset,
        detections,
        predictions=predictions_dir,
        iou=iou,
        bg_iou=bg_iou,
        merge_iou=merge_iou,
        conf=conf,
        top=top,
        draw=draw,
    )
    _wrote(*report.drawn)
    emit(report, fmt, output)


@main.command("convert")
@dataset_options
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=OUTPUT_FILE_OR_DIR,
    help="COCO JSON file to write (from a YOLO dataset), or YOLO layout folder (from COCO JSON).",
)
@click.option(
    "--to-split",
    type=click.Choice(["train", "val", "test"]),
    default="val",
    show_default=True,
    help="The split key in the YAML written from COCO JSON.",
)
@click.option(
    "--folder",
    default=None,
    help="Folder name of that split: OUT/images/FOLDER, OUT/labels/FOLDER [default: the split].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="What was written, on stdout: table for people; json or csv for machines.",
)
def convert_cmd(dataset, output, to_split, folder, fmt):
    """YOLO dataset -> COCO instances JSON, or COCO JSON -> YOLO labels and a dataset YAML.

    The direction follows DATASET. COCO -> YOLO leaves crowd boxes out (as ultralytics' COCO labels
    do) and links the images into OUT/images/FOLDER; both directions write atomically.
    """
    from cocostat.yolo import convert

    emit(convert(dataset, output, split=to_split, folder=folder), fmt)


@main.command("report")
@dataset_options
@click.option(
    "--cfg",
    "cfg",
    type=click.Path(dir_okay=False),
    default=None,
    help="Darknet cfg: run the model once into OUT/predictions/ (with --weights).",
)
@click.option(
    "--weights",
    "weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="Darknet .weights or ultralytics .pt checkpoint (with --cfg).",
)
@click.option(
    "--predictions",
    "predictions_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Predictions folder written by `cocostat predict -o DIR` (instead of --cfg/--weights).",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=OUTPUT_DIR,
    help="Report folder: report.md, report.html and plots/ are written there.",
)
@deprecated_alias("--out", "--output", type=OUTPUT_DIR)
@click.option(
    "--size",
    type=int,
    default=None,
    help="Network input side in pixels (kmeans, boxes-only audit, predict) [default: the predictions', else 416].",
)
@device_option
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr while the model runs.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="What was run and written, on stdout: table for people; json or csv for machines.",
)
def report_cmd(dataset, cfg, weights, predictions_dir, out_dir, size, device, no_progress, fmt):
    """Every analysis the inputs allow on one markdown page and one self-contained HTML page.

    Runs info, overlap, kmeans (compared with the yolov3, yolov3-spp and yolov3-tiny anchors) and
    anchor-audit (box sizes only without predictions); with --predictions DIR or --cfg/--weights
    also mismatch, eval and errors. Each analysis comes as tables with its PNG plots and the exact
    `cocostat ...` command that reproduces its numbers.
    """
    from cocostat.report import build_report, dataset_args

    params = click.get_current_context().params  # the DATASET as the user typed it, for the commands
    result = build_report(
        dataset,
        out_dir=out_dir,
        predictions=predictions_dir,
        cfg=cfg,
        weights=weights,
        size=size,
        device=device,
        progress=not no_progress,
        dataset_argv=dataset_args(
            params.get("dataset_name"), params.get("root"), params.get("images"), params.get("split")
        ),
    )
    click.echo(f"wrote {result.markdown} and {result.html}", err=True)
    emit(result, fmt)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
