"""What the lake holds, and the catch-up that follows from it (no Dagster here).

The lake is the truth. Catching up asks "which blocks up to the safe head does the lake lack?",
never "what did I request last time?": a run that failed, was cancelled or crashed simply leaves
its blocks missing, and the next plan asks for them again (``sensors/catchup.py`` is the thin
Dagster wiring around :func:`plan_for_lake`).

Coverage comes from the Delta file statistics of ``blocks``, which has one row per block: a
file whose row count equals its block span ``max - min + 1`` holds every block of that span (a
writer never puts a block twice in one file; duplicates across files are the continuity
suite's business), so it counts as covered without reading a row. Only files with holes (a range
replace kept the rows either side of the range it replaced, rows deleted by hand) or without
statistics are read, and then only their ``block_number`` column over their own span. Row counts
come from the same statistics (``num_records``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.ranges import BlockSpan, span_of

if TYPE_CHECKING:
    from ingestion.sink import BronzeLake

Range = tuple[int, int]  # blocks [start, end)

TIP = "tip"  # head-following work: the partitions nearest the safe head
HISTORY = "history"  # everything older: healing old gaps, backfills


def coalesce(ranges: Iterable[Range]) -> list[Range]:
    """Sorted ranges ``[a, b)`` with overlapping and adjacent ones merged (empty ones dropped)."""
    out: list[Range] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def runs_of(numbers) -> list[Range]:
    """Block numbers (any order, duplicates allowed; a list, NumPy or Arrow array) as ranges of
    consecutive ones."""
    values = np.unique(np.asarray(numbers, dtype=np.int64))
    if len(values) == 0:
        return []
    breaks = np.flatnonzero(np.diff(values) != 1) + 1
    starts = values[np.concatenate(([0], breaks))]
    ends = values[np.concatenate((breaks - 1, [len(values) - 1]))] + 1
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def complement(covered: Iterable[Range], start: int, end: int) -> list[Range]:
    """The parts of ``[start, end)`` that ``covered`` does not cover."""
    missing: list[Range] = []
    at = start
    for a, b in coalesce(covered):
        if b <= at:
            continue
        if a >= end:
            break
        if a > at:
            missing.append((at, a))
        at = max(at, b)
    if at < end:
        missing.append((at, end))
    return missing


def ranges_text(ranges: Iterable[Range]) -> str:
    """``[(2961, 3000), (3005, 3006)]`` → ``2961..2999, 3005``; ``-`` for none."""
    parts = [str(a) if b - a == 1 else f"{a}..{b - 1}" for a, b in ranges]
    return ", ".join(parts) if parts else "-"


@dataclass(frozen=True)
class FileSpan:
    """One live data file of a table, from its Delta statistics."""

    lo: int | None  # min block_number (None: no statistics)
    hi: int | None  # max block_number, inclusive
    rows: int

    @property
    def known(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def complete(self) -> bool:
        """Holds every block of ``[lo, hi]`` (``blocks`` has one row per block)."""
        return self.known and self.rows == self.hi - self.lo + 1

    def overlaps(self, start: int, end: int) -> bool:
        return not self.known or (self.hi >= start and self.lo < end)


def file_spans(stats: pa.Table | None) -> list[FileSpan]:
    """The files of ``BronzeLake.file_stats`` (Delta add actions, flattened)."""
    if stats is None or stats.num_rows == 0:
        return []
    names = stats.column_names
    lows = (stats.column("min.block_number").to_pylist() if "min.block_number" in names
            else [None] * stats.num_rows)
    highs = (stats.column("max.block_number").to_pylist() if "max.block_number" in names
             else [None] * stats.num_rows)
    rows = (stats.column("num_records").to_pylist() if "num_records" in names
            else [None] * stats.num_rows)
    return [FileSpan(lo, hi, n if n is not None else -1)
            for lo, hi, n in zip(lows, highs, rows, strict=True)]


def covered_ranges(files: Iterable[FileSpan], start: int, end: int,
                   read_numbers) -> list[Range]:
    """Blocks of ``[start, end)`` the files hold; ``read_numbers(a, b)`` gives the stored block
    numbers of ``[a, b)`` and is called only for the spans of files that may have holes."""
    sure: list[Range] = []
    unsure: list[Range] = []
    for f in files:
        if not f.overlaps(start, end):
            continue
        if f.complete:
            sure.append((max(f.lo, start), min(f.hi + 1, end)))
        elif f.known:
            unsure.append((max(f.lo, start), min(f.hi + 1, end)))
        else:  # no statistics: the whole window has to be read
            unsure.append((start, end))
    covered = list(sure)
    for a, b in coalesce(unsure):
        for gap_a, gap_b in complement(sure, a, b):  # what the complete files do not vouch for
            covered.extend(runs_of(read_numbers(gap_a, gap_b)))
    return coalesce((max(a, start), min(b, end)) for a, b in covered)


def stored_ranges(lake: BronzeLake, start: int, end: int) -> list[Range]:
    """Blocks of ``[start, end)`` held by the ``blocks`` table, as coalesced ranges."""
    if end <= start:
        return []

    def read_numbers(a: int, b: int):
        return lake.read_range("blocks", a, b, ["block_number"]).column(0).to_numpy()

    return covered_ranges(file_spans(lake.file_stats("blocks")), start, end, read_numbers)


def missing_ranges(lake: BronzeLake, start: int, end: int) -> list[Range]:
    """Blocks of ``[start, end)`` that the ``blocks`` table lacks, as coalesced ranges."""
    if end <= start:
        return []
    return complement(stored_ranges(lake, start, end), start, end)


def table_rows(lake: BronzeLake, name: str, files: list[FileSpan] | None = None) -> int:
    """Rows of a bronze table, from the Delta log's per-file ``num_records`` (no data read).
    ``files``: the table's :func:`file_spans`, when the caller has them already."""
    files = file_spans(lake.file_stats(name)) if files is None else files
    if any(f.rows < 0 for f in files):  # a file without statistics: count it
        dt = lake.table(name)
        return dt.to_pyarrow_dataset().count_rows() if dt is not None else 0
    return sum(f.rows for f in files)


def rows_in_range(lake: BronzeLake, name: str, start: int, end: int,
                  files: list[FileSpan] | None = None) -> int:
    """Rows of a table for blocks ``[start, end)``: from file statistics when every file that
    touches the range lies inside it, else counted over the range's files."""
    files = file_spans(lake.file_stats(name)) if files is None else files
    touching = [f for f in files if f.overlaps(start, end)]
    if all(f.known and f.rows >= 0 and start <= f.lo and f.hi < end for f in touching):
        return sum(f.rows for f in touching)
    from ingestion.sink import range_dataset

    dt = lake.table(name)
    if dt is None:
        return 0
    return range_dataset(dt, start, end).count_rows(
        filter=(pc.field("block_number") >= start) & (pc.field("block_number") < end))


@dataclass(frozen=True)
class CatchUp:
    """One partition to ingest (again): its blocks up to the safe head that the lake lacks."""

    span: BlockSpan  # the partition
    missing: tuple[Range, ...]  # its blocks missing below the safe head, coalesced
    kind: str  # TIP (near the head) or HISTORY
    open: bool  # the partition reaches past the safe head: more blocks will come

    @property
    def key(self) -> str:
        return self.span.key

    @property
    def first_missing(self) -> int:
        return self.missing[0][0]

    @property
    def missing_blocks(self) -> int:
        return sum(b - a for a, b in self.missing)

    def describe(self) -> str:
        state = "open" if self.open else "closed"
        return f"{self.key} ({self.kind}, {state}): missing {ranges_text(self.missing)}"


def catch_up_window(lowest_stored: int | None, safe_end: int, size: int,
                    start_block: int = 0) -> Range | None:
    """Blocks a catch-up is responsible for: from the lowest stored block (or, for an empty
    lake, the start of the partition holding the safe head) up to the safe head. History below
    what the lake has ever held is for backfills; everything between is kept whole."""
    if safe_end <= start_block:
        return None
    floor = lowest_stored if lowest_stored is not None else span_of(safe_end - 1, size).start
    floor = max(floor, start_block)
    return (floor, safe_end) if floor < safe_end else None


def plan_catch_up(missing: Iterable[Range], safe_end: int, size: int,
                  head_partitions: int) -> list[CatchUp]:
    """One :class:`CatchUp` per partition with missing blocks, oldest first.

    The ``head_partitions`` partitions ending at the one holding the safe head are TIP work
    (what following the head needs, including a tip run that failed or was cancelled); older
    ones are HISTORY (a gap an old run left behind).
    """
    if safe_end <= 0:
        return []
    head_floor = span_of(safe_end - 1, size).start - (head_partitions - 1) * size
    by_start: dict[int, list[Range]] = {}
    for a, b in coalesce(missing):
        b = min(b, safe_end)
        at = a
        while at < b:
            span = span_of(at, size)
            by_start.setdefault(span.start, []).append((at, min(b, span.end)))
            at = span.end
    return [CatchUp(span=BlockSpan(s, s + size), missing=tuple(coalesce(parts)),
                    kind=TIP if s >= head_floor else HISTORY, open=s + size > safe_end)
            for s, parts in sorted(by_start.items())]


def plan_for_lake(lake: BronzeLake, safe_end: int, size: int, *, start_block: int = 0,
                  head_partitions: int = 3) -> list[CatchUp]:
    """The catch-up the lake needs to hold every block of its window up to ``safe_end``."""
    bounds = lake.stored_bounds()
    window = catch_up_window(bounds[0] if bounds else None, safe_end, size, start_block)
    if window is None:
        return []
    return plan_catch_up(missing_ranges(lake, *window), safe_end, size, head_partitions)
