"""The continuity suite on small synthetic bronze tables (delta-rs in tmp_path; no Spark, no network).

``chain()`` builds a consistent chain (linked hashes, rising timestamps, k transactions per
block, one log per transaction); each test breaks one thing and checks that the report names
the offending block.
"""

from __future__ import annotations

import socket

import pytest
from deltalake import DeltaTable
from synthetic_chain import CHAIN_ID, T0, block_hash, chain, rewrite_block, rows_to_table, write

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
    assert report.rows == {"blocks": 40, "transactions": 80, "logs": 80}
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
