"""Block-range partitions: Dagster has no integer partitions, so keys are zero-padded ranges."""

import dagster as dg

from ingestion import settings
from ingestion.ranges import spans_through

BLOCK_RANGES = dg.DynamicPartitionsDefinition(name="block_ranges")


def partition_size() -> int:
    return settings.partition_size_from_env()


def keys_through(last_block: int) -> list[str]:
    """Keys of every range that has started by ``last_block`` (the last may still be open)."""
    return [s.key for s in spans_through(last_block, partition_size(),
                                         settings.start_block_from_env())]

