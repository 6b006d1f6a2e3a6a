"""``follow_head`` without new blocks: when it asks the node, when it stops, and that it never
starts a pass (no Spark here: a pass would need one). Passes themselves are tested through a tip
run in ``tests/dagster/test_bronze_assets.py``."""

import logging
import time

from ingestion.devnet import free_port
from ingestion.ingest import IngestResult, follow_head
from ingestion.source import ChainView, SourceOptions


def stopped_at(head: int, chain_id: int = 31337) -> IngestResult:
    """A run that stopped at the safe head ``head`` (no confirmations)."""
    return IngestResult(start_block=0, target_end=head + 1, chain=ChainView(chain_id, head, 0))


def test_without_new_blocks_it_polls_until_its_time_is_up(devnet, tmp_path):
    head = devnet.live_head()
    opts = SourceOptions(rpc_url=devnet.url, start_block=0, confirmations=0)
    before = stopped_at(head)
    began = time.monotonic()
    after = follow_head(None, opts, None, before, seconds=1.0, poll_s=0.1)
    assert after is before  # nothing new: no pass, the same result
    assert time.monotonic() - began >= 1.0


def test_a_range_already_complete_is_not_followed(caplog):
    # The node is not even asked: this URL answers nothing, and nothing is logged.
    opts = SourceOptions(rpc_url=f"http://127.0.0.1:{free_port()}", start_block=0, end_block=11,
                         confirmations=0)
    before = stopped_at(10)
    with caplog.at_level(logging.WARNING, logger="chainlake"):
        assert follow_head(None, opts, None, before, seconds=60.0) is before
    assert not caplog.records


def test_a_node_that_stops_answering_ends_the_following(caplog):
    opts = SourceOptions(rpc_url=f"http://127.0.0.1:{free_port()}", start_block=0,
                         confirmations=0)
    before = stopped_at(10)
    with caplog.at_level(logging.WARNING, logger="chainlake"):
        assert follow_head(None, opts, None, before, seconds=60.0) is before
    assert any("stopped following the head" in r.getMessage() for r in caplog.records)
