"""Block-range partitions: Dagster has no integer partitions, so keys are zero-padded ranges.

A ``DynamicPartitionsDefinition`` accepts any string as a key (the UI's "Add partition" too), so
keys are validated where chainlake can see them: every code path that adds keys (the sensor,
the schedule, the demo: :func:`add_partitions`), and every bronze run before it does anything
(:func:`check_run_keys`). A valid key is a block range of exactly the deployment's partition size
(``CHAINLAKE_PARTITION_SIZE``), aligned to a multiple of it: valid keys never overlap.
"""

from collections.abc import Iterable

import dagster as dg

from ingestion import settings
from ingestion.ranges import BlockSpan, parse_key, span_of, spans_through

BLOCK_RANGES = dg.DynamicPartitionsDefinition(name="block_ranges")


class PartitionKeyError(ValueError):
    """A partition key that is not one of this deployment's block ranges."""


def partition_size() -> int:
    return settings.partition_size_from_env()


def keys_through(last_block: int) -> list[str]:
    """Keys of every range that has started by ``last_block`` (the last may still be open)."""
    return [s.key for s in spans_through(last_block, partition_size(),
                                         settings.start_block_from_env())]


def key_problem(key: str, size: int | None = None) -> str | None:
    """Why ``key`` is not a partition of this deployment (None: it is one)."""
    size = size or partition_size()
    try:
        span = parse_key(key)
    except ValueError as err:
        return str(err)
    if span.start % size or len(span) != size:
        aligned = span_of(span.start, size)
        return (f"partition key {key!r} is blocks [{span.start}, {span.end}), not a block range "
                f"of this deployment: partitions are {size:,} blocks starting at multiples of "
                f"{size:,} ({settings.ENV_PARTITION_SIZE}), e.g. {aligned.key}")
    return None


def check_key(key: str, size: int | None = None) -> BlockSpan:
    """The key's block range; :class:`PartitionKeyError` naming the key if it is not valid."""
    problem = key_problem(key, size)
    if problem is not None:
        raise PartitionKeyError(problem)
    return parse_key(key)


def invalid_keys(keys: Iterable[str], size: int | None = None) -> dict[str, str]:
    """The keys among ``keys`` that are not valid, each with its problem."""
    problems = {key: key_problem(key, size) for key in keys}
    return {key: problem for key, problem in problems.items() if problem is not None}


def overlapping(key: str, others: Iterable[str]) -> list[str]:
    """The keys among ``others`` (other than ``key`` itself) whose block ranges overlap ``key``'s;
    keys that do not parse are ignored."""
    span = parse_key(key)
    found = []
    for other in others:
        if other == key:
            continue
        try:
            o = parse_key(other)
        except ValueError:
            continue
        if o.start < span.end and span.start < o.end:
            found.append(other)
    return found


def check_new_keys(keys: Iterable[str], existing: Iterable[str], size: int | None = None) -> None:
    """Refuse (:class:`PartitionKeyError`) to add a key that is not valid or that overlaps a key
    the instance already has."""
    existing = list(existing)
    for key in keys:
        check_key(key, size)
        clash = overlapping(key, existing)
        if clash:
            raise PartitionKeyError(
                f"partition key {key!r} overlaps the existing partition(s) {', '.join(clash)}: "
                f"delete those first (they are not ranges of {size or partition_size():,} "
                f"blocks; {settings.ENV_PARTITION_SIZE} changed?)")


def check_run_keys(keys: Iterable[str], size: int | None = None) -> list[BlockSpan]:
    """The block ranges of a run's partition keys; :class:`PartitionKeyError` naming every key
    that is not one of this deployment's ranges (e.g. added by hand in the UI)."""
    keys = list(keys)
    problems = invalid_keys(keys, size)
    if problems:
        raise PartitionKeyError(
            "refusing to ingest: " + "; ".join(problems.values()) + ". Delete such keys "
            f"(Dagster UI: the asset's Partitions tab, or DagsterInstance."
            f"delete_dynamic_partition({BLOCK_RANGES.name!r}, key)); the sensor adds the right ones.")
    return sorted(parse_key(k) for k in keys)


def add_partitions(instance: dg.DagsterInstance, keys: Iterable[str]) -> list[str]:
    """Add those of ``keys`` the instance lacks, after checking them; the keys added."""
    existing = instance.get_dynamic_partitions(BLOCK_RANGES.name)
    new = [k for k in dict.fromkeys(keys) if k not in set(existing)]
    check_new_keys(new, existing)
    if new:
        instance.add_dynamic_partitions(BLOCK_RANGES.name, new)
    return new
