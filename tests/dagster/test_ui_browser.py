"""The Dagster UI in a real browser (headless Chromium, ``tests/browser.py``), as a data engineer
uses it on `dagster dev`: open the blocks asset, "Materialize…", confirm the bronze multi-asset,
select all partitions, "Launch backfill", follow the backfill's page until it succeeds, then read
the continuity check's result on the asset's Checks tab. The lake must then hold every block of
those partitions exactly once. The chain head sensor runs too, as it does by default: it adds the
partitions the dialog offers, and its tip runs may rewrite the same ranges (idempotently)."""

import re
import time

import httpx
import pytest
from browser import browser_page
from playwright.sync_api import expect

from ingestion.ranges import parse_key
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake

pytestmark = pytest.mark.slow

SIZE = 16
PARTITION_KEYS = """
{ assetNodeOrError(assetKey: {path: ["bronze", "blocks"]}) {
  ... on AssetNode { partitionKeys }
} }"""
FINISHED = ("Succeeded", "Failed", "Canceled", "Completed with failures")


def partition_keys(service) -> list[str]:
    reply = httpx.post(service.graphql, json={"query": PARTITION_KEYS}, timeout=60).json()
    return reply["data"]["assetNodeOrError"].get("partitionKeys") or []


def backfill_status(page) -> str | None:
    """The status the backfill page shows ("In progress", "Succeeded", ...), if shown yet."""
    found = re.search(r"\nStatus\n([^\n]+)\n", page.locator("body").inner_text())
    return found.group(1).strip() if found else None


def test_a_backfill_launched_from_the_ui_fills_the_lake(dagster_dev, devnet, tmp_path):
    # The sensor's first tick adds a partition per started block range up to the head.
    deadline = time.monotonic() + 180
    while not (keys := partition_keys(dagster_dev)):
        dagster_dev.alive()
        assert time.monotonic() < deadline, dagster_dev.log_tail()
        time.sleep(2)

    with browser_page() as page:
        try:
            page.goto(f"{dagster_dev.url}/assets/bronze/blocks")
            page.get_by_role("button", name="Materialize…").click()
            # The bronze tables are one multi-asset: the UI says the others come along.
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("bronze / transactions").wait_for()
            dialog.get_by_role("button", name="Confirm").click()
            dialog.get_by_role("button", name="All", exact=True).click()
            # At least the partitions the sensor had added (more if the chain grew meanwhile).
            offered = dialog.get_by_text(re.compile(r"^\d+ partitions$"))
            expect(offered).to_have_text(re.compile(r"^[1-9]\d* partitions$"))
            assert int(offered.inner_text().split()[0]) >= len(keys)
            head_at_launch = devnet.live_head()
            dialog.get_by_role("button", name="Launch backfill").click()

            toast = page.get_by_text(re.compile(r"Created backfill \w+"))
            backfill_id = re.search(r"Created backfill (\w+)", toast.inner_text()).group(1)
            page.get_by_role("link", name="View").or_(
                page.get_by_role("button", name="View")).first.click()
            page.wait_for_url(re.compile(rf"/runs/b/{backfill_id}"))

            deadline = time.monotonic() + 480
            while (status := backfill_status(page)) not in FINISHED:
                dagster_dev.alive()
                assert time.monotonic() < deadline, f"backfill still {status!r}"
                time.sleep(3)
                page.reload()
            text = page.locator("body").inner_text()
            assert status == "Succeeded", text[:3000]
            assert text.count("100% completed") == len(TABLES), text[:3000]

            # The continuity suite ran as a blocking check of the backfill's materialization.
            page.goto(f"{dagster_dev.url}/assets/bronze/blocks?view=checks")
            page.get_by_text(re.compile(r"\d+ expectations passed over blocks")).wait_for()
            checks = page.locator("body").inner_text()
            assert "continuity" in checks and "Passed" in checks, checks[:3000]
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise

    lake = BronzeLake(str(tmp_path / "lake"))
    blocks = lake.read("blocks").column("block_number").to_pylist()
    assert len(blocks) == len(set(blocks))
    last = max(parse_key(k).end for k in keys)
    assert set(range(min(last, head_at_launch + 1))) <= set(blocks)
