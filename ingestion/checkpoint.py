"""Spark streaming checkpoints of ingestion scopes: where they stand, and rewinding them.

The lake is the truth, the checkpoint a bookmark. When a checkpoint claims blocks the lake no
longer holds (a reorg repair removed blocks past a shorter chain's safe head, or rows were
deleted by hand), the scope's checkpoint is dropped and the next query starts at the first
block the lake is missing, so nothing is skipped.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ingestion.sink import BronzeLake, is_local

log = logging.getLogger("chainlake.checkpoint")


def committed_position(checkpoint: str) -> int | None:
    """Exclusive end block of the last micro-batch Spark committed, or None for a new scope."""
    if not is_local(checkpoint):
        return None  # remote checkpoints: rely on Spark alone
    root = Path(checkpoint.removeprefix("file://"))
    commits = [int(p.name) for p in (root / "commits").glob("[0-9]*") if p.name.isdigit()]
    if not commits:
        return None
    offset_file = root / "offsets" / str(max(commits))
    last_line = offset_file.read_text().strip().splitlines()[-1]
    from ingestion.source import OFFSET_KEY

    return int(json.loads(last_line)[OFFSET_KEY])


def first_missing_block(lake: BronzeLake, start: int, end: int) -> int:
    """First block in ``[start, end)`` that the ``blocks`` table lacks (``end`` if none)."""
    numbers = sorted(set(lake.read_range("blocks", start, end, ["block_number"])
                         .column("block_number").to_pylist()))
    for expected, number in zip(range(start, end), numbers, strict=False):
        if number != expected:
            return expected
    return start + len(numbers)


def resume_point(lake: BronzeLake, checkpoint: str, start: int) -> int | None:
    """Where a scope should resume, when its checkpoint is ahead of the lake; else None.

    Returns the block to restart from after dropping the checkpoint; None means the
    checkpoint (or its absence) is consistent with the lake and Spark resumes as usual.
    """
    position = committed_position(checkpoint)
    if position is None or position <= start:
        return None
    missing = first_missing_block(lake, start, position)
    if missing >= position:
        return None
    log.warning("checkpoint %s is at block %d but the lake lacks block %d: rewinding",
                checkpoint, position, missing)
    shutil.rmtree(checkpoint.removeprefix("file://"))
    return missing
