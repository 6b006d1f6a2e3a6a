"""ingestion.silver on the session devnet: bronze filled by a real ingestion run, silver built.

What is checked, per table: the rows are exactly the pure decoder's output over the bronze rows
of the range; building again changes nothing (and, with a watermark, reads nothing); windows of
bounded rows give the same table as one window; a change in bronze is rebuilt from the Delta
history alone; the check functions pass, and a tampered silver table makes them fail naming
the offending key.
"""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ingestion.coverage import FileSpan
from ingestion.datasets.contracts import contracts_from_traces
from ingestion.datasets.token_transfers import ERC20, decode_token_transfers
from ingestion.identity import ChainIdentity
from ingestion.ingest import run_ingest
from ingestion.rpc import RpcClient
from ingestion.silver import (
    SilverLake,
    build_contracts,
    build_token_transfers,
    build_tokens,
    check_contracts,
    check_token_transfers,
    check_tokens,
    row_windows,
)
from ingestion.sink import BronzeLake, LakeError
from ingestion.source import SourceOptions


@pytest.fixture(scope="module")
def bronze_root(spark, devnet, tmp_path_factory) -> str:
    """Bronze of the whole session chain (with traces when the node serves them), once."""
    root = str(tmp_path_factory.mktemp("silver") / "bronze-lake")
    opts = SourceOptions(rpc_url=devnet.url, start_block=0, end_block=devnet.head + 1,
                         max_blocks_per_trigger=200, blocks_per_partition=50)
    run_ingest(spark, opts, BronzeLake(root))
    return root


@pytest.fixture()
def lake_root(bronze_root, tmp_path) -> str:
    """A copy of the bronze lake each test may change."""
    root = tmp_path / "lake"
    shutil.copytree(bronze_root, root, ignore=shutil.ignore_patterns("_checkpoints", "silver"))
    return str(root)


@pytest.fixture()
def end(devnet) -> int:
    return devnet.head + 1


def has_traces(root: str) -> bool:
    dt = BronzeLake(root).table("traces")
    return dt is not None and dt.to_pyarrow_dataset().count_rows() > 0


@pytest.fixture()
def traced(lake_root) -> str:
    if not has_traces(lake_root):
        pytest.skip("bronze/traces not filled by run_ingest (no tracing API ingested)")
    return lake_root


def sorted_rows(table: pa.Table, key: list[str]) -> list[dict]:
    return table.sort_by([(k, "ascending") for k in key]).to_pylist()


def client_factory(devnet):
    return lambda: RpcClient(devnet.url)


# --- token_transfers ---------------------------------------------------------------------------


def test_token_transfers_are_the_decoded_bronze_logs_and_a_rebuild_changes_nothing(
        lake_root, devnet, end):
    key = ["block_number", "log_index", "batch_index"]
    built = build_token_transfers(lake_root, 0, end)
    silver = SilverLake(lake_root)
    expected = decode_token_transfers(BronzeLake(lake_root).read_range("logs", 0, end))
    rows = silver.read("token_transfers")
    assert sorted_rows(rows, key) == sorted_rows(expected, key)
    assert built.rows_written == built.rows_in_range == expected.num_rows > 0
    erc20 = rows.filter(pc.equal(rows["token_standard"], ERC20))
    assert devnet.token_address.lower() in set(erc20["token_address"].to_pylist())
    # Stamped with the lake's chain, like bronze.
    assert silver.identity() == BronzeLake(lake_root).identity()
    assert silver.identity().chain_id == devnet.chain_id

    again = build_token_transfers(lake_root, 0, end)
    assert sorted_rows(silver.read("token_transfers"), key) == sorted_rows(expected, key)
    assert again.rows_in_range == built.rows_in_range

    # Windows of a few rows each give the same table, one commit per window.
    windowed = build_token_transfers(lake_root, 0, end, max_rows=40)
    assert windowed.windows > 3
    assert sorted_rows(silver.read("token_transfers"), key) == sorted_rows(expected, key)


def test_a_watermarked_build_rebuilds_only_what_bronze_changed(lake_root, end):
    key = ["block_number", "log_index", "batch_index"]
    first = build_token_transfers(lake_root, 0, end, watermark="all")
    assert first.rebuilt == ((0, end),)
    silver = SilverLake(lake_root)
    version = silver.table("token_transfers").version()

    nothing = build_token_transfers(lake_root, 0, end, watermark="all")
    assert nothing.rebuilt == () and nothing.rows_written == 0
    assert silver.table("token_transfers").version() == version  # not even a watermark commit

    # Bronze loses the first transfer log's block range [b, b + 3) (as a repair might leave it):
    # the next build rebuilds exactly those blocks, from the Delta history alone.
    bronze = BronzeLake(lake_root)
    block = silver.read("token_transfers")["block_number"][0].as_py()
    logs = bronze.read_range("logs", block, block + 3)
    kept = logs.filter(pc.not_equal(logs["block_number"], block))
    bronze.replace_range("logs", kept, block, block + 3)
    changed = build_token_transfers(lake_root, 0, end, watermark="all")
    assert changed.rebuilt == ((block, block + 3),)
    expected = decode_token_transfers(bronze.read_range("logs", 0, end))
    assert sorted_rows(silver.read("token_transfers"), key) == sorted_rows(expected, key)
    assert block not in set(silver.read("token_transfers")["block_number"].to_pylist())
    assert check_token_transfers(lake_root, 0, end).passed

    # A source commit that does not say which blocks it replaced: everything is rebuilt.
    dt = bronze.table("logs")
    dt.delete(f"block_number = {block + 1}")
    unknown = build_token_transfers(lake_root, 0, end, watermark="all")
    assert unknown.rebuilt == ((0, end),)
    assert check_token_transfers(lake_root, 0, end).passed


def test_token_transfer_check_passes_and_names_a_missing_or_doubled_row(lake_root, end):
    build_token_transfers(lake_root, 0, end)
    report = check_token_transfers(lake_root, 0, end)
    assert report.passed, report.describe()
    assert report.counts["rows"] == report.counts["expected_rows"] > 0
    assert report.counts["transfer_logs"] > 0 and report.offending == ()

    silver = SilverLake(lake_root)
    rows = silver.read("token_transfers")
    victim = rows.slice(0, 1).to_pylist()[0]
    block, log_index = victim["block_number"], victim["log_index"]
    in_block = rows.filter(pc.equal(rows["block_number"], block))
    others = in_block.filter(pc.not_equal(in_block["log_index"], log_index))
    silver.replace_range("token_transfers", others, block, block + 1)
    failed = check_token_transfers(lake_root, 0, end)
    assert not failed.passed
    assert failed.offending[0] == f"block {block} log {log_index}: 0 row(s), expected 1"
    assert f"block {block} log {log_index}" in failed.describe()

    doubled = pa.concat_tables([in_block, in_block.slice(0, 1)])
    silver.replace_range("token_transfers", doubled, block, block + 1)
    failed = check_token_transfers(lake_root, 0, end)
    assert not failed.passed
    assert failed.offending == (f"block {block} log {log_index}: 2 row(s), expected 1",)

    # A row for a log that is no transfer (or not in bronze at all).
    stray = dict(victim, log_index=10_000)
    silver.replace_range("token_transfers", pa.concat_tables(
        [in_block, pa.Table.from_pylist([stray], schema=in_block.schema)]), block, block + 1)
    failed = check_token_transfers(lake_root, 0, end)
    assert failed.offending == (f"block {block} log 10000: 1 row(s) for a log bronze does not "
                                f"have",)


def test_silver_of_another_chain_than_bronze_is_refused(lake_root, end):
    build_token_transfers(lake_root, 0, end)
    silver = SilverLake(lake_root)
    other = ChainIdentity(1, 0, "0x" + "11" * 32)
    for name in silver.tables:
        silver.table(name).alter.set_table_properties(other.properties(),
                                                      raise_if_not_exists=False)
    with pytest.raises(LakeError, match="silver tables .* hold chain id 1"):
        build_token_transfers(lake_root, 0, end)
    # One silver table of another chain than the others: refused too.
    silver.table("tokens").alter.set_table_properties(
        BronzeLake(lake_root).identity().properties(), raise_if_not_exists=False)
    with pytest.raises(LakeError, match="disagree about their chain"):
        build_token_transfers(lake_root, 0, end)


def test_row_windows_bound_rows_and_cover_the_range():
    files = [FileSpan(0, 9, 100), FileSpan(10, 19, 10), FileSpan(20, 20, 500)]
    windows = row_windows(files, 0, 30, max_rows=50)
    assert windows[0][0] == 0 and windows[-1][1] == 30
    assert all(a < b for a, b in windows)
    assert all(w[1] == n[0] for w, n in zip(windows, windows[1:], strict=False))
    assert (20, 21) in windows  # one block above the bound is a window of its own
    assert windows[0] == (0, 5)  # 10 rows a block
    assert row_windows([], 5, 8) == [(5, 8)]
    assert row_windows([FileSpan(None, None, -1)], 0, 100, max_rows=1) == [(0, 100)]


# --- contracts and tokens (need bronze/traces) -------------------------------------------------


def contract_key() -> list[str]:
    return ["block_number", "transaction_index", "address"]


def test_contracts_are_the_creations_of_bronze_traces(traced, end):
    built = build_contracts(traced, 0, end)
    silver = SilverLake(traced)
    traces = BronzeLake(traced).read_range("traces", 0, end)
    expected = contracts_from_traces(traces)
    rows = silver.read("contracts")
    assert sorted_rows(rows, contract_key()) == sorted_rows(expected, contract_key())
    assert built.rows_in_range == expected.num_rows > 0
    # Creations by transactions and by contracts (CREATE and CREATE2 from code).
    depths = set(pc.list_value_length(rows["trace_address"]).to_pylist())
    assert 0 in depths and any(d > 0 for d in depths)
    assert rows.filter(rows["is_erc20"]).num_rows > 0
    report = check_contracts(traced, 0, end)
    assert report.passed, report.describe()
    assert report.counts["create_traces"] == report.counts["rows"] == expected.num_rows

    again = build_contracts(traced, 0, end, max_rows=30)
    assert again.windows > 1
    assert sorted_rows(silver.read("contracts"), contract_key()) == sorted_rows(
        expected, contract_key())


def test_contract_check_names_a_missing_creation(traced, end):
    build_contracts(traced, 0, end)
    silver = SilverLake(traced)
    rows = silver.read("contracts")
    inner = rows.filter(pc.greater(pc.list_value_length(rows["trace_address"]), 0))
    victim = inner.slice(0, 1).to_pylist()[0]
    block = victim["block_number"]
    in_block = rows.filter(pc.equal(rows["block_number"], block))
    keep = pc.invert(pc.equal(in_block["address"], victim["address"]))
    silver.replace_range("contracts", in_block.filter(keep), block, block + 1)
    report = check_contracts(traced, 0, end)
    assert not report.passed
    path = ",".join(map(str, victim["trace_address"]))
    assert report.offending == (
        f"block {block} tx {victim['transaction_index']} trace [{path}]: 0 rows for the create "
        f"of {victim['address']}",)


def test_tokens_are_read_at_the_creation_block_of_each_token_contract(traced, devnet, end):
    build_contracts(traced, 0, end)
    built = build_tokens(traced, client_factory(devnet), 0, end)
    silver = SilverLake(traced)
    contracts = silver.read("contracts")
    token_contracts = contracts.filter(pc.or_(contracts["is_erc20"], contracts["is_erc721"]))
    tokens = silver.read("tokens")
    assert sorted(zip(tokens["address"].to_pylist(), tokens["block_number"].to_pylist(),
                      strict=True)) == sorted(zip(token_contracts["address"].to_pylist(),
                                                  token_contracts["block_number"].to_pylist(),
                                                  strict=True))
    assert built.calls == {"contracts": token_contracts.num_rows}
    token = tokens.filter(pc.equal(tokens["address"], devnet.token_address.lower())).to_pylist()
    assert len(token) == 1
    assert token[0]["symbol"] and token[0]["decimals"] is not None
    assert token[0]["is_erc20"] is True
    report = check_tokens(traced, 0, end)
    assert report.passed, report.describe()

    # Watermarked: a second build makes no call at all.
    build_tokens(traced, client_factory(devnet), 0, end, watermark="all")
    quiet = build_tokens(traced, client_factory(devnet), 0, end, watermark="all")
    assert quiet.rebuilt == () and quiet.calls == {}

    # Tampered: the token's row is gone.
    block = token[0]["block_number"]
    in_block = tokens.filter(pc.equal(tokens["block_number"], block))
    silver.replace_range("tokens", in_block.filter(
        pc.not_equal(in_block["address"], token[0]["address"])), block, block + 1)
    failed = check_tokens(traced, 0, end)
    assert not failed.passed
    assert failed.offending == (f"block {block} address {token[0]['address']}: 0 rows",)


def test_contracts_without_bronze_traces_are_refused(lake_root, end):
    shutil.rmtree(BronzeLake(lake_root).table_uri("traces"), ignore_errors=True)
    with pytest.raises(LakeError, match="traces"):
        build_contracts(lake_root, 0, end)


def test_maintenance_compacts_silver_tables_without_changing_a_row(lake_root, end):
    from ingestion.maintenance import maintain_lake

    key = ["block_number", "log_index", "batch_index"]
    build_token_transfers(lake_root, 0, end, max_rows=40, watermark="all")  # many small files
    silver = SilverLake(lake_root)
    before = sorted_rows(silver.read("token_transfers"), key)
    files_before = len(silver.table("token_transfers").file_uris())
    assert files_before > 3
    report = maintain_lake(BronzeLake(lake_root), closed_before=end, partition_size=end,
                           retention_hours=0, enforce_retention_duration=False)
    assert report.tables["silver/token_transfers"].units_compacted >= 1
    assert len(silver.table("token_transfers").file_uris()) < files_before
    assert sorted_rows(silver.read("token_transfers"), key) == before
    # Compactions (of bronze logs too) change no row: a watermarked build finds nothing to do.
    assert build_token_transfers(lake_root, 0, end, watermark="all").rebuilt == ()
