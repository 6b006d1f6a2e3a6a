"""Shared test fixtures: one devnet and one Spark session per test session.

Both are real: anvil from npm `@foundry-rs/anvil` (started here, stopped by process group at the
end) and a local Spark session. Tests that need them are marked ``devnet`` / ``spark``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ingestion.devnet.traffic import TrafficReport

REPO_ROOT = Path(__file__).resolve().parent.parent

# Tip runs follow the head for a minute by default (settings.DEFAULT_TIP_FOLLOW_S); tests whose
# sensors launch tip runs would wait for them. The tests of following set it themselves.
os.environ.setdefault("CHAINLAKE_TIP_FOLLOW_S", "0")


@dataclass(frozen=True)
class DevnetChain:
    url: str
    chain_id: int
    head: int  # head after the session's traffic was generated
    token_address: str
    coverage: TrafficReport  # what generate_coverage made, blocks [coverage_start, coverage.head]
    coverage_start: int

    def call(self, method: str, params: list | None = None):
        from ingestion.devnet import rpc_call

        return rpc_call(self.url, method, params)

    def live_head(self) -> int:
        """The head now: tests that mine make the chain grow past ``head``."""
        return int(self.call("eth_blockNumber"), 16)


@pytest.fixture(scope="session")
def devnet():
    """A prague anvil with every transaction type, plus a little load; stopped at session end."""
    from ingestion.devnet import Devnet, free_port
    from ingestion.devnet.traffic import generate_coverage, generate_load

    node = Devnet(port=free_port())
    node.start()
    try:
        coverage_start = node.head() + 1
        coverage = generate_coverage(node.url, rounds=2)
        generate_load(node.url, blocks=40, txs_per_block=8)
        yield DevnetChain(url=node.url, chain_id=node.chain_id, head=node.head(),
                          token_address=coverage.token_address, coverage=coverage,
                          coverage_start=coverage_start)
    finally:
        node.stop()


@pytest.fixture(scope="session")
def spark():
    """The process's Spark session (with the `evm` source registered)."""
    from ingestion.spark import get_spark

    session = get_spark("local[2,3]")
    yield session
    session.stop()


@pytest.fixture()
def lake(tmp_path):
    from ingestion.sink import BronzeLake

    return BronzeLake(str(tmp_path / "lake"))


def pytest_collection_modifyitems(config, items):
    """Mark tests by the real parts they use, so `-m 'not slow'` is the quick subset."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if "devnet" in used:
            item.add_marker(pytest.mark.devnet)
        if "spark" in used:
            item.add_marker(pytest.mark.spark)
            item.add_marker(pytest.mark.slow)
