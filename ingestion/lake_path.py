"""Is a local lake root usable for writing? Checked before Spark starts.

Without this check a lake root that is a file, sits under a file, lies on a read-only or full
file system fails only when Spark starts its streaming query (30-60 s later, as a
``Py4JJavaError`` that names no path). ``check_lake_writable`` fails at once with a
``LakePathError`` naming the path and the operating system's reason. Remote lakes (``s3://``,
``gs://``, ``abfss://``, ...) are not checked: their credentials and permissions are the object
store's business and are only known when delta-rs writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from pathlib import Path

from ingestion.schemas import TABLES
from ingestion.sink import is_local, normalize_uri

PROBE_PREFIX = ".chainlake-write-probe-"
# Directories of the layout (relative to the root) that must be directories when they exist.
LAYOUT_DIRS = ("bronze", *(f"bronze/{name}" for name in TABLES), "_checkpoints")


class LakePathError(ValueError):
    """The lake root cannot hold the bronze tables: not a directory, not creatable, not writable."""


def check_lake_writable(root: str) -> None:
    """Make sure a local lake root is a writable directory; create it if it is missing.

    Writes, fsyncs and removes a small probe file directly under the root, so a read-only
    (EROFS), full (ENOSPC) or over-quota file system is found now. Existing parts of the
    layout (``bronze/``, ``bronze/<table>/``, ``_checkpoints/``) must be directories. Nothing
    else is written: committed tables and checkpoints are never touched. Remote URIs are
    skipped. Raises ``LakePathError`` naming the path and the reason.
    """
    if not isinstance(root, str) or not root.strip():
        raise LakePathError("the lake path is empty: give a directory or a URI such as s3://...")
    if not is_local(root):
        return
    try:
        path = Path(normalize_uri(root))
    except (OSError, ValueError) as err:  # e.g. an embedded NUL, a symlink loop
        raise LakePathError(f"invalid lake path {root!r}: {_reason(err)}") from None
    if path.exists() and not path.is_dir():
        raise LakePathError(f"lake path {path} is {_kind(path)}, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = _non_directory_ancestor(path)
        if blocker is not None:
            raise LakePathError(f"cannot create lake directory {path}: {blocker} is "
                                f"{_kind(blocker)}, not a directory") from None
        raise LakePathError(f"cannot create lake directory {path}: {_reason(err)}") from None
    for relative in LAYOUT_DIRS:
        part = path / relative
        if part.exists() and not part.is_dir():
            raise LakePathError(f"lake path {part} is {_kind(part)}, not a directory "
                                f"(the lake keeps its tables and checkpoints there)")
        if part.is_dir() and not os.access(part, os.W_OK | os.X_OK):
            raise LakePathError(f"lake directory {part} is not writable: "
                                f"{os.strerror(errno.EACCES)}")
    _probe(path)


def _probe(directory: Path) -> None:
    probe = directory / f"{PROBE_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    created = False
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        created = True
        try:
            os.write(fd, b"chainlake checks that the lake is writable; this file is removed\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise LakePathError(f"lake directory {directory} is not writable: {_reason(err)}") from None
    finally:
        if created:
            with contextlib.suppress(OSError):
                probe.unlink()


def _reason(err: BaseException) -> str:
    """The OS reason, e.g. ``No space left on device (ENOSPC)``, without the path repeated."""
    if isinstance(err, OSError) and err.errno is not None:
        name = errno.errorcode.get(err.errno)
        text = err.strerror or os.strerror(err.errno)
        return f"{text} ({name})" if name else text
    return str(err)


def _kind(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError:
        return "not usable"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "something else"


def _non_directory_ancestor(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a directory, if any."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None
