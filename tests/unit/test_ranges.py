"""Block-range keys: zero-padded, inclusive in the key, half-open in code, ordered as numbers."""

import pytest

from ingestion.ranges import BlockSpan, parse_key, span_of, spans_through


def test_key_round_trip_and_padding():
    span = BlockSpan(0, 100_000)
    assert span.key == "000000000000-000000099999"
    assert parse_key(span.key) == span
    assert len(span) == 100_000


def test_keys_sort_like_numbers():
    spans = [BlockSpan(s, s + 1000) for s in (9000, 10_000, 0, 100_000)]
    assert sorted(s.key for s in spans) == [s.key for s in sorted(spans)]


@pytest.mark.parametrize("bad", ["0-99", "000000000000_000000000099", "abc", ""])
def test_bad_keys_are_named(bad):
    with pytest.raises(ValueError, match="not a block-range key"):
        parse_key(bad)


def test_invalid_spans():
    with pytest.raises(ValueError, match="invalid block range"):
        BlockSpan(10, 10)
    with pytest.raises(ValueError, match="invalid block range"):
        BlockSpan(-1, 5)


def test_span_of_and_spans_through_include_the_open_tip():
    assert span_of(1234, 1000) == BlockSpan(1000, 2000)
    assert spans_through(2000, 1000) == [BlockSpan(0, 1000), BlockSpan(1000, 2000),
                                         BlockSpan(2000, 3000)]
    assert spans_through(999, 1000, first_block=500) == [BlockSpan(0, 1000)]
    assert spans_through(5, 1000, first_block=10) == []

