"""The bronze tables are plain Delta: Polars, DuckDB (over Arrow) and Spark without Delta jars agree.

One ``run_ingest`` of the devnet fills a lake; every reader must then see the same rows as
``BronzeLake.read``. Readers must go through the Delta log (``DeltaTable.file_uris()``, an Arrow
dataset, ``pl.read_delta``): after a range replace the old files stay on disk until a vacuum, so a
plain directory read of the Parquet files shows the replaced rows twice. The last test documents
that trap.
"""

from __future__ import annotations

import shutil

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from ingestion.ingest import run_ingest
from ingestion.rpc import RpcClient
from ingestion.schemas import TABLES, spark_schema
from ingestion.sink import BronzeLake
from ingestion.source import SourceOptions
from ingestion.transform import bundle_batch

NAMES = ("blocks", "transactions", "logs")


@pytest.fixture(scope="module")
def ingested(spark, devnet, tmp_path_factory) -> BronzeLake:
    """A lake filled by one availableNow run over the whole devnet chain (3 micro-batches)."""
    lake = BronzeLake(str(tmp_path_factory.mktemp("readers") / "lake"))
    opts = SourceOptions(rpc_url=devnet.url, start_block=0, end_block=devnet.head + 1,
                         max_blocks_per_trigger=20, blocks_per_partition=10)
    result = run_ingest(spark, opts, lake)
    assert result.blocks == devnet.head + 1 and len(result.batches) >= 3
    return lake


@pytest.fixture()
def own_lake(ingested, tmp_path) -> BronzeLake:
    """A private copy of the ingested lake, for tests that write to it."""
    shutil.copytree(ingested.root, tmp_path / "lake")
    return BronzeLake(str(tmp_path / "lake"))


def key_columns(name: str) -> list[str]:
    return list(TABLES[name].key)


def keys_of(rows) -> list[tuple]:
    return sorted(tuple(row) for row in rows)


def lake_keys(lake: BronzeLake, name: str) -> list[tuple]:
    table = lake.read(name).select(key_columns(name))
    return keys_of(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def polars_keys(uri: str, name: str) -> list[tuple]:
    return keys_of(pl.read_delta(uri).select(key_columns(name)).rows())


def duckdb_keys(uri: str, name: str) -> list[tuple]:
    # DuckDB 2.0's delta extension needs a download: query the table's Arrow dataset instead (it
    # lists exactly the files of the current Delta version).
    con = duckdb.connect()
    try:
        con.register("t", DeltaTable(uri).to_pyarrow_dataset())
        return keys_of(con.sql(f"select {', '.join(key_columns(name))} from t").fetchall())
    finally:
        con.close()


def spark_delta_frame(spark, uri: str):
    """The current Delta version read by Spark without Delta jars: only the log's live files."""
    return spark.read.option("basePath", uri).parquet(*DeltaTable(uri).file_uris())


def spark_keys(frame, name: str) -> list[tuple]:
    return keys_of(frame.select(*key_columns(name)).collect())


def assert_all_readers_agree(spark, lake: BronzeLake, name: str) -> list[tuple]:
    uri = lake.table_uri(name)
    expected = lake_keys(lake, name)
    assert expected, f"{name} is empty"
    assert len(set(expected)) == len(expected), f"duplicate key in {name}"
    assert polars_keys(uri, name) == expected, f"Polars reads other {name} rows"
    assert duckdb_keys(uri, name) == expected, f"DuckDB reads other {name} rows"
    assert spark_keys(spark_delta_frame(spark, uri), name) == expected, f"Spark reads other {name}"
    return expected


@pytest.mark.parametrize("name", NAMES)
def test_polars_duckdb_and_spark_without_delta_jars_read_the_same_rows(spark, devnet, ingested,
                                                                        name):
    keys = assert_all_readers_agree(spark, ingested, name)
    if name == "blocks":
        assert keys == [(devnet.chain_id, n) for n in range(devnet.head + 1)]
    uri = ingested.table_uri(name)
    # Counts as each engine computes them, not only the keys it returns.
    rows = len(keys)
    blocks = len({k[1] for k in keys})
    assert pl.read_delta(uri).height == rows
    t = DeltaTable(uri).to_pyarrow_dataset()  # noqa: F841 - found by DuckDB's replacement scan
    assert duckdb.sql("select count(*), count(distinct block_number) from t").fetchall() == [
        (rows, blocks)]
    frame = spark_delta_frame(spark, uri)
    assert frame.count() == rows
    assert frame.select("block_number").distinct().count() == blocks


@pytest.mark.parametrize("name", NAMES)
def test_readers_see_the_declared_types(spark, ingested, name):
    declared = TABLES[name].arrow_schema
    uri = ingested.table_uri(name)
    frame = spark_delta_frame(spark, uri)
    assert frame.columns == declared.names
    want = {f.name: f.dataType.simpleString() for f in spark_schema(declared).fields}
    assert {f.name: f.dataType.simpleString() for f in frame.schema.fields} == want
    polars = pl.read_delta(uri).to_arrow()
    assert polars.column_names == declared.names
    exact = (pa.types.is_decimal, pa.types.is_timestamp, pa.types.is_integer)
    for field in declared:  # Polars widens strings and lists to their large variants
        if any(kind(field.type) for kind in exact):
            assert polars.schema.field(field.name).type == field.type, field.name


def test_a_replaced_range_shows_no_stale_rows_but_a_directory_read_does(spark, devnet, own_lake):
    lake = own_lake
    before = {name: lake.read(name).num_rows for name in NAMES}
    directory_before = {name: spark.read.parquet(lake.table_uri(name)).count() for name in NAMES}
    assert directory_before == before  # no file was ever replaced yet: the trap is invisible
    # Re-ingest blocks [10, 20) (as a rerun, a repair or a backfill would): a range replace.
    with RpcClient(devnet.url) as client:
        raw = client.fetch_raw_blocks(10, 20)
    bundle = pa.Table.from_batches([bundle_batch(devnet.chain_id, raw)])
    lake.write_bundle(bundle, 10, 20)
    for name in NAMES:
        keys = assert_all_readers_agree(spark, lake, name)
        assert len(keys) == before[name], f"{name}: the replace changed the row count"
        uri = lake.table_uri(name)
        assert spark_delta_frame(spark, uri).count() == before[name]
        # The trap: the files the replace removed from the log are still in the directory, so a
        # plain Parquet read of it counts the replaced rows twice.
        directory = spark.read.parquet(uri)
        assert directory.count() > before[name], f"{name}: expected stale files on disk"
        duplicated = (directory.groupBy(*key_columns(name)).count()
                      .where("count > 1").select("block_number").distinct().collect())
        assert {row.block_number for row in duplicated} <= set(range(0, 20))
        assert {row.block_number for row in duplicated} >= set(range(10, 20)) & {
            k[1] for k in keys}
