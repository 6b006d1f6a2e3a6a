"""A backfill launched the way the UI launches it: `dagster dev` (webserver + daemon), the
`launchPartitionBackfill` GraphQL mutation, the backfill daemon, queued runs in the
`chainlake_ingest` pool. The chain head sensor runs too (it is on by default): its tip runs may
run beside the backfill's (separate lanes), but two runs that overlap in time never share a
partition."""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from ingestion.ranges import parse_key, span_of
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake

REPO = Path(__file__).resolve().parents[2]
SIZE = 16
BACKFILL_PARTITIONS = 3

pytestmark = pytest.mark.slow

LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status numPartitions }
  ... on PythonError { message }
} }"""
RUNS = """
{ runsOrError { ... on Runs { results {
  runId status startTime endTime tags { key value }
} } } }"""


def wait_for(condition, seconds: float, service):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        service.alive()
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {seconds:.0f}s; log tail:\n{service.log_tail()}")


def gql(url: str, query: str, **variables):
    reply = httpx.post(url, json={"query": query, "variables": variables}, timeout=60).json()
    assert "errors" not in reply, reply
    return reply["data"]


def partitions_of(run: dict) -> set[str]:
    """The partition keys a run covers (one partition, or a backfill's key range)."""
    tags = {t["key"]: t["value"] for t in run["tags"]}
    if "dagster/partition" in tags:
        return {tags["dagster/partition"]}
    first = tags.get("dagster/asset_partition_range_start")
    last = tags.get("dagster/asset_partition_range_end")
    if first is None or last is None:
        return set()
    lo, hi = parse_key(first).start, parse_key(last).end
    return {span_of(b, SIZE).key for b in range(lo, hi, SIZE)}


def test_backfill_from_the_ui_fills_the_partitions_and_runs_never_overlap(dagster_dev, tmp_path):
    url = dagster_dev.graphql
    keys = [span_of(b, SIZE).key for b in range(0, BACKFILL_PARTITIONS * SIZE, SIZE)]
    # What the UI does before a backfill of new ranges: the partitions exist (the sensor adds
    # them as the chain grows; here the instance is fresh, so add them the same way).
    env = {**os.environ, "DAGSTER_HOME": str(dagster_dev.home)}
    add = ("import dagster as dg, sys; from assets.partitions import BLOCK_RANGES; "
           "dg.DagsterInstance.get().add_dynamic_partitions(BLOCK_RANGES.name, sys.argv[1:])")
    subprocess.run([sys.executable, "-c", add, *keys], cwd=REPO, env=env, check=True)

    launched = gql(url, LAUNCH, params={
        "partitionNames": keys,
        "assetSelection": [{"path": ["bronze", t]} for t in TABLES],
    })["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def finished():
        state = gql(url, BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        return state if state.get("status") in ("COMPLETED", "COMPLETED_SUCCESS", "FAILED",
                                                 "COMPLETED_FAILED", "CANCELED") else None

    state = wait_for(finished, 480, dagster_dev)
    assert state["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), state
    assert state["numPartitions"] == BACKFILL_PARTITIONS

    blocks = BronzeLake(str(tmp_path / "lake")).read("blocks").column("block_number").to_pylist()
    assert set(range(BACKFILL_PARTITIONS * SIZE)) <= set(blocks)
    assert len(blocks) == len(set(blocks))

    runs = gql(url, RUNS)["runsOrError"]["results"]
    backfill_runs = [r for r in runs
                     if {"key": "dagster/backfill", "value": backfill_id} in r["tags"]]
    assert len(backfill_runs) == 1  # BackfillPolicy.single_run: one run for all partitions
    finished_runs = [(r["startTime"], r["endTime"], partitions_of(r)) for r in runs
                     if r["startTime"] and r["endTime"]]
    for i, (start_a, end_a, parts_a) in enumerate(finished_runs):
        for start_b, end_b, parts_b in finished_runs[i + 1:]:
            if start_a < end_b and start_b < end_a:
                assert not parts_a & parts_b, "two runs of one partition overlapped"
    print(f"{len(runs)} runs, finished at {datetime.now(UTC):%H:%M:%S}")
