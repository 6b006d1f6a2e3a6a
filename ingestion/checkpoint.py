"""Spark streaming checkpoints of ingestion scopes: where they stand, and when to drop them.

The lake is the truth, the checkpoint a bookmark. Before a query starts:

* an unreadable checkpoint (garbage or an empty file in ``offsets/``, ``commits/`` or
  ``metadata``, e.g. after a disk filled up) is moved aside, kept under a name the warning gives,
  and the scope resumes from the lake;
* a checkpoint that claims blocks the lake no longer holds (a reorg repair removed blocks past a
  shorter chain's safe head, or rows were deleted by hand) is dropped and the query starts at
  the first block the lake is missing;
* without a checkpoint the scope also starts at the first block of its range the lake is
  missing: blocks already stored are not fetched again.

One run at a time per scope: Spark refuses two queries on one checkpoint (the loser fails with
"Multiple streaming queries are concurrently using …"), which happens when two
``dagster asset materialize`` of one partition run at once (pools bind only daemon-launched
runs). ``scope_lock`` makes the second run wait for the first and then find what is left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow.compute as pc

from ingestion.sink import BronzeLake, is_local

log = logging.getLogger("chainlake.checkpoint")


@contextlib.contextmanager
def scope_lock(checkpoint: str) -> Iterator[None]:
    """Hold the scope's lock (``<checkpoint>.lock``, released by the OS if the process dies);
    wait while another run holds it. Remote checkpoints are not locked."""
    root = _local_path(checkpoint)
    if root is None:
        yield
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(root.name + ".lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another run is ingesting scope %s: waiting for it to finish", root.name)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _local_path(checkpoint: str) -> Path | None:
    return Path(checkpoint.removeprefix("file://")) if is_local(checkpoint) else None


def _batch_files(root: Path, folder: str) -> list[Path]:
    return sorted(((root / folder).glob("[0-9]*")), key=lambda p: int(p.name) if p.name.isdigit() else -1)


def unreadable_reason(checkpoint: str) -> str | None:
    """Why Spark could not start from this checkpoint (a file and its problem), or None."""
    root = _local_path(checkpoint)
    if root is None or not root.exists():
        return None
    metadata = root / "metadata"
    try:
        if not isinstance(json.loads(metadata.read_text()).get("id"), str):
            return f"{metadata} has no query id"
    except FileNotFoundError:
        if any(root.iterdir()):
            return f"{metadata} is missing"
        return None
    except (ValueError, OSError, AttributeError) as err:
        return f"{metadata} is not a JSON object ({err.__class__.__name__})"
    for folder in ("offsets", "commits"):
        for path in _batch_files(root, folder):
            if not path.name.isdigit():
                continue
            try:
                lines = path.read_text().splitlines()
                if len(lines) < 2 or not lines[0].startswith("v"):
                    return f"{path} is truncated or has no version header"
                for line in lines[1:]:
                    json.loads(line)
            except (ValueError, OSError) as err:
                return f"{path} is not readable ({err.__class__.__name__}: {err})"
    return None


def set_aside_if_unreadable(checkpoint: str) -> Path | None:
    """Move an unreadable checkpoint aside (kept for inspection); the path it went to, or None."""
    reason = unreadable_reason(checkpoint)
    if reason is None:
        return None
    root = _local_path(checkpoint)
    assert root is not None
    kept = root.with_name(f"{root.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
    root.rename(kept)
    log.warning("checkpoint %s is unreadable (%s): moved it to %s and resuming from the lake",
                root, reason, kept)
    return kept


def query_id(checkpoint: str) -> str:
    """The id Spark gave the query of this checkpoint (its ``metadata``): stable across restarts,
    new when the checkpoint is new. Remote checkpoints: read through pyarrow's file systems."""
    import pyarrow.fs as pafs

    uri = checkpoint if "://" in checkpoint else "file://" + checkpoint
    fs, path = pafs.FileSystem.from_uri(uri)
    with fs.open_input_stream(f"{path}/metadata") as stream:
        return json.loads(stream.read())["id"]


def committed_position(checkpoint: str) -> int | None:
    """Exclusive end block of the last micro-batch Spark committed, or None for a new scope."""
    root = _local_path(checkpoint)
    if root is None:
        return None  # remote checkpoints: rely on Spark alone
    commits = [int(p.name) for p in _batch_files(root, "commits") if p.name.isdigit()]
    if not commits:
        return None
    offset_file = root / "offsets" / str(max(commits))
    last_line = offset_file.read_text().strip().splitlines()[-1]
    from ingestion.source import OFFSET_KEY

    return int(json.loads(last_line)[OFFSET_KEY])


def first_block_to_read(checkpoint: str, start: int) -> int | None:
    """The block the scope's next micro-batch starts at: where the last committed one ended,
    else ``start``; None for a remote checkpoint (not read here)."""
    if _local_path(checkpoint) is None:
        return None
    position = committed_position(checkpoint)
    return start if position is None else max(start, position)


def has_progress(checkpoint: str) -> bool:
    """Has Spark planned any micro-batch in this checkpoint (remote ones: assume so)?"""
    root = _local_path(checkpoint)
    return root is None or any(p.name.isdigit() for p in _batch_files(root, "offsets"))


def first_missing_block(lake: BronzeLake, start: int, end: int) -> int:
    """First block in ``[start, end)`` that the ``blocks`` table lacks (``end`` if none)."""
    numbers = sorted(set(lake.read_range("blocks", start, end, ["block_number"])
                         .column("block_number").to_pylist()))
    for expected, number in zip(range(start, end), numbers, strict=False):
        if number != expected:
            return expected
    return start + len(numbers)


def first_unwritten_block(lake: BronzeLake, start: int, end: int,
                          tables: Sequence[str] = ("blocks",)) -> int:
    """Where a scope without checkpoint starts writing ``tables`` in ``[start, end)``.

    ``blocks`` (committed last, after the core tables) vouches for transactions and logs: its
    first missing block. Traces can be written by runs of their own (``datasets``), so for them
    the block after the highest one stored (a gap below it is for the continuity suite)."""
    missing = first_missing_block(lake, start, end)
    if "traces" in tables and missing > start:
        numbers = lake.read_range("traces", start, missing, ["block_number"]).column(0)
        top = pc.max(numbers).as_py() if len(numbers) else None
        missing = min(missing, start if top is None else top + 1)
    return missing


def resume_point(lake: BronzeLake, checkpoint: str, start: int, end: int,
                 tables: Sequence[str] = ("blocks",)) -> int | None:
    """Where the scope ``[start, end)`` should start when not where its checkpoint says; else None.

    An unreadable checkpoint is set aside first. With no checkpoint progress, the first block
    the lake lacks; with a checkpoint ahead of the lake, that checkpoint is dropped and the
    first missing block returned. None: Spark resumes from the checkpoint as usual.
    """
    set_aside_if_unreadable(checkpoint)
    if not has_progress(checkpoint):
        missing = first_unwritten_block(lake, start, end, tables) if end > start else start
        if missing == start:
            return None
        log.info("the lake already holds blocks [%d, %d): starting at %d", start, missing, missing)
        _drop(checkpoint)
        return missing
    position = committed_position(checkpoint)
    if position is None or position <= start:
        return None
    missing = first_missing_block(lake, start, position)
    if missing >= position:
        return None
    log.warning("checkpoint %s is at block %d but the lake lacks block %d: rewinding",
                checkpoint, position, missing)
    _drop(checkpoint)
    return missing


def _drop(checkpoint: str) -> None:
    root = _local_path(checkpoint)
    if root is not None and root.exists():
        shutil.rmtree(root)
