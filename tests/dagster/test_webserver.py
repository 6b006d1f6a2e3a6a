"""A real Dagster webserver on workspace.yaml shows the assets, partitions, sensor and schedule."""

import httpx
import pytest
from dagster_service import dagster_service

QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    location { name }
    sensors { name sensorState { status } }
    schedules { name cronSchedule }
    assetNodes { assetKey { path } isPartitioned partitionDefinition { name } }
} } } }
"""


@pytest.fixture()
def webserver(tmp_path):
    with dagster_service("dagster-webserver", tmp_path,
                         {"CHAINLAKE_LAKE_URI": str(tmp_path / "lake")}) as service:
        yield service


def test_webserver_serves_the_code_location(webserver):
    reply = httpx.post(webserver.graphql, json={"query": QUERY}, timeout=60).json()
    (repo,) = reply["data"]["repositoriesOrError"]["nodes"]
    assert repo["location"]["name"] == "chainlake"
    assets = {"/".join(a["assetKey"]["path"]): a for a in repo["assetNodes"]}
    assert set(assets) >= {"bronze/blocks", "bronze/transactions", "bronze/logs"}
    assert all(assets[k]["isPartitioned"] for k in ("bronze/blocks", "bronze/logs"))
    assert assets["bronze/blocks"]["partitionDefinition"]["name"] == "block_ranges"
    assert [(s["name"], s["sensorState"]["status"]) for s in repo["sensors"]] == [
        ("chain_head_sensor", "RUNNING")]
    assert [s["name"] for s in repo["schedules"]] == [
        "catch_up_schedule", "lake_maintenance_schedule", "purge_old_runs_schedule"]
    log = webserver.log.read_text()
    assert "WARNING" not in log and "Traceback" not in log, log[-3000:]
