"""Every block written links to the block before it: inside a micro-batch and at its edges.

Spark tasks check the links of the blocks they read, but a task cannot see the block before its
range, nor can one micro-batch see the next. So before a range is committed, the driver checks
that the tasks' ranges (segments: first block's parent hash, last block's hash) link to each
other, and the range's two edges: the block before it (stored in the lake, else asked of the
node) and the stored block after it, if any.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ingestion.identity import block_hash
from ingestion.source import InconsistentChainError


@dataclass(frozen=True)
class BrokenLink:
    block: int  # the block whose parent hash does not match
    parent_hash: str
    expected: str  # hash of block - 1 (read in the same range, stored, or the node's)
    where: str  # where the expected hash came from

    def message(self) -> str:
        return (f"block {self.block} does not link to block {self.block - 1}: its parent hash is "
                f"{self.parent_hash}, but {self.where} block {self.block - 1} is {self.expected}")


@dataclass(frozen=True)
class Segment:
    """Blocks ``[start, end)`` already known to link among themselves (a Spark task's range)."""

    start: int
    end: int
    parent_hash: str  # of block ``start``
    last_hash: str  # of block ``end - 1``


def find_broken_link(blocks: pa.Table, start: int, end: int, *, stored: dict[int, tuple[str, str]],
                     node_parent_hash: str | None) -> BrokenLink | None:
    """The first broken link of ``blocks`` (exactly ``[start, end)``, any order) or None.

    ``stored`` maps block number to (hash, parent hash) for the lake's blocks ``start - 1`` and
    ``end``, where stored; ``node_parent_hash`` is the node's hash of ``start - 1`` when the lake
    does not store it (None for block 0). Each block is a segment of its own.
    """
    ordered = blocks.select(["block_number", "block_hash", "parent_hash"]).sort_by("block_number")
    numbers = ordered.column("block_number")
    if len(ordered) != end - start or not pc.all(
            pc.equal(numbers, pa.array(range(start, end), pa.int64()))).as_py():
        raise InconsistentChainError(
            f"blocks [{start}, {end}) to write hold {len(ordered)} rows, not one per block")
    segments = [Segment(n, n + 1, parent, block) for n, block, parent in zip(
        *(ordered.column(c).to_pylist() for c in ordered.column_names), strict=True)]
    return find_broken_segment_link(segments, start, end, stored=stored,
                                    node_parent_hash=node_parent_hash)


def find_broken_segment_link(segments: list[Segment], start: int, end: int, *,
                             stored: dict[int, tuple[str, str]],
                             node_parent_hash: str | None) -> BrokenLink | None:
    """The first broken link of ``segments`` (ranges whose inner links were checked where they
    were read: each Spark task checks its own blocks), which must cover ``[start, end)``: between
    segments, and at the edges (``stored``, ``node_parent_hash`` as for ``find_broken_link``)."""
    ordered = sorted(segments, key=lambda s: s.start)
    covered = [(s.start, s.end) for s in ordered]
    if not ordered or ordered[0].start != start or ordered[-1].end != end or any(
            a[1] != b[0] for a, b in zip(covered, covered[1:], strict=False)):
        raise InconsistentChainError(
            f"the ranges read {covered} do not cover blocks [{start}, {end}) exactly once")
    first, last = ordered[0], ordered[-1]
    if first.start - 1 in stored:
        expected, where = stored[first.start - 1][0], "the stored"
    else:
        expected, where = node_parent_hash, "the node's"
    if expected is not None and first.parent_hash != expected:
        return BrokenLink(first.start, first.parent_hash, expected, where)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.parent_hash != before.last_hash:
            return BrokenLink(after.start, after.parent_hash, before.last_hash,
                              "the range's own")
    if last.end in stored and stored[last.end][1] != last.last_hash:
        return BrokenLink(last.end, stored[last.end][1], last.last_hash, "the written")
    return None


def check_segment_links(segments: list[Segment], start: int, end: int, lake,
                        client_factory) -> BrokenLink | None:
    """``find_broken_segment_link`` with the edges read from ``lake`` and, when the lake lacks
    block ``start - 1``, from the node (``client_factory()`` gives an ``RpcClient`` context)."""
    stored = lake.stored_links([start - 1, end])
    node_parent_hash = None
    if start > 0 and start - 1 not in stored:
        with client_factory() as client:
            node_parent_hash = block_hash(client, start - 1)
    return find_broken_segment_link(segments, start, end, stored=stored,
                                    node_parent_hash=node_parent_hash)
