"""Atomic file writes: write to a temporary file in the target's folder, then rename over it.

A reader never sees a half-written file, and an interrupted or failed write leaves nothing behind.

A process killed outright (SIGKILL, OOM, power loss) cannot delete its temporary file. Temporary
names say whose they are: ``.NAME.cocostat-tmp.HOST.PID.RANDOM.SUFFIX`` in the target's folder,
so ``ls -a`` shows them and :func:`sweep_stale` finds them. Every atomic write sweeps its folder
first: a temporary file of this host whose process is no longer alive is deleted. (Files of other
hosts, on a shared folder, are left to their host; files of live processes are being written.)
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.parquet as pq

#: marks cocostat's temporary files; see the module docstring for the whole name.
TMP_TAG = ".cocostat-tmp."
_TMP_RE = re.compile(re.escape(TMP_TAG) + r"(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process (or a pid no system has)
        return isinstance(pid, int) and pid < 2**31
    return True


def sweep_stale(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files in ``folder`` left by dead cocostat processes of this host; return them."""
    host = _host()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(Path(folder)))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.search(entry.name)
        if m is None or not entry.name.startswith(".") or m["host"] != host or _alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):  # another process may be sweeping too
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _reason(exc: OSError, target: Path) -> str:
    """Why ``target`` cannot be written, naming the other path involved when it is not a temporary file."""
    reason = exc.strerror or str(exc)
    other = str(exc.filename) if exc.filename is not None else ""
    if not other or TMP_TAG in other or other == str(target):
        return f"cannot write the file: {reason}"
    if Path(other).is_file() and Path(other) in target.parents:
        return f"cannot write the file: {other} is a file, not a folder"
    return f"cannot write the file: {reason}: {other}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    The temporary file keeps ``path``'s suffix, so libraries that pick a format by extension
    (pandas, matplotlib) still do so. An ``OSError`` about the temporary file is raised naming
    ``path``, the file the user asked for.
    """
    target = Path(path)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(target.parent)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}{TMP_TAG}{_host()}.{os.getpid()}.", suffix=target.suffix, dir=target.parent
        )
        os.close(fd)
        tmp_path = Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as exc:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)
        raise OSError(exc.errno, _reason(exc, target), str(target)) from exc
    except BaseException:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return write_bytes(path, text.encode("utf-8"))


#: table file formats by extension (lower case), for :func:`write_frame`.
FRAME_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def write_frame(frame, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame atomically as CSV (``.csv``) or parquet (``.parquet``/``.pq``), no index.

    Callers check the extension first with their own option name in the message; an unknown
    extension here is an :class:`~cocostat.errors.OptionError` too.
    """
    from cocostat.errors import OptionError

    fmt = FRAME_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OptionError(f"a table file must end in .csv, .parquet or .pq, got {str(path)!r}")
    with atomic_path(path) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return Path(path)


class FrameWriter:
    """Write a table chunk by chunk to one file, atomically: CSV (``.csv``) or parquet (``.parquet``/``.pq``).

    ``with FrameWriter(path) as w: w.write(frame) ...``: every chunk goes to a temporary file beside
    ``path`` (parquet: one row group per chunk, the first chunk's schema; CSV: the header once), which
    is renamed to ``path`` when the block ends without error and deleted otherwise. Memory holds one
    chunk at a time.
    """

    def __init__(self, path: str | os.PathLike):
        from cocostat.errors import OptionError

        self.path = Path(path)
        self.fmt = FRAME_FORMATS.get(self.path.suffix.lower())
        if self.fmt is None:
            raise OptionError(f"a table file must end in .csv, .parquet or .pq, got {str(path)!r}")
        self._ctx: contextlib.AbstractContextManager[Path] | None = None
        self._tmp: Path | None = None
        self._csv_started = False  # the CSV header is written
        self._parquet: pq.ParquetWriter | None = None  # opened with the first chunk's schema
        self.rows = 0

    def __enter__(self) -> FrameWriter:
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, frame) -> None:
        """Append a pandas DataFrame (same columns as the first one)."""
        if self._tmp is None:
            raise RuntimeError("FrameWriter.write() outside its `with` block")
        if self.fmt == "csv":
            frame.to_csv(self._tmp, mode="a" if self._csv_started else "w", header=not self._csv_started, index=False)
            self._csv_started = True
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self._parquet is None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            else:
                table = pa.Table.from_pandas(frame, schema=self._parquet.schema, preserve_index=False)
            self._parquet.write_table(table)
        self.rows += len(frame)

    def __exit__(self, *exc) -> bool | None:
        if self._parquet is not None:
            self._parquet.close()
        if self._ctx is None:
            return None
        return self._ctx.__exit__(*exc)
