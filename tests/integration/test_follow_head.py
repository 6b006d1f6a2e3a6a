"""``follow_head`` without Spark: when it asks the node, when it stops, that it starts no query
while nothing is new, and what it does when its query fails; and the source's side of a
following query (``EvmStreamReader`` with ``follow_until``). The query itself runs in a tip run
(``tests/dagster/test_bronze_assets.py``) and in ``chainlake ingest --follow``
(``tests/integration/test_cli.py``)."""

import logging
import time
from dataclasses import replace

import pytest

from ingestion import ingest, settings
from ingestion.devnet import free_port
from ingestion.ingest import IngestResult, follow_head
from ingestion.rpc import ChainIdMismatchError
from ingestion.source import ChainView, EvmStreamReader, FollowingQueryExpiredError, SourceOptions


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


def test_a_failed_following_query_is_followed_by_one_pass(devnet, monkeypatch, caplog):
    head = devnet.live_head()
    opts = SourceOptions(rpc_url=devnet.url, start_block=0, confirmations=0)
    calls = []

    def run_ingest(spark, given, lake, **kwargs):
        calls.append(given)
        if given.follow_until is not None:
            raise RuntimeError("[STREAM_FAILED] blocks 7..8 do not link up\nstack trace...")
        return IngestResult(start_block=head - 1, target_end=head + 1,
                            chain=ChainView(31337, head, 0))

    monkeypatch.setattr(ingest, "run_ingest", run_ingest)
    before = stopped_at(head - 1)  # one safe block is new: the query starts at once
    with caplog.at_level(logging.WARNING, logger="chainlake"):
        after = follow_head(None, opts, None, before, seconds=30.0)
    # The query had the time left; then one availableNow pass (its reorg repair comes first).
    assert [c.follow_until is not None for c in calls] == [True, False]
    assert time.time() < calls[0].follow_until <= time.time() + 30
    assert calls[1] == opts and after.target_end == head + 1
    assert any("blocks 7..8 do not link up); one pass" in r.getMessage() for r in caplog.records)


def offered(opts: SourceOptions, begin: int) -> int:
    """The end a following query's source offers from block ``begin`` (its latestOffset)."""
    reader = EvmStreamReader(opts)
    return reader.latestOffset({"block_number": begin},
                               reader.getDefaultReadLimit())["block_number"]


def test_a_following_source_offers_the_safe_head_until_its_time_then_nothing(devnet):
    head = devnet.live_head()
    opts = SourceOptions(rpc_url=devnet.url, start_block=0, confirmations=0,
                         max_blocks_per_trigger=1_000_000)
    assert offered(replace(opts, follow_until=time.time() + 60), 0) == head + 1
    assert offered(replace(opts, follow_until=time.time() - 1), 0) == 0  # its time is up
    closed = SourceOptions(rpc_url=devnet.url, start_block=0, end_block=2, confirmations=0,
                           follow_until=time.time() + 60)
    assert offered(closed, 0) == 2  # never past end_block


def test_a_following_source_offers_nothing_while_the_node_is_down_but_refuses_another_chain(
        devnet, caplog):
    down = SourceOptions(rpc_url=f"http://127.0.0.1:{free_port()}", start_block=0,
                         confirmations=0, rpc_max_retries=0, follow_until=time.time() + 60)
    with caplog.at_level(logging.WARNING, logger="chainlake"):
        assert offered(down, 5) == 5
    assert any("the node did not answer" in r.getMessage() for r in caplog.records)
    other_chain = SourceOptions(rpc_url=devnet.url, start_block=0, confirmations=0, chain_id=1,
                                follow_until=time.time() + 60)
    with pytest.raises(ChainIdMismatchError):
        offered(other_chain, 5)


def test_a_following_query_outliving_its_run_fails_itself(devnet):
    # Its run died (nobody stopped it at its time, nor within the grace after): the query ends.
    expired = SourceOptions(rpc_url=devnet.url, start_block=0, confirmations=0,
                            follow_until=time.time() - settings.FOLLOW_ORPHAN_EXPIRY_S - 1)
    with pytest.raises(FollowingQueryExpiredError, match="nobody stopped it"):
        offered(expired, 5)
    assert settings.FOLLOW_STOP_GRACE_S < settings.FOLLOW_ORPHAN_EXPIRY_S  # a live run stops it first
