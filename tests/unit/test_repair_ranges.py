"""Which blocks `chainlake repair` re-ingests for the offending blocks the suite names."""

from ingestion.repair import ranges_to_reingest, windows_to_reingest


def test_each_offending_block_is_reingested_with_its_parent():
    assert ranges_to_reingest([7], safe_end=100) == [(6, 8)]


def test_neighbouring_windows_merge_and_duplicates_collapse():
    assert ranges_to_reingest([12, 7, 8, 8, 13, 40], safe_end=100) == [(6, 9), (11, 14), (39, 41)]


def test_genesis_and_the_safe_head_bound_the_windows():
    assert ranges_to_reingest([0], safe_end=100) == [(0, 1)]
    assert ranges_to_reingest([99, 100, 150], safe_end=100) == [(98, 100)]
    assert ranges_to_reingest([], safe_end=100) == []


def test_whole_offending_ranges_are_widened_by_one_parent_and_coalesced():
    # A gap 2961..2999 is 39 blocks: all of them and the parent of the first are re-ingested.
    assert windows_to_reingest([(2961, 3000)], safe_end=5000) == [(2960, 3000)]
    # Overlapping, touching and unsorted ranges merge; blocks are the same as one per block.
    assert windows_to_reingest([(12, 14), (7, 9), (8, 9), (40, 41)], safe_end=100) == \
        ranges_to_reingest([12, 7, 8, 8, 13, 40], safe_end=100)
    assert windows_to_reingest([(5, 6), (7, 8)], safe_end=100) == [(4, 8)]  # windows touch
    assert windows_to_reingest([(5, 6), (8, 9)], safe_end=100) == [(4, 6), (7, 9)]


def test_whole_ranges_are_clipped_to_genesis_and_the_safe_head():
    assert windows_to_reingest([(0, 3000)], safe_end=100) == [(0, 100)]
    assert windows_to_reingest([(90, 10**9)], safe_end=100) == [(89, 100)]
    assert windows_to_reingest([(100, 200)], safe_end=100) == [(99, 100)]  # only the parent
    assert windows_to_reingest([(101, 200)], safe_end=100) == []
    assert windows_to_reingest([], safe_end=100) == []


def test_windows_a_few_blocks_apart_are_bridged_into_one_job():
    scattered = [(b, b + 1) for b in range(10, 100, 5)]
    assert windows_to_reingest(scattered, safe_end=1000, bridge=3) == [(9, 96)]
    assert len(windows_to_reingest(scattered, safe_end=1000, bridge=2)) == len(scattered)
    assert windows_to_reingest([(10, 11), (50, 51)], safe_end=1000, bridge=32) == [(9, 11), (49, 51)]
