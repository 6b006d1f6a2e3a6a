"""A real Dagster webserver on workspace.yaml shows the assets, partitions, sensor and schedule."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ingestion.devnet import free_port

REPO = Path(__file__).resolve().parents[2]

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
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "config" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "CHAINLAKE_LAKE_URI": str(tmp_path / "lake")}
    cmd = [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
           "-h", "127.0.0.1", "-p", str(port)]
    log = open(tmp_path / "webserver.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield url, tmp_path / "webserver.log"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_webserver_serves_the_code_location(webserver):
    url, log_path = webserver
    reply = httpx.post(f"{url}/graphql", json={"query": QUERY}, timeout=60).json()
    (repo,) = reply["data"]["repositoriesOrError"]["nodes"]
    assert repo["location"]["name"] == "chainlake"
    assets = {"/".join(a["assetKey"]["path"]): a for a in repo["assetNodes"]}
    assert set(assets) >= {"bronze/blocks", "bronze/transactions", "bronze/logs"}
    assert all(assets[k]["isPartitioned"] for k in ("bronze/blocks", "bronze/logs"))
    assert assets["bronze/blocks"]["partitionDefinition"]["name"] == "block_ranges"
    assert [(s["name"], s["sensorState"]["status"]) for s in repo["sensors"]] == [
        ("chain_head_sensor", "RUNNING")]
    assert [s["name"] for s in repo["schedules"]] == ["catch_up_schedule"]
    log = log_path.read_text()
    assert "WARNING" not in log and "Traceback" not in log, log[-3000:]
