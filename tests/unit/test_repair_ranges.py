"""Which blocks `chainlake repair` re-ingests for the offending blocks the suite names."""

from ingestion.repair import ranges_to_reingest


def test_each_offending_block_is_reingested_with_its_parent():
    assert ranges_to_reingest([7], safe_end=100) == [(6, 8)]


def test_neighbouring_windows_merge_and_duplicates_collapse():
    assert ranges_to_reingest([12, 7, 8, 8, 13, 40], safe_end=100) == [(6, 9), (11, 14), (39, 41)]


def test_genesis_and_the_safe_head_bound_the_windows():
    assert ranges_to_reingest([0], safe_end=100) == [(0, 1)]
    assert ranges_to_reingest([99, 100, 150], safe_end=100) == [(98, 100)]
    assert ranges_to_reingest([], safe_end=100) == []
