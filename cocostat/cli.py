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

import click

from cocostat import __version__
from cocostat.errors import CocostatError, CocostatWarning, OptionError
from cocostat.render import FORMATS, emit

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, CocostatWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        click.echo(warnings.formatwarning(message, category, filename, lineno, line).rstrip(), err=True)


class CocostatGroup(click.Group):
    """A click group that turns CocostatError into a one-line message and exit status 2."""

    def invoke(self, ctx: click.Context):
        debug = ctx.params.get("debug") or os.environ.get("COCOSTAT_DEBUG") == "1"
        with warnings.catch_warnings():
            warnings.simplefilter("always", CocostatWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except CocostatError as exc:
                if debug:
                    raise
                click.echo(f"error: {exc}", err=True)
                ctx.exit(2)


@click.group(cls=CocostatGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="cocostat")
@click.option("--debug", is_flag=True, help="Show a full traceback instead of a one-line error.")
def main(debug: bool) -> None:
    """COCO dataset statistics and YOLO anchor analytics.

    Every data command takes an optional DATASET: omitted or 'sample' for the built-in sample,
    a split name such as val2017 (looked up under --root), or the path of a COCO JSON file.
    """


# --------------------------------------------------------------------------------------------------
# Shared options
# --------------------------------------------------------------------------------------------------
def dataset_options(func):
    """DATASET argument with --root, --images and --no-cache; passes a loaded ``dataset`` to the command."""

    @click.argument("dataset_name", metavar="[DATASET]", required=False)
    @click.option("--root", type=click.Path(file_okay=False), default=None,
                  help="COCO root holding annotations/instances_SPLIT.json (default: $COCOSTAT_ROOT, "
                       "./datasets/coco, ./coco).")
    @click.option("--images", type=click.Path(file_okay=False), default=None,
                  help="Folder of the image files (default: ROOT/SPLIT or ROOT/images/SPLIT).")
    @click.option("--no-cache", is_flag=True, help="Parse the JSON again instead of using the array cache.")
    @functools.wraps(func)
    def wrapper(dataset_name, root, images, no_cache, **kwargs):
        from cocostat.data import load_dataset

        dataset = load_dataset(dataset_name, root=root, images=images, cache=not no_cache)
        return func(dataset=dataset, **kwargs)

    return wrapper


def output_options(func):
    """--format table|json|csv and --output FILE (written atomically)."""

    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                  help="table for people; json or csv for machines (on stdout).")
    @click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
                  help="Write the result to FILE (atomically) instead of stdout.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def device_option(func):
    """--device auto|cpu|cuda, resolved once here into a ``torch.device`` passed as ``device``."""

    @click.option("--device", "device_name", default="auto", show_default=True,
                  help="auto (cuda when available), cpu, cuda or cuda:N.")
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


# [kmeans commands go here]

# [overlap commands go here]

# [predict commands go here]

# [audit commands go here]

# [eval commands go here]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
