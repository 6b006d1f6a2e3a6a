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
    if start - 1 in stored:
        expected, where = stored[start - 1][0], "the stored"
    else:
        expected, where = node_parent_hash, "the node's"
    if expected is not None and parents[0].as_py() != expected:
        return BrokenLink(start, parents[0].as_py(), expected, where)
    if len(ordered) > 1:
        linked = pc.equal(parents.slice(1), hashes.slice(0, len(ordered) - 1))
        if not pc.all(linked).as_py():
            i = pc.index(linked, False).as_py() + 1
            return BrokenLink(start + i, parents[i].as_py(), hashes[i - 1].as_py(),
                              "the same range's")
    if end in stored and stored[end][1] != hashes[-1].as_py():
        return BrokenLink(end, stored[end][1], hashes[-1].as_py(), "the written")
    return None


def check_links(blocks: pa.Table, start: int, end: int, lake, client_factory) -> BrokenLink | None:
    """``find_broken_link`` with the edges read from ``lake`` and, for ``start - 1`` when the
    lake lacks it, from the node (``client_factory()`` gives an ``RpcClient`` context)."""
    stored = lake.stored_links([start - 1, end])
    node_parent_hash = None
    if start > 0 and start - 1 not in stored:
        with client_factory() as client:
            node_parent_hash = block_hash(client, start - 1)
    return find_broken_link(blocks, start, end, stored=stored, node_parent_hash=node_parent_hash)
