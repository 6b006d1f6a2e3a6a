"""The `evm` source on the real devnet: batch and availableNow stream reads equal what web3 reads."""

from __future__ import annotations

import pyarrow as pa
import pytest
from reference import project, reference_rows

from ingestion.ingest import run_ingest
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake
from ingestion.source import SourceOptions
from ingestion.transform import split_bundle

DATASETS = ("blocks", "transactions", "logs")


@pytest.fixture(scope="module")
def reference(devnet):
    return reference_rows(devnet.url, 0, devnet.head + 1)


def read_batch(spark, devnet, dataset: str, start: int = 0, end: int | None = None,
               **options) -> pa.Table:
    reader = (spark.read.format("evm").option("rpc_url", devnet.url)
              .option("dataset", dataset).option("start_block", start)
              .option("end_block", (devnet.head + 1) if end is None else end)
              .option("blocks_per_partition", 16))
    for key, value in options.items():
        reader = reader.option(key, value)
    return reader.load().toArrow()


def sorted_rows(table: pa.Table, name: str) -> list[dict]:
    return table.sort_by([(k, "ascending") for k in TABLES[name].key]).to_pylist()


def assert_equals_reference(table: pa.Table, name: str, reference: dict) -> None:
    expected = reference[name]
    assert expected, f"reference has no {name}"
    actual = project(sorted_rows(table, name), list(expected[0]))
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got == want, f"{name} row for block {want['block_number']} differs"


@pytest.mark.parametrize("dataset", DATASETS)
def test_batch_read_equals_web3(spark, devnet, reference, dataset):
    table = read_batch(spark, devnet, dataset)
    assert table.schema.names == TABLES[dataset].arrow_schema.names
    assert_equals_reference(table, dataset, reference)


def test_bundle_holds_the_same_rows_as_the_flat_datasets(spark, devnet):
    bundle = read_batch(spark, devnet, "bundle")
    split = split_bundle(bundle)
    for name in DATASETS:
        flat = read_batch(spark, devnet, name)
        assert sorted_rows(split[name], name) == sorted_rows(flat, name)


def test_devnet_chain_covers_every_transaction_shape(spark, devnet):
    txs = read_batch(spark, devnet, "transactions").to_pylist()
    assert {tx["transaction_type"] for tx in txs} >= {0, 1, 2, 3, 4}
    assert any(tx["to_address"] is None and tx["receipt_contract_address"] for tx in txs)
    assert any(tx["receipt_status"] == 0 for tx in txs)
    assert any(tx["value"] > 2**64 for tx in txs)
    assert any(tx["blob_versioned_hashes"] for tx in txs)
    assert any(tx["authorization_list"] for tx in txs)
    assert any(tx["access_list"] and tx["access_list"][0]["storage_keys"] for tx in txs)
    blocks = read_batch(spark, devnet, "blocks").to_pylist()
    assert any(b["transaction_count"] == 0 for b in blocks[1:])
    logs = read_batch(spark, devnet, "logs").to_pylist()
    transfer = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    assert any(log["topics"] and log["topics"][0] == transfer for log in logs)


def test_partial_range_is_exactly_that_range(spark, devnet):
    table = read_batch(spark, devnet, "blocks", start=3, end=11, blocks_per_partition=3)
    assert sorted(table.column("block_number").to_pylist()) == list(range(3, 11))


def collect_stream(spark, devnet, checkpoint: str, *, max_blocks: int, end: int | None = None,
                   fail_after_batch: int | None = None) -> list[tuple[int, int, int]]:
    """Run an availableNow stream of blocks; return (batch_id, first, count) per micro-batch."""
    seen: list[tuple[int, int, int]] = []

    def record(df, batch_id):
        numbers = sorted(df.toArrow().column("block_number").to_pylist())
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "gap in a batch"
        seen.append((batch_id, numbers[0], len(numbers)))
        if fail_after_batch is not None and batch_id >= fail_after_batch:
            raise RuntimeError("simulated crash after a batch")

    reader = (spark.readStream.format("evm").option("rpc_url", devnet.url)
              .option("dataset", "blocks").option("max_blocks_per_trigger", max_blocks)
              .option("blocks_per_partition", 4))
    if end is not None:
        reader = reader.option("end_block", end)
    query = (reader.load().writeStream.foreachBatch(record)
             .option("checkpointLocation", checkpoint).trigger(availableNow=True).start())
    try:
        query.awaitTermination()
    finally:
        query.stop()
    return seen


@pytest.mark.parametrize("dataset", DATASETS)
def test_available_now_stream_equals_web3(spark, devnet, reference, tmp_path, dataset):
    batches: list[pa.Table] = []
    query = (spark.readStream.format("evm").option("rpc_url", devnet.url)
             .option("dataset", dataset).option("end_block", devnet.head + 1)
             .option("max_blocks_per_trigger", 25).option("blocks_per_partition", 10).load()
             .writeStream.foreachBatch(lambda df, _: batches.append(df.toArrow()))
             .option("checkpointLocation", str(tmp_path / "ckpt")).trigger(availableNow=True)
             .start())
    query.awaitTermination()
    assert len(batches) == -(-(devnet.head + 1) // 25)
    assert_equals_reference(pa.concat_tables(batches), dataset, reference)


def test_available_now_drains_backlog_in_bounded_batches(spark, devnet, tmp_path):
    end = min(devnet.head + 1, 45)
    seen = collect_stream(spark, devnet, str(tmp_path / "ckpt"), max_blocks=7, end=end)
    assert [count for _, _, count in seen] == [7] * (end // 7) + ([end % 7] if end % 7 else [])
    firsts = [first for _, first, _ in seen]
    assert firsts == list(range(0, end, 7))


def test_restart_on_the_same_checkpoint_resumes_without_gap_or_duplicate(spark, devnet, tmp_path):
    end = min(devnet.head + 1, 40)
    checkpoint = str(tmp_path / "ckpt")
    with pytest.raises(Exception, match="simulated crash"):
        collect_stream(spark, devnet, checkpoint, max_blocks=6, end=end, fail_after_batch=2)
    resumed = collect_stream(spark, devnet, checkpoint, max_blocks=6, end=end)
    # The failed batch 2 was never committed: Spark replays exactly it, then goes on.
    assert resumed[0][:2] == (2, 12)
    blocks = [n for _, first, count in resumed for n in range(first, first + count)]
    assert blocks == list(range(12, end))


def test_ingest_writes_bronze_tables_equal_to_the_node(spark, devnet, reference, lake):
    opts = SourceOptions(rpc_url=devnet.url, start_block=0, end_block=devnet.head + 1,
                         max_blocks_per_trigger=20, blocks_per_partition=10)
    result = run_ingest(spark, opts, lake)
    assert result.blocks == devnet.head + 1
    assert all(b.blocks <= 20 for b in result.batches)
    # A local session: the driver fetched the first micro-batch while the query started
    # (ingestion.head_start), and the tables still equal the node's.
    assert 0 < result.head_start_blocks <= 20
    for name in DATASETS:
        assert_equals_reference(lake.read(name), name, reference)


def test_ingest_resumes_after_a_crash_and_follows_the_chain(spark, devnet, reference, tmp_path,
                                                            monkeypatch):
    from ingestion import ingest

    lake = BronzeLake(str(tmp_path / "lake"))
    opts = SourceOptions(rpc_url=devnet.url, start_block=0, end_block=devnet.head + 1,
                         max_blocks_per_trigger=9, blocks_per_partition=5)
    real_commit = ingest.commit_linked

    def crash_after_second(*args, app_transaction=None, **kwargs):
        # Inside foreachBatch (this process's driver): batch 1 is in the lake, then it dies.
        committed = real_commit(*args, app_transaction=app_transaction, **kwargs)
        if app_transaction is not None and app_transaction[1] == 1:
            raise RuntimeError("simulated crash after a committed write")
        return committed

    monkeypatch.setattr(ingest, "commit_linked", crash_after_second)
    with pytest.raises(Exception, match="simulated crash"):
        run_ingest(spark, opts, lake)
    monkeypatch.undo()
    resumed = run_ingest(spark, opts, lake)
    # Batch 1 was committed to the lake (with its app transaction) but not to Spark's commit
    # log: Spark replays it, the sink recognises it and skips it, and the run goes on.
    assert resumed.batches[0].start == 18
    for name in DATASETS:
        table = lake.read(name)
        keys = table.select(list(TABLES[name].key)).to_pylist()
        assert len(keys) == len({tuple(k.values()) for k in keys}), f"duplicate key in {name}"
        assert_equals_reference(table, name, reference)
    again = run_ingest(spark, opts, lake)
    assert again.batches == []  # nothing new: the checkpoint is at the end of the range


def test_wrong_chain_id_fails_with_a_clear_error(spark, devnet):
    with pytest.raises(Exception, match="chain id 31337, expected 1"):
        read_batch(spark, devnet, "blocks", end=3, chain_id=1)


def test_block_beyond_the_head_is_an_error_not_a_skip(spark, devnet):
    with pytest.raises(Exception, match="beyond what the node can serve"):
        read_batch(spark, devnet, "blocks", start=0, end=devnet.head + 1000)


def test_bad_options_name_the_problem(spark, devnet):
    with pytest.raises(Exception, match="end_block .* must be greater than start_block"):
        read_batch(spark, devnet, "blocks", start=10, end=5)
    with pytest.raises(Exception, match="option 'dataset' must be one of"):
        read_batch(spark, devnet, "receipts")


def test_python_workers_import_the_installed_pyspark(spark):
    """Local sessions start Python workers without Spark's zipped pyspark on PYTHONPATH
    (ingestion.python_workers): the installed, byte-compiled package is what they import."""
    import pyspark
    from pyspark.sql.functions import udf

    where = udf(lambda _: __import__("pyspark").__file__)
    imported = spark.range(1).select(where("id")).collect()[0][0]
    assert ".zip" not in imported and ".jar" not in imported
    assert imported == pyspark.__file__
