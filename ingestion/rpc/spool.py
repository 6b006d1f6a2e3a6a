"""Replies fetched ahead of time by another process, handed over through a directory.

A run's driver fetches the first blocks while its Spark JVM and query start (the head start,
``ingestion.head_start``); the tasks that later read those blocks take the replies from here
instead of asking the node again. An entry is keyed by the exact request body (block numbers and
call ids included), so a task gets a reply only to the very request it would send, and it is
taken once: a task retried, or a range read again after a reorg, asks the node. Every reply
taken passes the same checks as one read from the network.

Files: ``<key>`` a complete reply (written under another name, then renamed); ``<key>.claim``
a reply being fetched (a task asking for it waits for it rather than asking the node twice).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

CLAIM_SUFFIX = ".claim"
# How long a task waits for a reply the driver is fetching: past this, it asks the node itself.
CLAIM_WAIT_S = 30.0
_POLL_S = 0.005


def spool_key(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:40]


class ReplySpool:
    """A directory of replies, each taken at most once (``take``) after a fetcher ``put`` it."""

    def __init__(self, directory: str | os.PathLike[str], claim_wait_s: float = CLAIM_WAIT_S) -> None:
        self.directory = Path(directory)
        self.claim_wait_s = claim_wait_s

    def __repr__(self) -> str:
        return f"ReplySpool({str(self.directory)!r})"

    # -- the consumer (a task) ----------------------------------------------------------------

    def take(self, body: bytes) -> bytes | None:
        """The reply to ``body`` if it was fetched ahead (waiting while it is being fetched), and
        removed from the spool; None when the caller must ask the node itself."""
        path = self.directory / spool_key(body)
        claim = path.with_name(path.name + CLAIM_SUFFIX)
        deadline = time.monotonic() + self.claim_wait_s
        while True:
            content = self._take_file(path)
            if content is not None:
                return content
            if not claim.exists() or time.monotonic() >= deadline:
                # Not fetched ahead, or its fetch failed (claim gone) or hangs: a last look, in
                # case it was completed between the two checks.
                return self._take_file(path)
            time.sleep(_POLL_S)

    @staticmethod
    def _take_file(path: Path) -> bytes | None:
        try:
            taken = path.with_name(f"{path.name}.taken-{os.getpid()}-{time.monotonic_ns()}")
            os.rename(path, taken)  # atomic: one taker, and never a half-written file
        except OSError:  # absent, or the directory is gone (the run ended)
            return None
        try:
            return taken.read_bytes()
        except OSError:
            return None
        finally:
            with contextlib.suppress(OSError):
                taken.unlink()

    def mark(self, name: str) -> None:
        """Leave a marker file (e.g. that a task has started), ignoring a vanished spool."""
        with contextlib.suppress(OSError):
            (self.directory / name).touch()

    # -- the producer (the head start) ------------------------------------------------------

    def has_marker(self, name: str) -> bool:
        return (self.directory / name).exists()

    def claim(self, body: bytes) -> str | None:
        """Announce that ``body``'s reply is being fetched; its key, or None when the spool is
        gone or the reply is already there or claimed (then the caller does not keep it)."""
        key = spool_key(body)
        try:
            fd = os.open(self.directory / (key + CLAIM_SUFFIX), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except OSError:
            return None
        os.close(fd)
        if (self.directory / key).exists():
            self.release(key)
            return None
        return key

    def put(self, key: str, content: bytes) -> None:
        """Store a claimed reply and drop its claim; a spool that is gone is ignored."""
        partial = self.directory / f".{key}.partial"
        try:
            partial.write_bytes(content)
            os.rename(partial, self.directory / key)
        except OSError:
            with contextlib.suppress(OSError):
                partial.unlink()
        finally:
            self.release(key)

    def release(self, key: str) -> None:
        """Drop a claim without a reply (its fetch failed): a waiting task asks the node."""
        with contextlib.suppress(OSError):
            (self.directory / (key + CLAIM_SUFFIX)).unlink()
