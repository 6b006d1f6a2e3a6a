"""`make demo`'s job end to end, small: devnet, partitions, a real `dagster asset materialize`
run (Spark, Delta, blocking great-expectations checks in the run worker), summary."""

import subprocess
import sys
from pathlib import Path

import pytest

from ingestion.sink import BronzeLake

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_demo_materializes_every_partition_through_dagster(tmp_path):
    lake = tmp_path / "lake"
    done = subprocess.run(
        [sys.executable, "-m", "assets.demo", "--blocks", "260", "--partition-size", "100",
         "--lake", str(lake), "--dagster-home", str(tmp_path / "dagster_home")],
        cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    run_log = (tmp_path / "dagster_home" / "demo-run.log")
    assert done.returncode == 0, done.stderr[-3000:] + (run_log.read_text()[-3000:]
                                                        if run_log.exists() else "")
    out = done.stdout
    assert "3 partitions 000000000000-000000000099" in out
    checks = next(line for line in out.splitlines() if line.strip().startswith("checks"))
    for asset in ("bronze/blocks", "bronze/transactions", "bronze/logs", "bronze/traces",
                  "silver/token_transfers", "silver/contracts", "silver/tokens"):
        assert f"{asset} passed" in checks, checks
    blocks = BronzeLake(str(lake)).read("blocks").column("block_number").to_pylist()
    assert sorted(blocks) == list(range(260))
    assert "Traceback" not in run_log.read_text()
    assert "SupersessionWarning" not in run_log.read_text()
