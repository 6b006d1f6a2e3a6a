"""The blocking continuity checks: run with the bronze materialization, fail naming the block.

One real materialization of a devnet partition (Spark) with its checks; then the table is
corrupted and only the checks run again, for the same partition. The traces check (an op of its
own) is exercised with a stand-in for the bronze multi-asset over a synthetic lake: a run that
does not materialize ``bronze/traces`` must still run the other checks.
"""

import dagster as dg
import pytest
from deltalake import DeltaTable
from synthetic_chain import chain, rows_to_table, tx_hash, write

from assets.bronze import bronze_ingest, bronze_key
from assets.checks import (
    CHECK_NAME,
    CONTINUITY_CHECKS,
    blocks_to_check,
    bronze_continuity,
    bronze_traces_continuity,
    run_block_range,
)
from assets.definitions import defs
from assets.partitions import BLOCK_RANGES
from assets.resources import LakeResource, RpcResource, SparkResource
from ingestion.ranges import BlockSpan, span_of
from ingestion.sink import BronzeLake

SIZE = 16
TABLES = ("blocks", "transactions", "logs")
ALL_TABLES = (*TABLES, "traces")


@pytest.fixture(autouse=True)
def small_partitions(monkeypatch):
    monkeypatch.setenv("CHAINLAKE_PARTITION_SIZE", str(SIZE))
    monkeypatch.delenv("CHAINLAKE_START_BLOCK", raising=False)


def by_table(evaluations) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_key.path[-1]: e for e in evaluations}


@dg.asset(deps=[dg.AssetKey(["bronze", "blocks"])], partitions_def=BLOCK_RANGES)
def downstream_of_blocks() -> None:
    """Stands in for a silver table: must not run when the blocks check fails."""


def test_checks_are_registered_blocking_and_in_every_bronze_job():
    assert {(s.asset_key.path[-1], s.name) for s in bronze_continuity.check_specs} == \
        {(t, CHECK_NAME) for t in TABLES}
    assert {(s.asset_key.path[-1], s.name) for s in bronze_traces_continuity.check_specs} == \
        {("traces", CHECK_NAME)}
    specs = [s for checks in CONTINUITY_CHECKS for s in checks.check_specs]
    assert all(s.blocking for s in specs)
    assert "traces window" in specs[-1].description
    check_keys = {s.key for s in specs}
    assert check_keys <= set(defs.resolve_asset_graph().asset_check_keys)
    # The sensor/schedule job and `dagster asset materialize --select bronze/...` include them.
    job = defs.resolve_job_def("bronze_catch_up")
    assert check_keys <= set(job.asset_layer.asset_graph.asset_check_keys)


def test_the_run_range_comes_from_partition_tags(tmp_path, monkeypatch):
    first, second = span_of(0, SIZE), span_of(SIZE, SIZE)
    assert run_block_range({"dagster/partition": first.key}) == first
    assert run_block_range({"dagster/asset_partition_range_start": first.key,
                            "dagster/asset_partition_range_end": second.key}) == BlockSpan(0, 2 * SIZE)
    assert run_block_range({}) is None

    lake = BronzeLake(str(tmp_path / "lake"))
    assert blocks_to_check(lake, first) is None  # nothing stored
    write(lake, chain(20, txs=0), 0, 20)  # blocks 0..19: the second range is open
    assert blocks_to_check(lake, first) == (0, SIZE)
    assert blocks_to_check(lake, second) == (SIZE, 20)  # clipped to the stored tip + 1
    assert blocks_to_check(lake, span_of(3 * SIZE, SIZE)) is None  # not ingested yet
    assert blocks_to_check(lake, None) == (0, 20)  # no partition: the whole stored range
    monkeypatch.setenv("CHAINLAKE_START_BLOCK", "5")
    assert blocks_to_check(lake, first) == (5, SIZE)  # what the asset ingests


def test_partition_checks_pass_then_name_a_deleted_block(spark, devnet, tmp_path):
    lake_root = str(tmp_path / "lake")
    key = span_of(0, SIZE).key
    resources = {"rpc": RpcResource(url=devnet.url, max_blocks_per_trigger=7),
                 "spark": SparkResource(), "lake": LakeResource(uri=lake_root)}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(BLOCK_RANGES.name, [key])
        result = dg.materialize([bronze_ingest, *CONTINUITY_CHECKS], partition_key=key,
                                instance=instance, resources=resources)
        assert result.success
        good = by_table(result.get_asset_check_evaluations())
        assert set(good) == set(ALL_TABLES)  # anvil traces (trace_block): checked too
        # From the lowest block with traces: anvil's genesis block has none (no transaction,
        # no reward), so the window may start at 1.
        assert good["traces"].metadata["traces_checked_blocks"].value in (
            f"[0, {SIZE})", f"[1, {SIZE})")
        for evaluation in good.values():
            assert evaluation.passed and evaluation.blocking
            assert evaluation.check_name == CHECK_NAME
            assert evaluation.metadata["block_range"].value == f"[0, {SIZE})"
            assert evaluation.metadata["offending_blocks"].value == "-"
        assert good["blocks"].metadata["rows_validated"].value == SIZE

        # Only the checks (and a downstream asset), for the same partition: no Spark this time.
        checks_only = dg.AssetSelection.checks_for_assets(bronze_ingest) | \
            dg.AssetSelection.assets(downstream_of_blocks)

        def run_checks():
            return dg.materialize([bronze_ingest, *CONTINUITY_CHECKS, downstream_of_blocks],
                                  selection=checks_only, instance=instance, resources=resources,
                                  tags={"dagster/partition": key}, raise_on_error=False)

        passing = run_checks()
        assert passing.success
        assert passing.asset_materializations_for_node("downstream_of_blocks")

        DeltaTable(BronzeLake(lake_root).table_uri("blocks")).delete("block_number = 7")
        again = run_checks()
        assert not again.success
        assert not again.asset_materializations_for_node("bronze_ingest")
        assert not again.asset_materializations_for_node("downstream_of_blocks")
        bad = by_table(again.get_asset_check_evaluations())
        blocks = bad["blocks"]
        assert not blocks.passed and blocks.blocking
        assert blocks.severity == dg.AssetCheckSeverity.ERROR
        assert blocks.metadata["offending_blocks"].value == "7"
        assert blocks.metadata["first_offending_block"].value == "7"
        assert "block numbers contiguous" in blocks.metadata["failed_expectations"].value
        assert "**FAILED**" in blocks.metadata["expectations"].value
        assert bad["logs"].metadata["block_range"].value == f"[0, {SIZE})"
        # Block 7's traces (if it has any) lost their block row, like its transactions.
        traced_7 = len(BronzeLake(lake_root).read_range("traces", 7, 8, ["block_number"]))
        assert bad["traces"].metadata["offending_blocks"].value == ("7" if traced_7 else "-")


# --- the traces check: its own op, so that a run without traces still checks the rest ----------


def synthetic_lake(root: str, traces: bool = True) -> BronzeLake:
    """Blocks [0, 20), two transactions each; with ``traces`` one top-level trace per
    transaction and a block reward."""
    lake = BronzeLake(root)
    rows = chain(20)
    write(lake, rows, 0, 20)
    if traces:
        out = []
        for b in rows["blocks"]:
            ctx = {k: b[k] for k in ("chain_id", "block_number", "block_hash", "block_timestamp")}
            out += [{**ctx, "transaction_index": i, "transaction_hash": tx_hash(b["block_number"], i),
                     "trace_type": "call", "trace_address": [], "status": 1, "trace_index": i}
                    for i in range(2)]
            out.append({**ctx, "trace_type": "reward", "trace_address": [], "status": 1,
                        "trace_index": 2})
        lake.replace_range("traces", rows_to_table("traces", out), 0, 20)
    return lake


def stand_in(emit_traces: bool):
    """The bronze multi-asset's shape (``bronze/traces`` skippable), writing nothing."""
    @dg.multi_asset(name="bronze_ingest", can_subset=True, specs=[
        dg.AssetSpec(bronze_key(name), skippable=name == "traces") for name in ALL_TABLES])
    def bronze_stand_in(context: dg.AssetExecutionContext):
        for key in context.selected_asset_keys:
            if emit_traces or key != bronze_key("traces"):
                yield dg.MaterializeResult(asset_key=key)

    return bronze_stand_in


@dg.asset(deps=[dg.AssetKey(["bronze", "blocks"])])
def after_blocks() -> None:
    """Downstream of blocks (unpartitioned, like the stand-in)."""


@dg.asset(deps=[dg.AssetKey(["bronze", "traces"])])
def after_traces() -> None:
    """Stands in for silver contracts: must not run when the traces check fails."""


def run_stand_in(lake: BronzeLake, instance, emit_traces: bool = True, selection=None):
    return dg.materialize([stand_in(emit_traces), *CONTINUITY_CHECKS, after_blocks, after_traces],
                          selection=selection, instance=instance,
                          resources={"lake": LakeResource(uri=lake.root)}, raise_on_error=False)


def test_all_four_checks_pass_on_a_traced_lake(tmp_path, instance):
    result = run_stand_in(synthetic_lake(str(tmp_path / "lake")), instance)
    assert result.success
    evaluations = by_table(result.get_asset_check_evaluations())
    assert set(evaluations) == set(ALL_TABLES) and all(e.passed for e in evaluations.values())
    traces = evaluations["traces"]
    assert traces.blocking and traces.metadata["traces_checked_blocks"].value == "[0, 20)"
    assert traces.metadata["rows_validated"].value == 60
    assert "8 expectations passed" in traces.description


def test_a_run_without_traces_still_runs_the_other_checks(tmp_path, instance):
    lake = synthetic_lake(str(tmp_path / "lake"))
    result = run_stand_in(lake, instance, emit_traces=False)
    assert result.success
    assert set(by_table(result.get_asset_check_evaluations())) == set(TABLES)
    skipped = {e.step_key for e in result.all_events if e.is_step_skipped}
    assert skipped == {"bronze_traces_continuity", "after_traces"}
    assert result.asset_materializations_for_node("after_blocks")
    # ... and they still block: a deleted block fails the run before what follows blocks.
    DeltaTable(lake.table_uri("blocks")).delete("block_number = 7")
    again = run_stand_in(lake, instance, emit_traces=False)
    assert not again.success
    assert not by_table(again.get_asset_check_evaluations())["blocks"].passed
    assert not again.asset_materializations_for_node("after_blocks")


def test_a_gap_in_the_traces_fails_their_check_and_blocks_what_follows(tmp_path, instance):
    lake = synthetic_lake(str(tmp_path / "lake"))
    DeltaTable(lake.table_uri("traces")).delete("block_number = 7")
    result = run_stand_in(lake, instance)
    assert not result.success
    evaluations = by_table(result.get_asset_check_evaluations())
    assert all(evaluations[name].passed for name in TABLES)
    traces = evaluations["traces"]
    assert not traces.passed and traces.blocking
    assert traces.metadata["offending_blocks"].value == "7"
    assert "top-level traces match transaction count" in traces.metadata["failed_expectations"].value
    assert not result.asset_materializations_for_node("after_traces")


def test_traces_outside_the_traces_window_pass_as_not_checked(tmp_path, instance):
    result = run_stand_in(synthetic_lake(str(tmp_path / "lake"), traces=False), instance)
    assert result.success
    traces = by_table(result.get_asset_check_evaluations())["traces"]
    assert traces.passed and traces.description.startswith("not checked: ")
    assert "does not exist" in traces.metadata["not_checked"].value
    assert traces.metadata["traces_window"].value == "none"


def test_a_subset_of_the_assets_or_checks_gets_those_checks(tmp_path, instance):
    lake = synthetic_lake(str(tmp_path / "lake"))
    core = dg.AssetSelection.assets(*(bronze_key(name) for name in TABLES))
    result = run_stand_in(lake, instance, selection=core)
    assert result.success
    assert set(by_table(result.get_asset_check_evaluations())) == set(TABLES)
    logs_only = dg.AssetSelection.checks(dg.AssetCheckKey(bronze_key("logs"), CHECK_NAME))
    result = run_stand_in(lake, instance, selection=logs_only)
    assert result.success
    evaluations = by_table(result.get_asset_check_evaluations())
    assert set(evaluations) == {"logs"}
    assert "4 expectations passed" in evaluations["logs"].description
