"""The chain a lake belongs to, recorded in its Delta tables' metadata when they are created.

A lake holds exactly one chain: its chain id plus the hash of an anchor block (the genesis block
when the node serves it, else the first block the lake stored). Every run compares the lake's
identity with the node before anything else, so a node of another chain (another network, a
fresh devnet with the same chain id, a proxy that lies about the chain id) is refused instead of
being taken for a reorg of unlimited depth.

The identity lives in each table's Delta ``configuration`` (``chainlake.*`` keys), so it travels
with the tables and every Delta reader can see it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ingestion.errors import RefusedError
from ingestion.rpc import MissingBlockError, RpcClient

CHAIN_ID_KEY = "chainlake.chainId"
ANCHOR_BLOCK_KEY = "chainlake.anchorBlock"
ANCHOR_HASH_KEY = "chainlake.anchorHash"


class ChainIdentityError(RefusedError):
    """The node serves another chain than the one the lake holds."""


@dataclass(frozen=True)
class ChainIdentity:
    chain_id: int
    anchor_block: int
    anchor_hash: str

    def properties(self) -> dict[str, str]:
        return {CHAIN_ID_KEY: str(self.chain_id), ANCHOR_BLOCK_KEY: str(self.anchor_block),
                ANCHOR_HASH_KEY: self.anchor_hash}

    @classmethod
    def from_properties(cls, properties: Mapping[str, str | None]) -> ChainIdentity | None:
        """The identity recorded in a table's configuration; None for a table without one."""
        values = [properties.get(k) for k in (CHAIN_ID_KEY, ANCHOR_BLOCK_KEY, ANCHOR_HASH_KEY)]
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise ValueError(f"incomplete chain identity in table properties: {dict(properties)}")
        return cls(int(values[0]), int(values[1]), str(values[2]))

    def describe(self) -> str:
        what = "genesis" if self.anchor_block == 0 else f"block {self.anchor_block}"
        return f"chain id {self.chain_id}, {what} {self.anchor_hash}"


def block_hash(client: RpcClient, number: int) -> str:
    return client.get_blocks([number], full_transactions=False)[0]["hash"].lower()


def node_identity(client: RpcClient, chain_id: int, anchor_block: int = 0,
                  fallback_block: int | None = None) -> ChainIdentity:
    """The node's identity at ``anchor_block``; when the node cannot serve it (pruned history)
    and ``fallback_block`` is given, at that block instead (a new lake's first block)."""
    try:
        return ChainIdentity(chain_id, anchor_block, block_hash(client, anchor_block))
    except MissingBlockError:
        if fallback_block is None or fallback_block == anchor_block:
            raise
        return ChainIdentity(chain_id, fallback_block, block_hash(client, fallback_block))


def check_same_chain(stored: ChainIdentity, node: ChainIdentity, lake: str, node_url: str) -> None:
    """Refuse a node whose identity differs from the lake's, naming both."""
    if stored != node:
        raise ChainIdentityError(
            f"the node at {node_url} serves another chain than the lake {lake}: lake has "
            f"{stored.describe()}, node has {node.describe()}; refusing to write (check the RPC "
            f"URL, or use another lake)")


def check_node_serves(client: RpcClient, node_chain_id: int, stored: ChainIdentity,
                      lake: str) -> None:
    """Refuse (``ChainIdentityError``) a node that is not on the lake's chain ``stored`` (its
    chain id ``node_chain_id`` or its block at the anchor differs), or cannot show it (it does
    not serve the anchor block)."""
    try:
        node = node_identity(client, node_chain_id, stored.anchor_block)
    except MissingBlockError:
        raise ChainIdentityError(
            f"cannot check that the node at {client.redacted_url} serves the chain of the lake "
            f"{lake} ({stored.describe()}): it does not serve block {stored.anchor_block}"
        ) from None
    check_same_chain(stored, node, lake, client.redacted_url)
