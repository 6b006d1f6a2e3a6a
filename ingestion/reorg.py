"""Detecting a chain reorganization below the stored tip, and finding the common ancestor.

Before a run writes past the last stored block it asks the node for the hash of the stored tip.
If the node's block there differs (a reorg deeper than the confirmations kept back), it walks
back, a window of blocks per round trip, comparing stored hashes with the node's until they agree:
that block is the common ancestor, and everything above it is re-ingested by range-replace.

A divergence deeper than the maximum reorg depth (``settings.default_max_reorg_depth``) is not a
reorg: it is refused with ``DeepReorgError``, and only an explicit ``chainlake repair
--rewrite-history`` (``max_depth=None``) walks further back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ingestion.errors import RefusedError
from ingestion.rpc import RpcClient
from ingestion.sink import BronzeLake

log = logging.getLogger("chainlake.reorg")

WALK_BACK_WINDOW = 64  # blocks compared per JSON-RPC round trip while walking back


class DeepReorgError(RefusedError):
    """The lake and the node disagree deeper than the maximum reorg depth."""


@dataclass(frozen=True)
class Divergence:
    """Stored blocks above ``ancestor`` (up to ``stored_tip``) are not on the node's chain."""

    ancestor: int  # highest block whose stored hash the node agrees with (-1: none)
    stored_tip: int

    @property
    def depth(self) -> int:
        return self.stored_tip - self.ancestor

    @property
    def first_replaced(self) -> int:
        return self.ancestor + 1


def find_divergence(lake: BronzeLake, client: RpcClient, *, head: int,
                    max_depth: int | None) -> Divergence | None:
    """Compare the stored tip with the node's chain; on a mismatch, find the common ancestor.

    ``head`` is the node's current head. Stored blocks above it are not evidence of a reorg:
    a lagging node (behind a load balancer, or re-syncing) looks the same, and removing them
    would only churn. The comparison starts at the highest stored block the node has; a real
    reorg always replaces blocks at or below the new head.
    Returns None when that block is on the node's chain (the normal case: one round trip).
    The walk stops ``max_depth`` blocks below the stored tip with ``DeepReorgError``; with
    ``max_depth=None`` it goes down to the lowest stored block.
    """
    bounds = lake.stored_bounds()
    if bounds is None:
        return None
    lowest, stored_tip = bounds
    if stored_tip > head:
        log.warning("the node's head %d is behind the stored tip %d (a lagging node?); "
                    "comparing from block %d", head, stored_tip, head)
    tip = min(stored_tip, head)
    if tip < lowest:
        return None
    floor = lowest if max_depth is None else max(lowest, stored_tip - max_depth)
    hi, top = tip, None  # top: the highest block actually stored at or below ``tip``
    window = 1  # the normal case needs one hash; walking back takes bigger steps
    while hi >= floor:
        lo = max(floor, hi - window + 1)
        window = WALK_BACK_WINDOW
        stored = lake.block_hashes(lo, hi + 1)
        comparable = [n for n in range(lo, hi + 1) if n in stored]
        node = dict(zip(comparable, _node_hashes(client, comparable), strict=True))
        for number in range(hi, lo - 1, -1):
            if number not in stored:
                continue
            top = number if top is None else top
            if node.get(number) == stored[number]:
                if number == top:
                    return None
                # Everything stored above the ancestor is off the node's chain, including
                # blocks above its head: they belong to the abandoned fork.
                log.warning("reorg: stored blocks %d..%d are not on the node's chain; common "
                            "ancestor %d (depth %d)", number + 1, stored_tip, number,
                            stored_tip - number)
                return Divergence(ancestor=number, stored_tip=stored_tip)
        hi = lo - 1
    if top is None:
        return None
    if floor > lowest:
        raise DeepReorgError(
            f"the lake's blocks {floor}..{stored_tip} are not on the node's chain: a divergence "
            f"deeper than the maximum reorg depth {max_depth} is refused, not repaired (is the "
            f"RPC URL right?). If the chain really rewrote that much history, `chainlake repair "
            f"--rewrite-history` replaces it")
    log.warning("reorg: no stored block from %d to %d is on the node's chain", lowest, top)
    return Divergence(ancestor=lowest - 1, stored_tip=stored_tip)


def _node_hashes(client: RpcClient, numbers: list[int]) -> list[str]:
    if not numbers:
        return []
    return [b["hash"].lower() for b in client.get_blocks(numbers, full_transactions=False)]

