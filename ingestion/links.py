"""Every block written links to the block before it: inside a micro-batch and at its edges.

Spark tasks check the links of the blocks they read, but a task cannot see the block before its
range, nor can one micro-batch see the next. So before a range is written, the driver checks the
whole range at once (Arrow compute, no Python loop per block) and its two edges: the block
before it (stored in the lake, else asked of the node) and the stored block after it, if any.
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
    does not store it (None for block 0).
    """
    ordered = blocks.select(["block_number", "block_hash", "parent_hash"]).sort_by("block_number")
    numbers = ordered.column("block_number")
    if len(ordered) != end - start or not pc.all(
            pc.equal(numbers, pa.array(range(start, end), pa.int64()))).as_py():
        raise InconsistentChainError(
            f"blocks [{start}, {end}) to write hold {len(ordered)} rows, not one per block")
    hashes, parents = ordered.column("block_hash"), ordered.column("parent_hash")
    if len(ordered) > 1:
        linked = pc.equal(parents.slice(1), hashes.slice(0, len(ordered) - 1))
        if not pc.all(linked).as_py():
            i = pc.index(linked, False).as_py() + 1
            inner = BrokenLink(start + i, parents[i].as_py(), hashes[i - 1].as_py(),
                               "the same range's")
            edge = _edge_break([Segment(start, end, parents[0].as_py(), hashes[-1].as_py())],
                               stored, node_parent_hash, lower_only=True)
            return edge or inner
    return find_broken_segment_link(
        [Segment(start, end, parents[0].as_py(), hashes[-1].as_py())], start, end,
        stored=stored, node_parent_hash=node_parent_hash)


def find_broken_segment_link(segments: list[Segment], start: int, end: int, *,
                             stored: dict[int, tuple[str, str]],
                             node_parent_hash: str | None) -> BrokenLink | None:
    """Like ``find_broken_link`` for ranges whose inner links were checked where they were read
    (each Spark task checks its own blocks): checks the links between segments and the edges."""
    ordered = sorted(segments, key=lambda s: s.start)
    covered = [(s.start, s.end) for s in ordered]
    if not ordered or ordered[0].start != start or ordered[-1].end != end or any(
            a[1] != b[0] for a, b in zip(covered, covered[1:], strict=False)):
        raise InconsistentChainError(
            f"the ranges read {covered} do not cover blocks [{start}, {end}) exactly once")
    lower = _edge_break(ordered, stored, node_parent_hash, lower_only=True)
    if lower is not None:
        return lower
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.parent_hash != before.last_hash:
            return BrokenLink(after.start, after.parent_hash, before.last_hash,
                              "the block read by the task before it, its")
    return _edge_break(ordered, stored, node_parent_hash, lower_only=False)


def _edge_break(ordered: list[Segment], stored: dict[int, tuple[str, str]],
                node_parent_hash: str | None, *, lower_only: bool) -> BrokenLink | None:
    first, last = ordered[0], ordered[-1]
    if lower_only:
        if first.start - 1 in stored:
            expected, where = stored[first.start - 1][0], "the stored"
        else:
            expected, where = node_parent_hash, "the node's"
        if expected is not None and first.parent_hash != expected:
            return BrokenLink(first.start, first.parent_hash, expected, where)
        return None
    if last.end in stored and stored[last.end][1] != last.last_hash:
        return BrokenLink(last.end, stored[last.end][1], last.last_hash, "the written")
    return None


def edges(lake, start: int, end: int, client_factory) -> tuple[dict[int, tuple[str, str]], str | None]:
    """The lake's blocks ``start - 1`` and ``end`` (where stored) and, when the lake lacks
    ``start - 1``, the node's hash of it (``client_factory()`` gives an ``RpcClient`` context)."""
    stored = lake.stored_links([start - 1, end])
    node_parent_hash = None
    if start > 0 and start - 1 not in stored:
        with client_factory() as client:
            node_parent_hash = block_hash(client, start - 1)
    return stored, node_parent_hash


def check_links(blocks: pa.Table, start: int, end: int, lake, client_factory) -> BrokenLink | None:
    """``find_broken_link`` with the edges read from ``lake`` and the node."""
    stored, node_parent_hash = edges(lake, start, end, client_factory)
    return find_broken_link(blocks, start, end, stored=stored, node_parent_hash=node_parent_hash)


def check_segment_links(segments: list[Segment], start: int, end: int, lake,
                        client_factory) -> BrokenLink | None:
    """``find_broken_segment_link`` with the edges read from ``lake`` and the node."""
    stored, node_parent_hash = edges(lake, start, end, client_factory)
    return find_broken_segment_link(segments, start, end, stored=stored,
                                    node_parent_hash=node_parent_hash)
