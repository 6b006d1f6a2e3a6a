"""The continuity suite on small synthetic bronze tables (delta-rs in tmp_path; no Spark, no network).

``chain()`` builds a consistent chain (linked hashes, rising timestamps, k transactions per
block, one log per transaction); each test breaks one thing and checks that the report names
the offending block.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import replace

import pytest
from deltalake import DeltaTable
from synthetic_chain import (
    CHAIN_ID,
    T0,
    block_hash,
    chain,
    rewrite_block,
    rows_to_table,
    tx_hash,
    write,
)

from ingestion.continuity import NothingToValidate, validate_range
from ingestion.sink import BronzeLake


@pytest.fixture()
def lake(tmp_path) -> BronzeLake:
    """Blocks [0, 40) written as two ranges, like two micro-batches."""
    bronze = BronzeLake(str(tmp_path / "lake"))
    rows = chain(40)
    for lo, hi in ((0, 20), (20, 40)):
        write(bronze, {k: [r for r in v if lo <= r["block_number"] < hi] for k, v in rows.items()},
              lo, hi)
    return bronze


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a network connection during validation fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during validation: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def failed(report) -> dict[str, list[int]]:
    return {o.name: o.offending_blocks for o in report.outcomes if not o.success}


def test_a_good_chain_passes_without_network(lake, no_network):
    report = validate_range(lake)
    assert report.success, report.render()
    assert (report.start, report.end) == (0, 40)
    assert report.rows == {"blocks": 40, "transactions": 80, "logs": 80, "traces": 0}
    assert "traces" in report.not_checked  # the lake has no traces table
    assert report.chain_id == CHAIN_ID
    assert len(report.outcomes) == 13 and report.offending_blocks == []
    assert "PASSED" in report.render()


def test_a_deleted_block_is_named(lake):
    DeltaTable(lake.table_uri("blocks")).delete("block_number = 7")
    report = validate_range(lake)
    assert not report.success
    bad = failed(report)
    assert bad["block numbers contiguous"] == [7]
    # Its transactions are now orphans.
    assert bad["transaction count matches rows"] == [7]
    assert 7 in report.offending_blocks
    text = report.render()
    assert "FAIL" in text and "block numbers contiguous" in text and "blocks 7\n" in text


def test_missing_blocks_at_the_range_ends_are_named(lake):
    DeltaTable(lake.table_uri("blocks")).delete("block_number >= 38 OR block_number < 2")
    report = validate_range(lake, 0, 40)
    assert failed(report)["block numbers contiguous"] == [0, 1, 38, 39]
    contiguity = next(o for o in report.outcomes if o.name == "block numbers contiguous")
    assert contiguity.unexpected_count == 2  # gaps


def test_a_duplicate_block_is_named(lake):
    DeltaTable(lake.table_uri("blocks")).delete("block_number = 12")
    twice = rows_to_table("blocks", chain(1, first=12)["blocks"] * 2)
    lake.replace_range("blocks", twice, 12, 13)
    bad = failed(validate_range(lake))
    assert bad == {"block numbers unique": [12]}


def test_a_broken_parent_hash_is_named(lake):
    rewrite_block(lake, "blocks", 25, lambda rows: [{**rows[0], "parent_hash": block_hash(24, "f")}])
    bad = failed(validate_range(lake))
    assert bad == {"parent hash links": [25]}


def test_a_decreasing_timestamp_is_named(lake):
    rewrite_block(lake, "blocks", 30, lambda rows: [{**rows[0], "block_timestamp": T0}])
    bad = failed(validate_range(lake))
    assert bad == {"timestamps non-decreasing": [30]}


def test_a_transaction_count_mismatch_is_named(lake):
    rewrite_block(lake, "blocks", 5, lambda rows: [{**rows[0], "transaction_count": 3}])
    assert failed(validate_range(lake)) == {"transaction count matches rows": [5]}


def test_a_transaction_index_gap_is_named(lake):
    rewrite_block(lake, "transactions", 9,
                  lambda rows: [{**r, "transaction_index": 2} if r["transaction_index"] == 1 else r
                                for r in rows])
    bad = failed(validate_range(lake))
    assert bad["transaction indexes 0..n-1"] == [9]
    assert bad["log transactions exist"] == [9]  # the log of transaction 1 lost its transaction


def test_a_log_index_gap_is_named(lake):
    rewrite_block(lake, "logs", 14,
                  lambda rows: [{**r, "log_index": r["log_index"] + 1} for r in rows])
    assert failed(validate_range(lake)) == {"log indexes 0..m-1": [14]}


def test_a_log_whose_transaction_is_missing_is_named(lake):
    rewrite_block(lake, "transactions", 17, lambda rows: rows[:1])
    rewrite_block(lake, "blocks", 17, lambda rows: [{**rows[0], "transaction_count": 1}])
    assert failed(validate_range(lake)) == {"log transactions exist": [17]}


def test_a_wrong_chain_id_is_named(lake):
    rewrite_block(lake, "transactions", 21,
                  lambda rows: [{**rows[0], "chain_id": 1}, *rows[1:]])
    assert failed(validate_range(lake)) == {"transactions chain id": [21]}
    # Against an explicit chain id every row is wrong.
    report = validate_range(lake, 0, 10, chain_id=1)
    assert failed(report)["chain id"] == list(range(10))
    assert failed(report)["logs chain id"] == list(range(10))


def test_children_with_a_stale_block_hash_are_named(lake):
    rewrite_block(lake, "logs", 33, lambda rows: [{**r, "block_hash": block_hash(33, "f")}
                                                  for r in rows])
    assert failed(validate_range(lake)) == {"logs carry block hash": [33]}


def test_a_break_across_the_range_boundary_is_caught(lake):
    rewrite_block(lake, "blocks", 9, lambda rows: [{**rows[0], "block_hash": block_hash(9, "f")}])
    report = validate_range(lake, 10, 20)
    assert report.boundary == 9
    assert failed(report) == {"parent hash links": [10]}
    assert "linked to block 9" in report.render()


def test_a_missing_boundary_block_is_a_gap(lake):
    DeltaTable(lake.table_uri("blocks")).delete("block_number = 9")
    report = validate_range(lake, 10, 20)
    assert report.boundary is None
    assert failed(report) == {"block numbers contiguous": [9]}


def test_a_range_ignores_breaks_outside_it(lake):
    rewrite_block(lake, "blocks", 30, lambda rows: [{**rows[0], "parent_hash": "0xdead"}])
    DeltaTable(lake.table_uri("blocks")).delete("block_number = 35")
    assert validate_range(lake, 10, 20).success
    assert not validate_range(lake).success


def test_offending_blocks_are_capped_and_counted(lake):
    report = validate_range(lake, chain_id=5, max_examples=3)
    outcome = next(o for o in report.outcomes if o.name == "chain id")
    assert outcome.offending_blocks == [0, 1, 2]
    assert outcome.unexpected_count == 40
    assert "40 block(s)" in outcome.detail


def test_nothing_to_validate(tmp_path, lake):
    with pytest.raises(NothingToValidate, match="no blocks stored"):
        validate_range(BronzeLake(str(tmp_path / "empty")))
    with pytest.raises(NothingToValidate, match=r"\[100, 200\)"):
        validate_range(lake, 100, 200)
    with pytest.raises(ValueError, match=r"\[20, 10\)"):
        validate_range(lake, 20, 10)


def test_an_explicit_range_past_the_tip_names_the_missing_blocks(lake):
    report = validate_range(lake, 30, 45)
    assert failed(report) == {"block numbers contiguous": [40, 41, 42, 43, 44]}
    assert "highest stored block is 39" in report.render()


def test_windows_give_the_same_report_as_one_pass(lake):
    DeltaTable(lake.table_uri("blocks")).delete("block_number >= 12 AND block_number < 16")
    rewrite_block(lake, "blocks", 25, lambda rows: [{**rows[0], "parent_hash": "0xdead"}])
    rewrite_block(lake, "logs", 30, lambda rows: rows[1:])
    DeltaTable(lake.table_uri("blocks")).delete("block_number = 39")
    whole = validate_range(lake, 5, 40)
    assert whole.windows == 1
    assert failed(whole) == {"block numbers contiguous": [12, 13, 14, 15, 39],
                             "parent hash links": [25],
                             # the transactions and logs of deleted blocks are orphans
                             "transaction count matches rows": [12, 13, 14, 15, 39],
                             "transactions carry block hash": [12, 13, 14, 15, 39],
                             "log indexes 0..m-1": [30],
                             "logs carry block hash": [12, 13, 14, 15, 39]}
    for size in (4, 7):  # 4: a window with no block row at all; 7: a window starting at the gap
        windowed = validate_range(lake, 5, 40, window=size)
        assert windowed.windows == -(-35 // size)
        assert windowed.outcomes == whole.outcomes, size
        assert windowed.rows == whole.rows and windowed.boundary == whole.boundary == 4


# --- the complete offending set (validate_range(collect_all=True), what `chainlake repair` uses) --


@pytest.fixture()
def long_lake(tmp_path) -> BronzeLake:
    """Blocks [0, 300) in three ranges: enough to fail more than max_examples blocks."""
    bronze = BronzeLake(str(tmp_path / "long"))
    rows = chain(300)
    for lo in range(0, 300, 100):
        write(bronze, {k: [r for r in v if lo <= r["block_number"] < lo + 100]
                       for k, v in rows.items()}, lo, lo + 100)
    return bronze


SCATTERED = list(range(3, 300, 5))  # 60 blocks


def outcome_of(report, name):
    return next(o for o in report.outcomes if o.name == name)


def test_collect_all_names_every_offending_block_not_only_examples(long_lake):
    in_list = ", ".join(map(str, SCATTERED))
    DeltaTable(long_lake.table_uri("transactions")).delete(
        f"transaction_index = 1 AND block_number IN ({in_list})")
    report = validate_range(long_lake, collect_all=True)
    counts = outcome_of(report, "transaction count matches rows")
    assert counts.offending_blocks == SCATTERED[:20]  # the examples stay capped
    assert counts.unexpected_count == 60
    assert [b for a, e in counts.all_offending for b in range(a, e)] == SCATTERED
    # The logs of the deleted transactions lost their transaction: the same 60 blocks.
    assert report.all_offending_blocks == SCATTERED
    assert report.all_offending_ranges == [(b, b + 1) for b in SCATTERED]


def test_collect_all_goes_past_great_expectations_value_cap(long_lake):
    report = validate_range(long_lake, chain_id=5, collect_all=True, max_examples=3)
    outcome = outcome_of(report, "chain id")
    assert outcome.offending_blocks == [0, 1, 2] and outcome.unexpected_count == 300
    assert outcome.all_offending == ((0, 300),)  # GX keeps at most 200 unexpected *values*
    assert report.all_offending_ranges == [(0, 300)]


def test_a_gap_is_every_missing_block_and_rendered_as_a_range(long_lake):
    for name in ("transactions", "logs", "blocks"):
        DeltaTable(long_lake.table_uri(name)).delete("block_number >= 161 AND block_number < 200")
    report = validate_range(long_lake, collect_all=True)
    gaps = outcome_of(report, "block numbers contiguous")
    assert gaps.unexpected_count == 1
    assert gaps.offending_blocks == list(range(161, 181))  # the first 20 examples
    assert gaps.gaps == ((161, 200),) and gaps.all_offending == ((161, 200),)
    assert report.all_offending_ranges == [(161, 200)]
    assert len(report.all_offending_blocks) == 39
    text = report.render()
    assert "missing blocks 161..199\n" in text
    assert text.endswith("offending blocks: 161..199")
    # Without collect_all the gap is still named whole, but the complete set is not kept.
    plain = validate_range(long_lake)
    assert outcome_of(plain, "block numbers contiguous").gaps == ((161, 200),)
    assert outcome_of(plain, "block numbers contiguous").all_offending is None
    with pytest.raises(ValueError, match="collect_all"):
        _ = plain.all_offending_ranges


def test_gaps_past_the_tip_and_at_the_boundary_are_whole(long_lake):
    report = validate_range(long_lake, 250, 1_000_000, collect_all=True, window=400_000)
    assert report.all_offending_ranges == [(300, 1_000_000)]
    assert "missing blocks 300..999999" in report.render()
    DeltaTable(long_lake.table_uri("blocks")).delete("block_number = 99")
    report = validate_range(long_lake, 100, 200, collect_all=True)
    assert report.all_offending_ranges == [(99, 100)]


def test_collect_all_changes_nothing_else_and_windows_agree(long_lake):
    DeltaTable(long_lake.table_uri("blocks")).delete("block_number >= 40 AND block_number < 90")
    rewrite_block(long_lake, "blocks", 120, lambda rows: [{**rows[0], "parent_hash": "0xdead"}])
    in_list = ", ".join(map(str, SCATTERED))
    DeltaTable(long_lake.table_uri("logs")).delete(f"log_index = 0 AND block_number IN ({in_list})")
    plain = validate_range(long_lake)
    whole = validate_range(long_lake, collect_all=True)
    assert [replace(o, all_offending=None) for o in whole.outcomes] == plain.outcomes
    # (only the block rows of 40..89 were deleted: their logs are still checked)
    assert outcome_of(whole, "log indexes 0..m-1").all_offending == tuple(
        (b, b + 1) for b in SCATTERED)
    for size in (7, 64):
        windowed = validate_range(long_lake, collect_all=True, window=size)
        assert windowed.outcomes == whole.outcomes, size
    expected = sorted({*range(40, 90), 120, *SCATTERED})
    assert whole.all_offending_blocks == expected


@pytest.mark.parametrize("how", ["directory deleted", "no _delta_log"])
@pytest.mark.parametrize("table", ["transactions", "logs"])
def test_a_missing_table_fails_for_every_block(long_lake, table, how):
    path = long_lake.table_uri(table)
    shutil.rmtree(path if how == "directory deleted" else f"{path}/_delta_log")
    report = validate_range(long_lake, 10, 300, collect_all=True)
    assert not report.success
    missing = outcome_of(report, "table exists")
    assert (missing.table, missing.unexpected_count, missing.gaps) == (table, 290, ((10, 300),))
    assert missing.offending_blocks == list(range(10, 30))
    assert report.all_offending_ranges == [(10, 300)]
    assert report.missing_tables == [table]
    assert f"FAIL  {table:<12} table exists" in report.render()
    assert "offending blocks: 10..299" in report.render()


# --- traces: checked over the traces window (the blocks the traces table holds) ----------------


def traces_of(rows: dict[str, list[dict]]) -> list[dict]:
    """Traces consistent with ``chain()`` rows: per transaction a top-level call with one child
    call, then one block reward per block; trace_index 0..n-1 per block."""
    by_block: dict[int, list[dict]] = {}
    for tx in rows["transactions"]:
        by_block.setdefault(tx["block_number"], []).append(tx)
    out = []
    for block in rows["blocks"]:
        ctx = {k: block[k] for k in ("chain_id", "block_number", "block_hash", "block_timestamp")}
        frames = []
        for tx in by_block.get(block["block_number"], []):
            own = {**ctx, "transaction_index": tx["transaction_index"],
                   "transaction_hash": tx["transaction_hash"], "trace_type": "call",
                   "call_type": "call"}
            frames.append({**own, "trace_address": [], "subtraces": 1,
                           "status": 1 if tx.get("receipt_status") is None else tx["receipt_status"]})
            frames.append({**own, "trace_address": [0], "subtraces": 0, "status": frames[-1]["status"]})
        frames.append({**ctx, "transaction_index": None, "transaction_hash": None,
                       "trace_type": "reward", "reward_type": "block", "trace_address": [],
                       "subtraces": 0, "status": 1})
        out += [{**t, "trace_index": i, "trace_id": f"t{i}"} for i, t in enumerate(frames)]
    return out


def write_traces(lake: BronzeLake, rows: dict[str, list[dict]], start: int, end: int) -> None:
    part = {k: [r for r in v if start <= r["block_number"] < end] for k, v in rows.items()}
    lake.replace_range("traces", rows_to_table("traces", traces_of(part)), start, end)


def byzantium_chain(n: int) -> dict[str, list[dict]]:
    """``chain(n)`` whose transactions have receipt_status 1 from block 12 on (null before)."""
    rows = chain(n)
    rows["transactions"] = [{**t, "receipt_status": 1 if t["block_number"] >= 12 else None}
                            for t in rows["transactions"]]
    return rows


@pytest.fixture()
def traced(tmp_path) -> BronzeLake:
    """Blocks [0, 40) in two ranges; traces only for blocks [10, 30) (also in two ranges)."""
    bronze = BronzeLake(str(tmp_path / "traced"))
    rows = byzantium_chain(40)
    for lo, hi in ((0, 20), (20, 40)):
        write(bronze, {k: [r for r in v if lo <= r["block_number"] < hi] for k, v in rows.items()},
              lo, hi)
    write_traces(bronze, rows, 10, 20)
    write_traces(bronze, rows, 20, 30)
    return bronze


def change_traces(lake: BronzeLake, number: int, change) -> None:
    rewrite_block(lake, "traces", number, change)


TRACE_CHECKS = ["one top-level trace per transaction", "top-level traces match transaction count",
                "trace status matches receipt", "trace transactions exist",
                "traces carry block hash", "traces chain id", "trace indexes 0..n-1",
                "trace indexes unique"]


def test_traces_pass_and_only_the_traces_window_is_checked(traced, no_network):
    report = validate_range(traced)
    assert report.success, report.render()
    assert [o.name for o in report.outcomes_for("traces")] == TRACE_CHECKS
    assert len(report.outcomes) == 13 + len(TRACE_CHECKS)
    assert report.traces_window == (10, 30) and report.traces_checked == (10, 30)
    assert report.rows["traces"] == 20 * 5  # two transactions of two traces each, one reward
    assert report.not_checked == {}
    text = report.render()
    assert "traces checked over blocks [10, 30) only" in text
    assert "not over 0..9, 30..39" in text
    # A range inside the window: all of it checked, no note.
    inside = validate_range(traced, 12, 18)
    assert inside.traces_checked == (12, 18) and not inside.notes and inside.success


def test_traces_outside_their_window_are_not_checked_not_failed(traced):
    report = validate_range(traced, 30, 40)
    assert report.success and report.outcomes_for("traces") == []
    assert report.traces_checked is None
    assert "outside the traces window" in report.not_checked["traces"]
    assert "holds blocks 10..29" in report.not_checked["traces"]
    assert "skip  traces" in report.render() and "PASSED" in report.render()


def test_no_traces_table_or_an_empty_one_is_not_checked(lake, tmp_path):
    report = validate_range(lake)
    assert report.success and report.traces_window is None
    assert "does not exist" in report.not_checked["traces"]
    assert report.missing_tables == []  # unlike transactions and logs, not a failure
    lake.replace_range("traces", rows_to_table("traces", []), 0, 40)
    empty = validate_range(lake)
    assert empty.success and "holds no rows" in empty.not_checked["traces"]
    # Only the traces expectations: nothing to run, nothing read.
    alone = validate_range(lake, tables=("traces",))
    assert alone.success and alone.outcomes == [] and alone.windows == 0


def test_a_deleted_traces_table_counts_as_no_traces(traced):
    report = validate_range(traced, deleted_tables=("traces",), collect_all=True)
    assert report.success and "traces" in report.not_checked
    assert report.all_offending_ranges == []


def test_a_gap_in_the_traces_window_is_named(traced):
    DeltaTable(traced.table_uri("traces")).delete("block_number = 20")
    report = validate_range(traced)
    assert failed(report) == {"one top-level trace per transaction": [20],
                              "top-level traces match transaction count": [20]}
    assert report.outcomes_for("traces")[1].table == "traces"


def test_a_block_without_transactions_needs_no_traces(traced):
    for table in ("transactions", "logs", "traces"):
        rewrite_block(traced, table, 15, lambda rows: [])
    rewrite_block(traced, "blocks", 15, lambda rows: [{**rows[0], "transaction_count": 0}])
    report = validate_range(traced)
    assert report.success, report.render()


def test_traces_added_later_make_the_blocks_between_a_gap(traced):
    write_traces(traced, byzantium_chain(40), 35, 40)
    report = validate_range(traced)
    assert report.traces_window == (10, 40)
    assert failed(report) == {"one top-level trace per transaction": [30, 31, 32, 33, 34],
                              "top-level traces match transaction count": [30, 31, 32, 33, 34]}


def test_a_second_top_level_trace_is_named(traced):
    # The child of transaction 0 loses its trace address: two top-level traces for one transaction.
    change_traces(traced, 12, lambda rows: [{**r, "trace_address": []} for r in rows])
    assert failed(validate_range(traced)) == {
        "one top-level trace per transaction": [12],
        "top-level traces match transaction count": [12]}


def test_a_top_level_trace_of_another_transaction_is_named(traced):
    change_traces(traced, 13, lambda rows: [
        {**r, "transaction_hash": tx_hash(99, 1)} if r["transaction_index"] == 1 else r
        for r in rows])
    assert failed(validate_range(traced)) == {"one top-level trace per transaction": [13],
                                              "trace transactions exist": [13]}


def test_a_trace_status_that_contradicts_the_receipt_is_named(traced):
    def fail_top(rows):
        return [{**r, "status": 0} if r["trace_address"] == [] and r["transaction_index"] == 0
                else r for r in rows]

    change_traces(traced, 16, fail_top)
    change_traces(traced, 11, fail_top)  # receipt_status null (pre-Byzantium): not compared
    # A nested trace may fail while its transaction succeeds.
    change_traces(traced, 17, lambda rows: [{**r, "status": 0} if r["trace_address"] == [0] else r
                                            for r in rows])
    assert failed(validate_range(traced)) == {"trace status matches receipt": [16]}


def test_traces_with_a_stale_block_hash_or_another_chain_are_named(traced):
    change_traces(traced, 18, lambda rows: [{**r, "block_hash": block_hash(18, "f")} for r in rows])
    change_traces(traced, 19, lambda rows: [{**rows[0], "chain_id": 1}, *rows[1:]])
    assert failed(validate_range(traced)) == {"traces carry block hash": [18],
                                              "traces chain id": [19]}


def test_trace_index_gaps_and_duplicates_are_named_apart(traced):
    change_traces(traced, 22, lambda rows: [{**r, "trace_index": r["trace_index"] + 1} for r in rows])
    change_traces(traced, 23, lambda rows: [*rows[:-1], {**rows[-1], "trace_index": 3}])
    assert failed(validate_range(traced)) == {"trace indexes 0..n-1": [22],
                                              "trace indexes unique": [23]}


def test_traces_windows_agree_and_collect_all_names_every_block(traced):
    DeltaTable(traced.table_uri("traces")).delete("block_number >= 14 AND block_number < 17")
    change_traces(traced, 25, lambda rows: [{**r, "block_hash": "0xdead"} for r in rows])
    whole = validate_range(traced, 5, 40, collect_all=True)
    assert whole.windows == 1
    assert failed(whole) == {"one top-level trace per transaction": [14, 15, 16],
                             "top-level traces match transaction count": [14, 15, 16],
                             "traces carry block hash": [25]}
    assert whole.all_offending_ranges == [(14, 17), (25, 26)]
    for size in (3, 7, 64):
        windowed = validate_range(traced, 5, 40, collect_all=True, window=size)
        assert windowed.outcomes == whole.outcomes, size
        assert windowed.rows == whole.rows and windowed.traces_checked == (10, 30)
    # Only the traces expectations: the same outcomes, reading only the traces window.
    alone = validate_range(traced, 5, 40, collect_all=True, tables=("traces",), window=7)
    assert alone.outcomes == whole.outcomes_for("traces")
    assert alone.rows["blocks"] == 20 and alone.rows["logs"] == 0
    with pytest.raises(ValueError, match="tables must be"):
        validate_range(traced, tables=("receipts",))


def test_repair_reingests_traces_only_next_to_the_traces_window():
    from ingestion.repair import with_traces

    ranges = [(0, 5), (6, 10), (12, 20), (25, 35), (35, 36), (40, 50)]
    # Apart from [10, 35): no traces (they would widen the window over untraced blocks);
    # overlapping or touching it: traces (the window grows only over blocks just traced).
    assert with_traces(ranges, (10, 35)) == [
        (0, 5, False), (6, 10, True), (12, 20, True), (25, 35, True), (35, 36, True),
        (40, 50, False)]
    assert with_traces(ranges, None) == [(a, b, False) for a, b in ranges]


def test_validation_right_after_a_preload_waits_for_it(tmp_path):
    """``preload()`` imports great_expectations in a thread while a Dagster run ingests; a
    validation started meanwhile must wait for it (GX cannot be imported from two threads at
    once). In a fresh interpreter, so that the import really happens."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    script = f"""
import sys
sys.path.insert(0, {str(tests)!r})
from synthetic_chain import chain, write
from ingestion import continuity
from ingestion.sink import BronzeLake
lake = BronzeLake({str(tmp_path / "lake")!r})
write(lake, chain(10), 0, 10)
continuity.preload()
continuity.preload()  # a second call starts nothing
report = continuity.validate_range(lake)
assert report.success, report.render()
print("validated", report.rows["blocks"])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "validated 10"


def test_hash_codes_are_the_same_over_fixed_width_and_string_columns():
    import random

    import pyarrow as pa

    from ingestion.continuity import _codes

    rng = random.Random(7)
    pool = ["0x" + rng.randbytes(32).hex() for _ in range(50)]

    def column(n: int, nulls: bool = False, odd: bool = False) -> pa.ChunkedArray:
        values = [rng.choice(pool) for _ in range(n)]
        if nulls:
            values[rng.randrange(n)] = None
        if odd:
            values[rng.randrange(n)] = "0xabc"  # another width: the string path
        return pa.chunked_array([pa.array(values[: n // 2]), pa.array(values[n // 2:])])

    for columns in ([column(40), column(30)], [column(40), column(30, nulls=True)],
                    [column(40, odd=True), column(30)], [column(40).slice(5), column(9)]):
        got = [c.to_pylist() for c in _codes(columns)]
        strings = [v for c in columns for v in c.to_pylist()]
        flat = [v for c in got for v in c]
        for i, a in enumerate(strings):  # equal codes exactly when equal strings; null -> -1
            assert (flat[i] == -1) == (a is None)
            for j in range(i):
                if a is not None and strings[j] is not None:
                    assert (flat[i] == flat[j]) == (a == strings[j])
