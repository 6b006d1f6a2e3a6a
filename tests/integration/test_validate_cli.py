"""`chainlake validate` on a lake filled from the devnet by a real ``run_ingest`` (Spark).

The ingested lake passes; copies of it with one block row deleted, or one parent hash broken,
fail with exit code 1 and a report naming the block. Bad input ends with one line, exit 2.
"""

from __future__ import annotations

import re
import shutil

import pytest
from deltalake import DeltaTable
from synthetic_chain import rewrite_block

from ingestion.cli import main
from ingestion.ingest import run_ingest
from ingestion.sink import BronzeLake
from ingestion.source import SourceOptions

END = 40  # blocks [0, END) of the devnet: two micro-batches


@pytest.fixture(scope="module")
def ingested(spark, devnet, tmp_path_factory) -> BronzeLake:
    assert devnet.head + 1 >= END
    lake = BronzeLake(str(tmp_path_factory.mktemp("validate") / "lake"))
    opts = SourceOptions(rpc_url=devnet.url, start_block=0, end_block=END,
                         max_blocks_per_trigger=20, blocks_per_partition=10)
    result = run_ingest(spark, opts, lake)
    assert result.blocks == END
    return lake


def copy_of(lake: BronzeLake, tmp_path) -> BronzeLake:
    shutil.copytree(lake.root, tmp_path / "copy")
    return BronzeLake(str(tmp_path / "copy"))


def validate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_ingested_lake_passes(ingested, devnet, capsys):
    code, out, _ = validate(capsys, "--lake", ingested.root)
    assert code == 0, out
    assert f"Continuity of blocks [0, {END})" in out
    assert re.search(r"PASSED: \d+ expectations", out) and "FAIL" not in out
    assert f"chain id {devnet.chain_id}" in out
    # A sub-range is linked to the block before it; an explicit chain id is enforced.
    code, out, _ = validate(capsys, "--lake", ingested.root, "--start-block", "20",
                            "--end-block", "30", "--chain-id", str(devnet.chain_id))
    assert code == 0 and "linked to block 19 before it" in out
    code, out, _ = validate(capsys, "--lake", ingested.root, "--chain-id", "1")
    assert code == 1 and "chain id" in out


def test_a_deleted_block_fails_naming_it(ingested, capsys, tmp_path):
    lake = copy_of(ingested, tmp_path)
    DeltaTable(lake.table_uri("blocks")).delete("block_number = 7")
    code, out, _ = validate(capsys, "--lake", lake.root)
    assert code == 1
    assert "FAIL  blocks       block numbers contiguous" in out
    assert "offending blocks: 7" in out.splitlines()[-1]
    # The range after the gap fails too: its boundary block is missing.
    code, out, _ = validate(capsys, "--lake", lake.root, "--start-block", "8", "--end-block", "20")
    assert code == 1 and "offending blocks: 7" in out


def test_a_broken_parent_hash_fails_naming_the_block(ingested, capsys, tmp_path):
    lake = copy_of(ingested, tmp_path)
    broken = "0x" + "ab" * 32
    rewrite_block(lake, "blocks", 12, lambda rows: [{**rows[0], "parent_hash": broken}])
    code, out, _ = validate(capsys, "--lake", lake.root)
    assert code == 1
    assert "FAIL  blocks       parent hash links" in out
    assert "offending blocks: 12" in out
    # Validating only what follows the break passes; a range starting at it is caught.
    assert validate(capsys, "--lake", lake.root, "--start-block", "13")[0] == 0
    assert validate(capsys, "--lake", lake.root, "--start-block", "12", "--end-block", "20")[0] == 1


def test_bad_input_is_one_line_and_exit_2(ingested, capsys, tmp_path):
    for args in (["--lake", ingested.root, "--start-block", "10", "--end-block", "10"],
                 ["--lake", str(tmp_path / "missing")],
                 ["--lake", ingested.root, "--start-block", str(END + 100)]):
        code, out, err = validate(capsys, *args)
        assert code == 2, (args, out, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("chainlake validate: error:")
