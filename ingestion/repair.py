"""Repairing the bronze tables: re-ingest whatever the continuity suite rejects, in one pass.

1. The stored tip is checked against the node's chain (a reorg below it is repaired like an
   ingestion run would).
2. The suite runs over the range with ``collect_all=True``: the *complete* set of offending
   blocks, not only the examples it prints — every block of a gap (``2961..2999`` is 39
   blocks), and every block of the range when a child table does not exist.
3. Every offending block ``b`` is re-ingested with its parent (``[b - 1, b + 1)``: a broken link
   may be either side's fault); the windows are coalesced into ranges (windows at most
   ``BRIDGE`` blocks apart are joined: re-reading a few healthy blocks is cheaper than one more
   Spark job, and a range replace with the node's rows changes nothing there), clipped to the
   node's safe end, and re-ingested by range-replace in chunks of ``max_blocks_per_trigger``
   blocks (``ingestion.ingest.reingest_range``), reporting progress per chunk. A table that
   does not exist is created by the first write.
   Traces are re-read (when the node can trace) for the ranges that overlap or touch the traces
   window (``continuity.traces_window``: the blocks from the lowest to the highest the traces
   table holds, taken before re-ingesting), the core tables everywhere: traces written for a
   range apart from the window would widen it over the blocks between, which hold no traces
   and which the suite would then reject; a range overlapping or touching it widens it only
   over blocks it has just traced. A lake without traces stays without. If the lake holds
   traces but the node cannot trace, the confirming run names the traces left unrepaired.
4. The suite runs once more to confirm. If it still fails (the node itself serves blocks that
   fail, or offending blocks lie beyond the node's safe head), the result says so — there is no
   second round.

With no ``blocks`` table (deleted), the range to re-ingest is the one given, or else the blocks
the child tables hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import pyarrow.compute as pc

from ingestion.continuity import (
    ContinuityReport,
    NothingToValidate,
    coalesce,
    traces_window,
    validate_range,
)
from ingestion.ingest import (
    BatchProgress,
    ReorgRepair,
    bind_lake_to_chain,
    pin_to_chain,
    preflight,
    reingest_range,
    repair_reorg,
    resolve_datasets,
)
from ingestion.reorg import Divergence
from ingestion.schemas import CORE_TABLES, TABLES
from ingestion.sink import BronzeLake
from ingestion.source import SourceOptions

log = logging.getLogger("chainlake.repair")

BRIDGE = 32  # blocks: healthy blocks between two windows re-read rather than a separate job


@dataclass(frozen=True)
class RepairProgress:
    """One re-ingested chunk of a repair pass."""

    start: int  # the chunk: blocks [start, end)
    end: int
    done: int  # blocks re-ingested so far in this pass (this chunk included)
    total: int  # blocks this pass re-ingests
    rows: dict[str, int]  # rows written per table for the chunk
    seconds: float  # since re-ingesting began

    @property
    def blocks_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RepairResult:
    before: ContinuityReport | None  # None: there was no blocks table to validate
    after: ContinuityReport | None  # the confirming run (``before`` when nothing was done)
    reorg: ReorgRepair | None = None
    offending: list[tuple[int, int]] = field(default_factory=list)  # every offending block, [a, b)
    reingested: list[tuple[int, int]] = field(default_factory=list)  # block ranges [a, b)
    beyond_safe_head: list[tuple[int, int]] = field(default_factory=list)  # offending, not re-read
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return self.after is not None and self.after.success

    @property
    def blocks_reingested(self) -> int:
        return sum(b - a for a, b in self.reingested)


def windows_to_reingest(offending: Iterable[tuple[int, int]], safe_end: int,
                        bridge: int = 0) -> list[tuple[int, int]]:
    """Offending block ranges ``[a, b)`` widened by the parent of their first block
    (``[a - 1, b)``), coalesced when they overlap, touch or are at most ``bridge`` blocks apart,
    and clipped to ``[0, safe_end)``."""
    windows = []
    for a, b in coalesce(offending):
        lo, hi = max(0, a - 1), min(b, safe_end)
        if hi > lo:
            windows.append((lo, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in windows:
        if merged and lo - merged[-1][1] <= bridge:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def ranges_to_reingest(offending: list[int], safe_end: int) -> list[tuple[int, int]]:
    """Merged ``[b - 1, b + 1)`` windows around each offending block, below ``safe_end``."""
    return windows_to_reingest(((b, b + 1) for b in offending), safe_end)


def with_traces(ranges: Iterable[tuple[int, int]], window: tuple[int, int] | None
                ) -> list[tuple[int, int, bool]]:
    """Each range ``[a, b)`` with whether to re-read its traces: when it overlaps or touches
    the traces ``window`` ``[lo, hi)`` (None: the lake holds no traces)."""
    return [(a, b, window is not None and a <= window[1] and b >= window[0]) for a, b in ranges]


def _beyond(offending: list[tuple[int, int]], safe_end: int) -> list[tuple[int, int]]:
    return [(max(a, safe_end), b) for a, b in offending if b > safe_end]


def _child_bounds(lake: BronzeLake) -> tuple[int, int] | None:
    """``[lowest, highest + 1)`` block of the child tables (when ``blocks`` is gone)."""
    lows, highs = [], []
    for name in ("transactions", "logs"):
        dt = lake.table(name)
        if dt is None:
            continue
        numbers = dt.to_pyarrow_dataset().to_table(columns=["block_number"])[0]
        if len(numbers):
            lows.append(pc.min(numbers).as_py())
            highs.append(pc.max(numbers).as_py())
    return (min(lows), max(highs) + 1) if lows else None


def repair_lake(spark, opts: SourceOptions, lake: BronzeLake, start: int | None = None,
                end: int | None = None, *, max_examples: int = 20,
                on_batch: Callable[[RepairProgress], None] | None = None,
                on_plan: Callable[[RepairResult, list[tuple[int, int]]], None] | None = None,
                rewrite_history: bool = False,
                on_divergence: Callable[[Divergence], None] | None = None,
                ) -> RepairResult:
    """Re-ingest every block the continuity suite rejects over ``[start, end)``, in one pass,
    then validate once more (see the module docstring). ``on_plan`` is called once before
    re-ingesting, with the result so far (``before``, ``offending``) and the ranges about to be
    re-ingested; ``on_batch`` once per re-ingested chunk.

    The node must serve the lake's chain (``ChainIdentityError``); a divergence below the
    stored tip deeper than the maximum reorg depth is refused (``DeepReorgError``) unless
    ``rewrite_history``, and ``on_divergence`` hears what will be replaced before anything is.

    Raises ``NothingToValidate`` when there is nothing to repair from: no blocks table and no
    range (neither given nor held by the child tables).
    """
    began = time.monotonic()
    view = preflight(opts)
    opts = resolve_datasets(opts)  # the tables re-read: the core three, traces if the node can
    deleted = tuple(name for name in TABLES if lake.table(name) is None)
    bind_lake_to_chain(lake, opts, view)  # refuses another chain; recreates deleted tables
    reorg = repair_reorg(spark, opts, lake, view, rewrite_history=rewrite_history,
                         on_divergence=on_divergence)
    options = pin_to_chain(opts, view)

    def validate(deleted_tables: tuple[str, ...] = ()) -> ContinuityReport:
        return validate_range(lake, start, end, chain_id=view.chain_id, max_examples=max_examples,
                              collect_all=True, deleted_tables=deleted_tables)

    if lake.stored_bounds() is not None:
        before = validate(deleted)
        offending = [] if before.success else before.all_offending_ranges
    else:  # no blocks stored (the table was deleted): every block of the range is missing
        before = None
        bounds = _child_bounds(lake)
        lo = start if start is not None else bounds[0] if bounds else None
        hi = end if end is not None else bounds[1] if bounds else None
        if lo is None or hi is None or hi <= lo:
            raise NothingToValidate(f"nothing to repair from: {lake.table_uri('blocks')} does not "
                                    "exist; give the block range to re-ingest")
        log.warning("%s does not exist: re-ingesting blocks [%d, %d)",
                    lake.table_uri("blocks"), lo, hi)
        offending = [(lo, hi)]
    result = RepairResult(before=before, after=before, reorg=reorg, offending=offending)
    result.beyond_safe_head = _beyond(offending, view.safe_end)
    if result.beyond_safe_head:
        log.warning("offending blocks %s are beyond the node's safe head %d", result.beyond_safe_head,
                    view.safe_end - 1)
    ranges = windows_to_reingest(offending, view.safe_end, BRIDGE)
    # Traces only next to the traces window (taken before anything is re-ingested).
    pieces = with_traces(ranges, traces_window(lake))
    core_options = replace(options, datasets=",".join(CORE_TABLES), trace_api=None)
    traced = options if "traces" in (options.datasets or "").split(",") else core_options
    if traced is core_options and any(traces for _, _, traces in pieces):
        log.warning("the lake holds traces but the node serves no tracing API: re-ingesting "
                    "the core tables only")
    total = sum(b - a for a, b in ranges)
    done = 0
    if on_plan is not None:
        on_plan(result, ranges)
    reingest_began = time.monotonic()

    def progress(p: BatchProgress) -> None:
        nonlocal done
        done += p.blocks
        if on_batch is not None:
            on_batch(RepairProgress(p.start, p.end, done, total, dict(p.rows),
                                    time.monotonic() - reingest_began))

    for a, b, traces in pieces:
        chosen = traced if traces else core_options
        log.info("re-ingesting blocks [%d, %d) (%s)", a, b, chosen.datasets)
        reingest_range(spark, chosen, lake, a, b, on_batch=progress)
        result.reingested.append((a, b))
    if ranges:
        result.after = validate()
    result.seconds = time.monotonic() - began
    return result
