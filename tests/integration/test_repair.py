"""`chainlake repair`: what the continuity suite rejects is re-ingested from the node, after
which `chainlake validate` and the blocking Dagster check pass and the tables equal the node."""

import shutil

import dagster as dg
import pytest
from deltalake import DeltaTable
from reference import project, reference_rows
from synthetic_chain import rewrite_block

from ingestion.cli import main
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
    for name in TABLES:
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
