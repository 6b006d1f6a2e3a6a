"""A task fetches the next chunks of blocks while it converts the current one (``_fetched_ahead``):
in order, ``in_flight`` chunks ahead, errors at their chunk, and never a fetch left running when
it stops."""

from __future__ import annotations

import threading
import time

import pytest

from ingestion.source import _fetched_ahead

CHUNKS = [(0, 25), (25, 50), (50, 75), (75, 90)]


class Recorder:
    """A fetch that records when each chunk was asked for and finished, and can be held."""

    def __init__(self, fail_at: int | None = None, hold: dict[int, threading.Event] | None = None):
        self.started: dict[int, float] = {}
        self.finished: dict[int, float] = {}
        self.fail_at, self.hold = fail_at, hold or {}
        self.threads: set[str] = set()

    def __call__(self, client: object, a: int, b: int) -> list[int]:
        self.started[a] = time.monotonic()
        self.threads.add(threading.current_thread().name)
        if a in self.hold:
            assert self.hold[a].wait(5)
        if a == self.fail_at:
            raise ConnectionError(f"node went away at block {a}")
        self.finished[a] = time.monotonic()
        return [client, *range(a, b)]


def test_chunks_come_in_order_with_their_blocks_and_fetch_times():
    fetch = Recorder()
    got = list(_fetched_ahead(fetch, "client", CHUNKS))
    assert [(a, b) for a, b, _, _ in got] == CHUNKS
    for a, b, raw, seconds in got:
        assert raw == ["client", *range(a, b)]
        assert 0 <= seconds < 5
    assert fetch.threads and all(t.startswith("chainlake-fetch") for t in fetch.threads)
    assert list(_fetched_ahead(fetch, "client", [])) == []


def test_the_next_chunk_is_fetched_while_this_one_is_converted_and_no_further():
    second_asked = threading.Event()
    fetch = Recorder()

    def fetch_and_signal(client: object, a: int, b: int) -> list[int]:
        raw = fetch(client, a, b)
        if a == 25:
            second_asked.set()
        return raw

    chunks = _fetched_ahead(fetch_and_signal, None, CHUNKS)
    next(chunks)  # the consumer now holds chunk 0 and has not asked for chunk 1
    assert second_asked.wait(5), "chunk 1 was not fetched while chunk 0 was being converted"
    time.sleep(0.1)
    assert 50 not in fetch.started  # one chunk ahead only: memory is bounded by two chunks
    assert [a for a, *_ in chunks] == [25, 50, 75]


def test_with_two_requests_in_flight_two_chunks_are_fetched_at_once_and_no_more():
    release = threading.Event()
    fetch = Recorder(hold={0: release, 25: release, 50: release})
    chunks = _fetched_ahead(fetch, None, CHUNKS, in_flight=2)
    waiter = threading.Thread(target=lambda: next(chunks))
    waiter.start()
    deadline = time.monotonic() + 5
    while len(fetch.started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert sorted(fetch.started) == [0, 25]  # two requests at once, the third waits its turn
    release.set()
    waiter.join(5)
    assert [a for a, *_ in chunks] == [25, 50, 75]
    assert len(fetch.threads) == 2


def test_a_failed_fetch_raises_at_its_chunk_after_the_chunks_before_it():
    fetch = Recorder(fail_at=50)
    seen = []
    with pytest.raises(ConnectionError, match="block 50"):
        for a, _b, _raw, _seconds in _fetched_ahead(fetch, None, CHUNKS):
            seen.append(a)
    assert seen == [0, 25]
    assert 75 not in fetch.started


def test_a_consumer_that_stops_early_waits_for_the_fetch_in_flight():
    """The task closes its RPC client right after: no fetch may still be using it."""
    release = threading.Event()
    fetch = Recorder(hold={25: release})
    chunks = _fetched_ahead(fetch, None, CHUNKS)
    next(chunks)
    threading.Timer(0.3, release.set).start()
    began = time.monotonic()
    chunks.close()  # e.g. chunk 0 did not link to the lake: the task stops reading
    assert 25 in fetch.finished and fetch.finished[25] <= time.monotonic()
    assert time.monotonic() - began >= 0.2  # close() waited for the fetch to finish
    assert 50 not in fetch.started
