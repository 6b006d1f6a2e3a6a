"""What the lake holds (from the `blocks` table's file statistics) and the catch-up plan derived
from it: no Dagster, no Spark, no network."""

import pytest
from deltalake import DeltaTable
from synthetic_chain import chain, write

from ingestion.coverage import (
    HISTORY,
    TIP,
    FileSpan,
    catch_up_window,
    coalesce,
    complement,
    covered_ranges,
    missing_ranges,
    plan_catch_up,
    plan_for_lake,
    ranges_text,
    rows_in_range,
    runs_of,
    stored_ranges,
    table_rows,
)
from ingestion.ranges import BlockSpan


def put(lake, start: int, end: int, **shape) -> None:
    """Blocks [start, end) of one consistent synthetic chain, in one write per table."""
    write(lake, chain(end - start, first=start, **shape), start, end)


def test_range_helpers():
    assert coalesce([(5, 7), (0, 2), (2, 3), (6, 9), (4, 4)]) == [(0, 3), (5, 9)]
    assert runs_of([7, 3, 4, 4, 5, 9]) == [(3, 6), (7, 8), (9, 10)]
    assert runs_of([]) == []
    assert complement([(2, 4), (6, 8)], 0, 10) == [(0, 2), (4, 6), (8, 10)]
    assert complement([(0, 20)], 5, 10) == []
    assert complement([], 5, 10) == [(5, 10)]
    assert ranges_text([(2961, 3000), (3005, 3006)]) == "2961..2999, 3005"
    assert ranges_text([]) == "-"


def test_complete_files_are_trusted_and_only_files_with_holes_are_read():
    files = [FileSpan(0, 9, 10),  # complete
             FileSpan(10, 19, 8),  # two blocks missing somewhere: read
             FileSpan(30, 39, 10)]
    reads = []

    def read_numbers(a, b):
        reads.append((a, b))
        return [n for n in range(a, b) if n not in (12, 13)]

    assert covered_ranges(files, 0, 40, read_numbers) == [(0, 12), (14, 20), (30, 40)]
    assert reads == [(10, 20)]
    # Clipped to the window; a file outside it is not read at all.
    reads.clear()
    assert covered_ranges(files, 30, 35, read_numbers) == [(30, 35)]
    assert reads == []


def test_a_file_without_statistics_makes_the_window_read():
    reads = []

    def read_numbers(a, b):
        reads.append((a, b))
        return [1, 2, 3]

    assert covered_ranges([FileSpan(None, None, -1)], 0, 10, read_numbers) == [(1, 4)]
    assert reads == [(0, 10)]


def test_missing_ranges_of_a_real_lake(lake, monkeypatch):
    put(lake, 0, 20)
    put(lake, 30, 40)  # blocks 20..29 were never written
    # Complete files: nothing is read, the statistics say it all.
    monkeypatch.setattr(type(lake), "read_range", lambda *a, **k: pytest.fail("read data"))
    assert stored_ranges(lake, 0, 50) == [(0, 20), (30, 40)]
    assert missing_ranges(lake, 0, 50) == [(20, 30), (40, 50)]
    assert missing_ranges(lake, 5, 15) == []
    monkeypatch.undo()
    # A deleted block leaves a file with a hole: that file's span is read, the gap found.
    DeltaTable(lake.table_uri("blocks")).delete("block_number = 7 OR block_number = 8")
    assert missing_ranges(lake, 0, 40) == [(7, 9), (20, 30)]


def test_row_counts_come_from_the_statistics(lake):
    put(lake, 0, 10, txs=2, logs_per_tx=1)
    put(lake, 10, 30, txs=2, logs_per_tx=1)
    assert table_rows(lake, "blocks") == 30
    assert table_rows(lake, "transactions") == 60
    assert rows_in_range(lake, "transactions", 0, 10) == 20
    assert rows_in_range(lake, "logs", 10, 30) == 40
    assert rows_in_range(lake, "transactions", 5, 15) == 20  # straddles files: counted
    assert table_rows(lake, "logs") == 60


def test_the_gap_a_failed_run_left_is_planned_again():
    # Partitions of 1000; the tip run of 2000..2999 failed at block 2961 and the head moved on.
    plan = plan_catch_up([(2961, 3000), (3000, 3500)], safe_end=3500, size=1000,
                         head_partitions=3)
    assert [(c.key, c.missing, c.kind, c.open) for c in plan] == [
        (BlockSpan(2000, 3000).key, ((2961, 3000),), TIP, False),
        (BlockSpan(3000, 4000).key, ((3000, 3500),), TIP, True),
    ]
    assert plan[0].first_missing == 2961 and plan[0].missing_blocks == 39
    assert "2961..2999" in plan[0].describe()


def test_old_gaps_are_history_and_the_head_partitions_tip():
    plan = plan_catch_up([(500, 600), (2100, 2200), (4000, 5500)], safe_end=5500, size=1000,
                         head_partitions=3)
    assert [(c.span.start, c.kind, c.open) for c in plan] == [
        (0, HISTORY, False), (2000, HISTORY, False), (4000, TIP, False), (5000, TIP, True)]
    # A partition that ends exactly at the safe head is complete once ingested, not open.
    (last,) = plan_catch_up([(900, 1000)], safe_end=1000, size=1000, head_partitions=1)
    assert not last.open and last.kind == TIP


def test_catch_up_window():
    # Empty lake: only the partition holding the safe head; history is for backfills.
    assert catch_up_window(None, 3500, 1000) == (3000, 3500)
    assert catch_up_window(None, 3500, 1000, start_block=3200) == (3200, 3500)
    # A lake holding blocks: everything from its lowest block up to the safe head.
    assert catch_up_window(120, 3500, 1000) == (120, 3500)
    assert catch_up_window(120, 3500, 1000, start_block=500) == (500, 3500)
    # Nothing safe yet, or the node behind the lake (a lagging backend): nothing to do.
    assert catch_up_window(None, 0, 1000) is None
    assert catch_up_window(4000, 3500, 1000) is None


def test_plan_for_lake(lake):
    assert [c.key for c in plan_for_lake(lake, 35, 16)] == [BlockSpan(32, 48).key]
    put(lake, 0, 20)
    put(lake, 24, 30)
    plan = plan_for_lake(lake, 40, 16, head_partitions=2)
    assert [(c.span.start, c.missing, c.kind, c.open) for c in plan] == [
        (16, ((20, 24), (30, 32)), TIP, False), (32, ((32, 40),), TIP, True)]
    assert plan_for_lake(lake, 40, 16, head_partitions=1)[0].kind == HISTORY
    put(lake, 20, 24)
    put(lake, 30, 40)
    assert plan_for_lake(lake, 40, 16) == []
