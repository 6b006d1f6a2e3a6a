"""A directory of chainlake's for each Spark JVM's scratch, removed by a later start once the
JVM is gone however it ended.

A Spark JVM keeps its scratch in the system's temporary directory (``spark-*``, ``blockmgr-*``,
``artifacts-*``, two copies of lz4's native library, and any spill) and deletes it when it stops
cleanly. A JVM killed outright (a Dagster run terminated with SIGKILL, the kernel's OOM killer,
a crash) leaves all of it behind for good: one test suite left 129 JVMs' worth in /tmp.

So each local session and each ``chainlake spark-server`` gets a directory of its own under
``<tmp>/chainlake-spark-<uid>/`` (the JVM's ``java.io.tmpdir``, where Spark's own directories go
by default), with a ``.lock`` file locked (``flock``) for as long as a process that owns it
lives: the driver of a local session; the server's JVM itself, which inherits the lock. Every new
claim first removes the directories whose lock nobody holds any more. A run's other scratch
(the head start's spool of replies) goes in the same directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = ".lock"
# A directory without its lock file is one being claimed right now (mkdtemp, then the locked
# file renamed into place): only one older than this was abandoned half-made.
UNLOCKED_GRACE_S = 60.0

_process_lock = threading.Lock()
_process_scratch: ScratchDir | None = None


def scratch_root() -> Path:
    """Where the JVMs' scratch directories live (per user: another user's locks are not ours)."""
    return Path(tempfile.gettempdir()) / f"chainlake-spark-{os.getuid()}"


@dataclass(frozen=True)
class ScratchDir:
    """A claimed scratch directory; ``lock_fd`` holds its lock (pass it to a child process that
    should keep the directory alive after this one ends)."""

    path: Path
    lock_fd: int

    def java_options(self) -> str:
        # Spark's local directories default to java.io.tmpdir (unless spark.local.dir or
        # SPARK_LOCAL_DIRS names others: then the user chose their disks).
        return f"-Djava.io.tmpdir={self.path}"

    def release(self) -> None:
        """Give up the directory now (its contents are the next claim's to remove)."""
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


def claim(root: Path | None = None) -> ScratchDir | None:
    """A new locked scratch directory, after removing abandoned ones; None when the temporary
    directory is not writable (Spark then uses its defaults)."""
    root = root or scratch_root()
    remove_abandoned(root)
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
        partial = path / f"{LOCK_NAME}-claiming"
        fd = os.open(partial, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else can hold it
    # The lock file appears under its name already locked: a concurrent sweep never finds it
    # free (a directory without it is young, and kept).
    os.rename(partial, path / LOCK_NAME)
    return ScratchDir(path, fd)


def remove_abandoned(root: Path | None = None) -> list[Path]:
    """Remove the scratch directories no living process holds; return them."""
    root = root or scratch_root()
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    removed = []
    for path in entries:
        if path.is_dir() and _abandoned(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _abandoned(path: Path) -> bool:
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime > UNLOCKED_GRACE_S
        return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: its JVM (or the driver that owns it) is alive
    finally:
        os.close(fd)  # drops the lock we may have taken: the directory goes next anyway
    return True


def process_scratch() -> ScratchDir | None:
    """This process's scratch directory, claimed on first use and held until the process ends:
    its local JVM's ``java.io.tmpdir`` and the head start's reply spool, both removed by a later
    claim if the process dies without cleaning up. (The JVM starts in a thread while the head
    start begins: one claim between them.)"""
    global _process_scratch
    with _process_lock:
        if _process_scratch is None:
            _process_scratch = claim()
        return _process_scratch
