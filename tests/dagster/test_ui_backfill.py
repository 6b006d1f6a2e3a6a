"""A backfill launched the way the UI launches it: `dagster dev` (webserver + daemon), the
`launchPartitionBackfill` GraphQL mutation, the backfill daemon, queued runs in the
`chainlake_ingest` pool. The chain head sensor runs too (it is on by default): the pool keeps
its catch-up runs and the backfill's run from ever overlapping."""

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from assets.demo import QUIET_DAGSTER_CLI
from ingestion.devnet import free_port
from ingestion.ranges import span_of
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


@pytest.fixture()
def dagster_dev(devnet, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "config" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, **QUIET_DAGSTER_CLI, "DAGSTER_HOME": str(home),
           "CHAINLAKE_RPC_URL": devnet.url, "CHAINLAKE_LAKE_URI": str(tmp_path / "lake"),
           "CHAINLAKE_PARTITION_SIZE": str(SIZE)}
    log = open(tmp_path / "dagster-dev.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        wait_for(lambda: _answers(url), 180, proc, tmp_path)
        yield url, tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.post(url, json={"query": "{ version }"}, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition, seconds: float, proc, tmp_path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc is None or proc.poll() is None, \
            (tmp_path / "dagster-dev.log").read_text()[-3000:]
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {seconds:.0f}s; log tail:\n"
                         + (tmp_path / "dagster-dev.log").read_text()[-3000:])


def gql(url: str, query: str, **variables):
    reply = httpx.post(url, json={"query": query, "variables": variables}, timeout=60).json()
    assert "errors" not in reply, reply
    return reply["data"]


def test_backfill_from_the_ui_fills_the_partitions_and_runs_never_overlap(dagster_dev, devnet):
    url, tmp_path = dagster_dev
    keys = [span_of(b, SIZE).key for b in range(0, BACKFILL_PARTITIONS * SIZE, SIZE)]
    # What the UI does before a backfill of new ranges: the partitions exist (the sensor adds
    # them as the chain grows; here the instance is fresh, so add them the same way).
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    add = ("import dagster as dg, sys; from assets.partitions import BLOCK_RANGES; "
           "dg.DagsterInstance.get().add_dynamic_partitions(BLOCK_RANGES.name, sys.argv[1:])")
    subprocess.run([sys.executable, "-c", add, *keys], cwd=REPO, env=env, check=True)

    launched = gql(url, LAUNCH, params={
        "partitionNames": keys,
        "assetSelection": [{"path": ["bronze", t]} for t in ("blocks", "transactions", "logs")],
    })["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def finished():
        state = gql(url, BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        return state if state.get("status") in ("COMPLETED", "COMPLETED_SUCCESS", "FAILED",
                                                 "COMPLETED_FAILED", "CANCELED") else None

    state = wait_for(finished, 480, None, tmp_path)
    assert state["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), state
    assert state["numPartitions"] == BACKFILL_PARTITIONS

    blocks = BronzeLake(str(tmp_path / "lake")).read("blocks").column("block_number").to_pylist()
    assert set(range(BACKFILL_PARTITIONS * SIZE)) <= set(blocks)
    assert len(blocks) == len(set(blocks))

    runs = gql(url, RUNS)["runsOrError"]["results"]
    backfill_runs = [r for r in runs
                     if {"key": "dagster/backfill", "value": backfill_id} in r["tags"]]
    assert len(backfill_runs) == 1  # BackfillPolicy.single_run: one run for all partitions
    finished_runs = sorted((r["startTime"], r["endTime"]) for r in runs
                           if r["startTime"] and r["endTime"])
    for (_, end), (start, _) in zip(finished_runs, finished_runs[1:], strict=False):
        assert start >= end, "two ingestion runs overlapped despite the pool limit of 1"
    print(f"{len(runs)} runs, finished at {datetime.now(UTC):%H:%M:%S}")
