"""Repairing the bronze tables: re-ingest whatever the continuity suite rejects.

First the stored tip is checked against the node's chain (a reorg below it is repaired like an
ingestion run would). Then the suite runs over the range; every offending block ``b`` is
re-ingested with its parent (``[b - 1, b + 1)``: a broken link may be either side's fault), by
range-replace, and the suite runs again, for a few rounds (the suite names at most
``max_examples`` blocks per expectation, so a badly damaged range takes more than one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ingestion.continuity import ContinuityReport, validate_range
from ingestion.ingest import (
    BatchProgress,
    ReorgRepair,
    pin_to_chain,
    preflight,
    reingest_range,
    repair_reorg,
)
from ingestion.sink import BronzeLake
from ingestion.source import SourceOptions

log = logging.getLogger("chainlake.repair")

MAX_ROUNDS = 5


@dataclass
class RepairResult:
    before: ContinuityReport
    after: ContinuityReport
    reorg: ReorgRepair | None = None
    reingested: list[tuple[int, int]] = field(default_factory=list)  # block ranges [a, b)

    @property
    def success(self) -> bool:
        return self.after.success


def ranges_to_reingest(offending: list[int], safe_end: int) -> list[tuple[int, int]]:
    """Merged ``[b - 1, b + 1)`` windows around each offending block, below ``safe_end``."""
    ranges: list[tuple[int, int]] = []
    for block in sorted(set(offending)):
        start, end = max(0, block - 1), min(block + 1, safe_end)
        if end <= start:
            continue
        if ranges and start <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
        else:
            ranges.append((start, end))
    return ranges


def repair_lake(spark, opts: SourceOptions, lake: BronzeLake, start: int | None = None,
                end: int | None = None, *, max_examples: int = 20,
                on_batch: Callable[[BatchProgress], None] | None = None) -> RepairResult:
    """Re-ingest until the continuity suite passes over ``[start, end)`` (or rounds run out)."""
    view = preflight(opts)
    reorg = repair_reorg(spark, opts, lake, view)
    options = pin_to_chain(opts, view)
    before = report = validate_range(lake, start, end, chain_id=view.chain_id,
                                     max_examples=max_examples)
    result = RepairResult(before=before, after=report, reorg=reorg)
    for _ in range(MAX_ROUNDS):
        if report.success:
            break
        ranges = ranges_to_reingest(report.offending_blocks, view.safe_end)
        if not ranges:
            log.warning("offending blocks %s are beyond the node's safe head %d",
                        report.offending_blocks, view.safe_end - 1)
            break
        for a, b in ranges:
            log.info("re-ingesting blocks [%d, %d)", a, b)
            reingest_range(spark, options, lake, a, b, on_batch=on_batch)
            result.reingested.append((a, b))
        report = validate_range(lake, start, end, chain_id=view.chain_id,
                                max_examples=max_examples)
    result.after = report
    return result
