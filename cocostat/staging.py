"""A folder rebuilt whole: the new content is built in a hidden sibling folder and swapped in at the end.

``cocostat report -o OUT`` writes many files (two pages, a dozen plots, a predictions folder).
Written in place, a crash or Ctrl-C halfway would leave new plots beside an old ``report.md`` that
describes another dataset. Instead :class:`StagedFolder` builds the new content in
``PARENT/.OUT.staging-PID-XXXX`` and, when everything has been written, swaps it in with two
renames (``OUT`` -> ``PARENT/.OUT.old-PID-XXXX/OUT``, stage -> ``OUT``), then deletes the old folder.
Until the swap ``OUT`` is untouched; after it ``OUT`` holds only the new content; there is never a
mix. Nothing is copied: files of the old folder that the new content does not replace (a user's
own file in ``OUT``, a predictions folder given as input) are hard-linked into the stage before the
swap (copied where the file system has no hard links), so they survive it.

A run killed between the two renames leaves ``OUT`` missing and the old folder beside it: the next
:class:`StagedFolder` on ``OUT`` renames it back first. Stages and old folders left by dead processes
are removed. ``OUT`` must not be the current folder nor hold it (the shell would be left in a
deleted folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from cocostat.errors import OptionError

__all__ = ["StagedFolder"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _leftovers(parent: Path, name: str, kind: str) -> list[Path]:
    """``.NAME.KIND-PID-*`` siblings whose process is gone, newest first."""
    out = []
    for p in parent.glob(f".{name}.{kind}-*"):
        pid = p.name[len(f".{name}.{kind}-") :].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            out.append(p)
    return sorted(out, key=lambda p: p.stat().st_mtime, reverse=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _link_tree(src: Path, dst: Path) -> None:
    """Recreate ``src`` at ``dst``: directories made, files hard-linked (copied if that fails), links kept."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir()
        for e in src.iterdir():
            _link_tree(e, dst / e.name)
    else:
        try:
            os.link(src, dst)
        except OSError:  # no hard links here (another device, FAT, some network file systems)
            shutil.copy2(src, dst)


class StagedFolder:
    """Build the new content of folder ``out`` in a hidden sibling, then :meth:`commit` it in whole.

    Args:
        out: the folder to (re)build, as the user spelt it (paths shown to the user keep that spelling).
        keep: ``keep(rel)`` says whether an entry of the old folder (``rel`` relative to ``out``, e.g.
            ``Path("notes.txt")``, ``Path("plots/mine.png")``) is carried into the new folder when the new
            content has no entry of that name. An entry the new content has always wins; folders
            both have are merged entry by entry.

    Use as a context manager: on an exception (Ctrl-C included) the stage is deleted and ``out`` is
    left as it was; :meth:`commit` swaps the stage in.

    Raises:
        OptionError: ``out`` is a file, or is (or holds) the current folder.
    """

    def __init__(self, out: str | os.PathLike, keep: Callable[[Path], bool]):
        self.out = Path(out)
        self.keep = keep
        self.target = Path(os.path.realpath(self.out))  # where the swap happens (a link to a folder is followed)
        if self.target.exists() and not self.target.is_dir():
            raise OptionError(f"out_dir must be a folder, but {self.out} is a file", param="out_dir")
        cwd = Path.cwd().resolve()
        if cwd == self.target or self.target in cwd.parents:
            raise OptionError(
                f"out_dir {self.out} is the current folder or holds it; give a folder of its own", param="out_dir"
            )
        self.path: Path | None = None
        self._made: list[Path] = []

    # ---- paths ----------------------------------------------------------------------------------------
    def real(self, path: str | os.PathLike) -> Path:
        """Where ``path`` (``out`` or a path under it, as spelt from ``out``) is while staged."""
        rel = Path(path).relative_to(self.out)
        return self._stage() / rel

    def _stage(self) -> Path:
        if self.path is None:
            raise RuntimeError("StagedFolder is used outside its `with` block (or after commit/discard)")
        return self.path

    def shown(self, text: str) -> str:
        """``text`` with the stage's path spelt as ``out`` (for results, messages, plot lists)."""
        return text.replace(str(self.path), str(self.out)) if self.path is not None else text

    # ---- life cycle -------------------------------------------------------------------------------------
    def __enter__(self) -> StagedFolder:
        parent, name = self.target.parent, self.target.name
        missing = [p for p in (parent, *parent.parents) if not p.exists()]
        parent.mkdir(parents=True, exist_ok=True)
        self._made = missing  # made here, removed again on failure when still empty
        old = _leftovers(parent, name, "old")
        if old and not self.target.exists() and (old[0] / name).is_dir():  # killed between the renames of a swap
            os.rename(old[0] / name, self.target)
        for p in old + _leftovers(parent, name, "staging"):
            shutil.rmtree(p, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{name}.staging-{os.getpid()}-", dir=parent))
        os.chmod(self.path, self.target.stat().st_mode & 0o7777 if self.target.is_dir() else 0o777 & ~_umask())
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()

    def discard(self) -> None:
        """Delete the stage (and the parent folders made for it, when empty); ``out`` is untouched."""
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        for p in self._made:
            try:
                p.rmdir()
            except OSError:
                break

    def commit(self) -> None:
        """Carry the old entries ``keep`` keeps into the stage, then swap the stage in for ``out``."""
        stage = self._stage()
        if self.target.is_dir():
            self._carry(self.target, stage, Path())
            holder = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-{os.getpid()}-", dir=self.target.parent))
            os.rename(self.target, holder / self.target.name)
            os.rename(stage, self.target)
            shutil.rmtree(holder, ignore_errors=True)
        else:
            os.rename(stage, self.target)
        self.path = None
        self._made = []

    def _carry(self, old_dir: Path, new_dir: Path, rel: Path) -> None:
        for e in sorted(old_dir.iterdir()):
            r = rel / e.name
            if not self.keep(r):
                continue
            target = new_dir / e.name
            if target.exists() or target.is_symlink():
                if e.is_dir() and not e.is_symlink() and target.is_dir() and not target.is_symlink():
                    self._carry(e, target, r)
                continue
            _link_tree(e, target)
