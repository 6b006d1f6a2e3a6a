"""`chainlake repair`: what the continuity suite rejects is re-ingested from the node, after
which `chainlake validate` and the blocking Dagster check pass and the tables equal the node."""

import re
import shutil

import dagster as dg
import pytest
from deltalake import DeltaTable
from reference import project, reference_rows
from synthetic_chain import rewrite_block

from ingestion.cli import main
from ingestion.continuity import validate_range
from ingestion.ingest import run_ingest
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake
from ingestion.source import SourceOptions

END = 32


@pytest.fixture(scope="module")
def ingested(spark, devnet, tmp_path_factory) -> BronzeLake:
    lake = BronzeLake(str(tmp_path_factory.mktemp("repair") / "lake"))
    run_ingest(spark, SourceOptions(rpc_url=devnet.url, end_block=END, max_blocks_per_trigger=16,
                                    blocks_per_partition=8), lake)
    return lake


@pytest.fixture()
def damaged(ingested, tmp_path) -> BronzeLake:
    shutil.copytree(ingested.root, tmp_path / "copy")
    return BronzeLake(str(tmp_path / "copy"))


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


def assert_equals_node(lake: BronzeLake, devnet) -> None:
    expected = reference_rows(devnet.url, 0, END)
    for name in expected:  # the core tables web3 decodes
        rows = lake.read(name).sort_by([(k, "ascending") for k in TABLES[name].key]).to_pylist()
        assert project(rows, list(expected[name][0])) == expected[name], name


def dagster_checks_pass(lake: BronzeLake, devnet) -> bool:
    """Run only the blocking continuity checks (whole stored range) on a test instance."""
    from assets.bronze import bronze_ingest
    from assets.checks import bronze_continuity
    from assets.resources import LakeResource, RpcResource, SparkResource

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [bronze_ingest, bronze_continuity],
            selection=dg.AssetSelection.checks_for_assets(bronze_ingest), instance=instance,
            resources={"rpc": RpcResource(url=devnet.url), "spark": SparkResource(),
                       "lake": LakeResource(uri=lake.root)},
            raise_on_error=False)
    return result.success and all(e.passed for e in result.get_asset_check_evaluations())


@pytest.mark.parametrize("damage", ["deleted block", "broken parent hash", "missing logs"])
def test_repair_restores_what_validate_rejects(spark, devnet, damaged, capsys, damage):
    if damage == "deleted block":
        DeltaTable(damaged.table_uri("blocks")).delete("block_number = 7")
    elif damage == "broken parent hash":
        broken = "0x" + "ab" * 32
        rewrite_block(damaged, "blocks", 12, lambda rows: [{**rows[0], "parent_hash": broken}])
    else:
        DeltaTable(damaged.table_uri("transactions")).delete("block_number = 20")
    code, out = run(capsys, "validate", "--lake", damaged.root)
    assert code == 1, out
    assert not dagster_checks_pass(damaged, devnet)

    code, out = run(capsys, "repair", "--lake", damaged.root, "--rpc-url", devnet.url)
    assert code == 0, out
    assert "re-ingested blocks" in out
    code, out = run(capsys, "validate", "--lake", damaged.root)
    assert code == 0, out
    assert dagster_checks_pass(damaged, devnet)
    assert_equals_node(damaged, devnet)


def test_repair_of_a_healthy_lake_changes_nothing(spark, devnet, damaged, capsys):
    version = DeltaTable(damaged.table_uri("blocks")).version()
    code, out = run(capsys, "repair", "--lake", damaged.root, "--rpc-url", devnet.url)
    assert code == 0 and "nothing to repair" in out
    assert DeltaTable(damaged.table_uri("blocks")).version() == version


def test_repair_refuses_bad_input_in_one_line(capsys, tmp_path, devnet):
    code, out = run(capsys, "repair", "--lake", str(tmp_path / "none"), "--rpc-url", devnet.url)
    assert code == 2 and "no bronze tables" in out


# --- one pass over the complete set of offending blocks (issue 7 item 4) ----------------------

CHUNK = 25  # blocks per re-ingested chunk (max_blocks_per_trigger) in the tests below


@pytest.fixture(scope="module")
def whole_chain(spark, devnet, tmp_path_factory) -> tuple[BronzeLake, int]:
    """The session devnet's chain with 100 more blocks of traffic (6 transactions, 3 ERC-20
    transfer logs each), every block ingested once: ``(lake, end)``."""
    from ingestion.devnet.traffic import generate_load

    generate_load(devnet.url, blocks=100, txs_per_block=6)
    end = devnet.live_head() + 1
    lake = BronzeLake(str(tmp_path_factory.mktemp("repair-whole") / "lake"))
    run_ingest(spark, SourceOptions(rpc_url=devnet.url, end_block=end,
                                    max_blocks_per_trigger=64), lake)
    return lake, end


@pytest.fixture(scope="module")
def node_rows(devnet, whole_chain) -> dict[str, list[dict]]:
    return reference_rows(devnet.url, 0, whole_chain[1])


@pytest.fixture()
def broken(whole_chain, tmp_path) -> BronzeLake:
    shutil.copytree(whole_chain[0].root, tmp_path / "broken")
    return BronzeLake(str(tmp_path / "broken"))


def sorted_rows(lake: BronzeLake, name: str) -> list[dict]:
    return lake.read(name).sort_by([(k, "ascending") for k in TABLES[name].key]).to_pylist()


def assert_equals_fresh_ingest(lake: BronzeLake, fresh: BronzeLake, node_rows) -> None:
    """Every column of every row equals a fresh ingest, and the node's chain as web3 reads it."""
    for name in TABLES:
        rows = sorted_rows(lake, name)
        assert rows == sorted_rows(fresh, name), name
        if name in node_rows:  # web3's reference has the core tables
            assert project(rows, list(node_rows[name][0])) == node_rows[name], name


def repair_once(spark, devnet, lake: BronzeLake):
    """One ``repair_lake`` pass in chunks of ``CHUNK`` blocks; returns (result, progress)."""
    from ingestion.repair import repair_lake

    progress = []
    opts = SourceOptions(rpc_url=devnet.url, max_blocks_per_trigger=CHUNK)
    result = repair_lake(spark, opts, lake, on_batch=progress.append)
    return result, progress


def assert_progress_covers(progress, result) -> None:
    assert progress, "no progress reported"
    assert all(p.end - p.start <= CHUNK for p in progress)
    assert [p.done for p in progress] == sorted({p.done for p in progress})  # strictly rising
    assert progress[-1].done == progress[-1].total == result.blocks_reingested
    chunks = [(p.start, p.end) for p in progress]
    expected = [(a, min(a + CHUNK, b)) for lo, b in result.reingested
                for a in range(lo, b, CHUNK)]
    assert chunks == expected


def test_one_pass_recreates_a_deleted_table(spark, devnet, whole_chain, node_rows, broken):
    fresh, end = whole_chain
    with_txs = sum(1 for r in node_rows["blocks"] if r["transaction_count"])
    assert end > 100 and with_txs > 40, (end, with_txs)  # the devnet has traffic
    shutil.rmtree(broken.table_uri("transactions"))
    assert broken.table("transactions") is None

    result, progress = repair_once(spark, devnet, broken)
    print(f"\ndeleted bronze/transactions, blocks [0, {end}): one repair pass in "
          f"{result.seconds:.1f}s ({result.blocks_reingested} blocks re-ingested in "
          f"{len(progress)} chunks)")
    assert not result.before.success
    assert result.before.missing_tables == ["transactions"]
    assert result.offending == [(0, end)]  # every block, not 20 examples per expectation
    assert result.reingested == [(0, end)]
    assert_progress_covers(progress, result)
    assert result.success, result.after.render()
    assert validate_range(broken, collect_all=True).success
    assert_equals_fresh_ingest(broken, fresh, node_rows)


def test_one_pass_fixes_scattered_rows_and_a_gap(spark, devnet, whole_chain, node_rows, broken):
    fresh, end = whole_chain
    with_txs = [r["block_number"] for r in node_rows["blocks"] if r["transaction_count"]]
    logs_per_block: dict[int, int] = {}
    for row in node_rows["logs"]:
        logs_per_block[row["block_number"]] = logs_per_block.get(row["block_number"], 0) + 1
    gap = (end - 30, end - 18)  # 12 consecutive blocks gone from every table
    outside = [b for b in with_txs if not gap[0] - 1 <= b < gap[1]]
    tx_damage = outside[::2][:30]
    log_damage = [b for b in outside if logs_per_block.get(b, 0) >= 2 and b not in tx_damage][:30]
    assert len(tx_damage) > 20 and len(log_damage) > 20, (len(tx_damage), len(log_damage))
    DeltaTable(broken.table_uri("transactions")).delete(
        f"transaction_index = 0 AND block_number IN ({', '.join(map(str, tx_damage))})")
    DeltaTable(broken.table_uri("logs")).delete(
        f"log_index = 0 AND block_number IN ({', '.join(map(str, log_damage))})")
    for name in TABLES:
        DeltaTable(broken.table_uri(name)).delete(
            f"block_number >= {gap[0]} AND block_number < {gap[1]}")
    report = validate_range(broken, collect_all=True)
    assert f"missing blocks {gap[0]}..{gap[1] - 1}" in report.render()
    failing = {o.name: o for o in report.failures}
    assert failing["transaction count matches rows"].unexpected_count == len(tx_damage) > 20
    assert failing["log indexes 0..m-1"].unexpected_count == len(log_damage) > 20
    damaged = sorted({*tx_damage, *log_damage, *range(*gap)})
    assert report.all_offending_blocks == damaged

    result, progress = repair_once(spark, devnet, broken)
    print(f"\n{len(damaged)} damaged blocks: one repair pass in {result.seconds:.1f}s "
          f"({result.blocks_reingested} blocks re-ingested in {len(progress)} chunks)")
    assert [b for a, e in result.offending for b in range(a, e)] == damaged
    covered = {b for a, e in result.reingested for b in range(a, e)}
    assert all(b in covered and b - 1 in covered for b in damaged)
    assert_progress_covers(progress, result)
    assert result.success, result.after.render()
    assert_equals_fresh_ingest(broken, fresh, node_rows)


def test_cli_repair_prints_progress_then_validate_passes(spark, devnet, whole_chain, node_rows,
                                                        broken, capsys):
    fresh, end = whole_chain
    shutil.rmtree(broken.table_uri("logs"))
    DeltaTable(broken.table_uri("blocks")).delete("block_number >= 40 AND block_number < 60")
    code, out = run(capsys, "validate", "--lake", broken.root)
    assert code == 1 and "table exists" in out and "missing blocks 40..59" in out, out

    code, out = run(capsys, "repair", "--lake", broken.root, "--rpc-url", devnet.url)
    assert code == 0, out
    assert f"offending blocks (all of them): 0..{end - 1} ({end:,} blocks)" in out, out
    chunks = [line for line in out.splitlines() if line.startswith("  re-ingested blocks [")]
    assert chunks and chunks[-1].endswith(" blocks/s") and f"{end:,}/{end:,} blocks" in chunks[-1]
    assert f"re-ingested {end:,} blocks in 1 range(s)" in out
    assert re.search(r"PASSED: \d+ expectations$", out.rstrip()), out
    code, out = run(capsys, "validate", "--lake", broken.root)
    assert code == 0, out
    assert_equals_fresh_ingest(broken, fresh, node_rows)


def test_one_pass_recreates_a_deleted_blocks_table(spark, devnet, whole_chain, node_rows, broken):
    from ingestion.repair import repair_lake

    fresh, end = whole_chain
    shutil.rmtree(f"{broken.table_uri('blocks')}/_delta_log")  # files left, no table
    assert broken.table("blocks") is None
    opts = SourceOptions(rpc_url=devnet.url, max_blocks_per_trigger=CHUNK)
    result = repair_lake(spark, opts, broken, 0, end)  # no blocks table: the range is given
    assert result.before is None and result.offending == [(0, end)]
    assert result.success, result.after.render()
    assert_equals_fresh_ingest(broken, fresh, node_rows)
