"""Blocks and receipts from a JSON-RPC node, checked for consistency: ``RpcClient``.

``RpcClient`` is a ``JsonRpcTransport`` (batching, retries, rate limit, redaction: see
``ingestion.rpc.transport``) that also knows what blocks and receipts must look like:

* **Null results.** A ``null`` block at or below the node's head (load-balanced nodes lag) is
  retried; one above the head is a ``MissingBlockError`` at once. Null or inconsistent receipts are
  retried, then ``RpcResponseError``.
* **Receipts** come from ``eth_getBlockReceipts``; a node without it ("method not found") makes the
  client switch, for its lifetime, to batched ``eth_getTransactionReceipt``.
* **Reorgs.** Receipts that name another block hash than their block are not retried by number;
  ``fetch_raw_blocks`` reads such blocks again, block and receipts.
* **Chain id.** ``check_chain_id`` refuses a node of another chain (``ChainIdMismatchError``).

``RpcClient.fetch_checked`` is the generic piece under all of these: a batch whose results are
checked, with the failing calls asked again. Other datasets build on it (and on ``batch``) with
functions of their own, kept next to their dataset rather than as methods here: trace fetching is
``fetch_traces(client, numbers, api)`` in ``ingestion/datasets/traces.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ingestion.rpc.protocol import (
    RpcError,
    RpcMethodNotFoundError,
    RpcResponseError,
    describe_call,
)
from ingestion.rpc.settings import RpcSettings
from ingestion.rpc.transport import JsonRpcTransport

if TYPE_CHECKING:
    from ingestion.transform import RawBlock

__all__ = ["ChainIdMismatchError", "MissingBlockError", "RpcClient"]

log = logging.getLogger("chainlake.rpc")

Check = Callable[[int, Any], str | None]
"""``check(i, result)``: None if the result of call ``i`` is good, else what is wrong with it (the
call is asked again); it may also raise, to stop at once."""
GiveUp = Callable[[dict[int, str], int], None]
"""``give_up(pending, attempt)``: raises when there is no point in asking the ``pending`` calls
(index: problem) again after ``attempt`` retries."""


class ChainIdMismatchError(RpcError):
    """The node serves another chain than the one expected."""


class MissingBlockError(RpcError):
    """The node returned null for a block: beyond its head, or still null after the retries."""


def _tx_hash(tx: Any) -> str:
    return tx["hash"] if isinstance(tx, dict) else tx


def _same_hash(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower())


class RpcClient(JsonRpcTransport):
    """A JSON-RPC client for bulk reads. Thread-safe; use as a context manager or ``close()``.

    ``RpcClient(url, timeout_s=..., max_retries=..., backoff_base_s=..., backoff_max_s=...,
    max_batch_size=..., requests_per_second=...)`` or ``RpcClient.from_settings(settings)``.
    Construction validates the settings (``ValueError``) and opens nothing.
    """

    def _init(self, settings: RpcSettings) -> None:
        super()._init(settings)
        self._block_receipts: bool | None = None  # None: not tried yet; False: use per-tx
        self._chain_id: int | None = None

    @property
    def uses_block_receipts(self) -> bool | None:
        """True/False once known whether the node serves ``eth_getBlockReceipts``."""
        return self._block_receipts

    # -- the node ---------------------------------------------------------------------------

    def chain_id(self) -> int:
        """``eth_chainId`` as an int (asked once per client)."""
        if self._chain_id is None:
            self._chain_id = self._quantity("eth_chainId", self.call("eth_chainId"))
        return self._chain_id

    def check_chain_id(self, expected: int | None) -> int:
        """The node's chain id; ``ChainIdMismatchError`` if ``expected`` is given and differs."""
        actual = self.chain_id()
        if expected is not None and actual != int(expected):
            raise ChainIdMismatchError(
                f"node at {self.redacted_url} reports chain id {actual}, expected {expected}")
        return actual

    def block_number(self) -> int:
        """The node's head (``eth_blockNumber``)."""
        return self._quantity("eth_blockNumber", self.call("eth_blockNumber"))

    def _quantity(self, method: str, value: Any) -> int:
        if isinstance(value, str) and value.startswith(("0x", "0X")):
            try:
                return int(value, 16)
            except ValueError:
                pass
        raise RpcResponseError(f"{method} to {self.redacted_url}: expected a hex quantity, got "
                               f"{self._redactor.snippet(value)}")

    # -- checked fetching: the piece every dataset's fetch is built on -----------------------

    def fetch_checked(self, calls: Sequence[tuple[str, list]], check: Check,
                      give_up: GiveUp | None = None, *, what: str) -> list[Any]:
        """``batch(calls)``, re-asking (with backoff) the calls whose result fails ``check``.

        Before each new round ``give_up(pending, attempt)``, if given, may raise to stop early or
        with a message of its own; after ``max_retries`` rounds the fetch ends anyway, in an
        ``RpcResponseError`` naming the first call still failing. ``what`` names the problem in
        the retry warnings ("null block", "receipts"...).
        """
        results = self.batch(calls)
        pending = {i: p for i, r in enumerate(results) if (p := check(i, r)) is not None}
        attempt = 0
        while pending:
            if give_up is not None:
                give_up(pending, attempt)
            first = min(pending)
            if attempt >= self.settings.max_retries:
                raise RpcResponseError(
                    f"{describe_call(*calls[first])} from {self.redacted_url}: {pending[first]} "
                    f"after {attempt + 1} attempts")
            delay = self._backoff(attempt)
            log.warning("%s from %s: %s for %s%s; retry %d/%d in %.2fs", what,
                        self.redacted_url, pending[first], describe_call(*calls[first]),
                        f" and {len(pending) - 1} more" if len(pending) > 1 else "",
                        attempt + 1, self.settings.max_retries, delay)
            self._sleep(delay)
            attempt += 1
            indices = sorted(pending)
            again = self.batch([calls[i] for i in indices])
            pending = {}
            for i, value in zip(indices, again, strict=True):
                results[i] = value
                if (p := check(i, value)) is not None:
                    pending[i] = p
        return results

    # -- blocks and receipts ----------------------------------------------------------------

    @staticmethod
    def block_calls(numbers: Sequence[int], full_transactions: bool = True
                    ) -> list[tuple[str, list]]:
        """The calls ``get_blocks`` sends."""
        return [("eth_getBlockByNumber", [hex(n), full_transactions]) for n in numbers]

    @staticmethod
    def block_receipts_calls(numbers: Sequence[str]) -> list[tuple[str, list]]:
        """The calls ``eth_getBlockReceipts`` of blocks by their hex ``number`` as the node wrote
        it (``hex(n)`` for any node that writes quantities canonically)."""
        return [("eth_getBlockReceipts", [number]) for number in numbers]

    def get_blocks(self, numbers: Sequence[int], full_transactions: bool = True) -> list[dict]:
        """``eth_getBlockByNumber`` for each number, in order.

        A null block above the node's head raises ``MissingBlockError`` at once; at or below the
        head it is retried (a lagging node behind a load balancer) and then ``MissingBlockError``.
        """
        numbers = [int(n) for n in numbers]
        calls = self.block_calls(numbers, full_transactions)

        def check(i: int, block: Any) -> str | None:
            if block is None:
                return "null"
            if not isinstance(block, dict) or not isinstance(block.get("number"), str):
                raise RpcResponseError(
                    f"{describe_call(*calls[i])} from {self.redacted_url}: expected a block "
                    f"object, got {self._redactor.snippet(block)}")
            if int(block["number"], 16) != numbers[i]:
                raise RpcResponseError(
                    f"{describe_call(*calls[i])} from {self.redacted_url}: returned block "
                    f"{int(block['number'], 16)}")
            return None

        def give_up(pending: dict[int, str], attempt: int) -> None:
            missing = sorted(numbers[i] for i in pending)
            head = self.block_number()
            beyond = [n for n in missing if n > head]
            if beyond or attempt >= self.settings.max_retries:
                first = (beyond or missing)[0]
                more = len(beyond or missing) - 1
                tail = f" (and {more} more)" if more else ""
                after = "" if beyond else f" after {attempt + 1} attempts"
                raise MissingBlockError(
                    f"block {first}{tail} not available from {self.redacted_url} "
                    f"(head is {head}){after}")

        return self.fetch_checked(calls, check, give_up, what="null block")

    def get_block_receipts(self, blocks: Sequence[dict]) -> list[list[dict]]:
        """The receipts of each block, in transaction order.

        Uses ``eth_getBlockReceipts`` (by number), or batched ``eth_getTransactionReceipt`` on a
        node without it. Receipts are checked against the block: one per transaction, same
        hashes and order, same block hash; anything else is retried, then ``RpcResponseError``.
        """
        receipts, forked = self._receipts(blocks)
        if forked:
            raise RpcResponseError(self._fork_message(blocks[forked[0]], receipts[forked[0]]))
        return receipts

    def fetch_raw_blocks(self, start: int, end: int) -> list[RawBlock]:
        """Blocks ``[start, end)`` with full transactions and their receipts.

        If the chain reorganises between reading a block and its receipts (receipts carry another
        block hash), those blocks are read again, up to ``max_retries`` times.
        """
        from ingestion.transform import RawBlock

        if end <= start:
            return []
        numbers = list(range(start, end))
        blocks = self.get_blocks(numbers, full_transactions=True)
        receipts, forked = self._receipts(blocks)
        attempt = 0
        while forked:
            if attempt >= self.settings.max_retries:
                raise RpcResponseError(
                    self._fork_message(blocks[forked[0]], receipts[forked[0]])
                    + f" after {attempt + 1} attempts")
            log.warning("%s: re-reading %d block(s) from %s",
                        self._fork_message(blocks[forked[0]], receipts[forked[0]]),
                        len(forked), self.redacted_url)
            self._sleep(self._backoff(attempt))
            attempt += 1
            again = self.get_blocks([numbers[i] for i in forked], full_transactions=True)
            for i, block in zip(forked, again, strict=True):
                blocks[i] = block
            sub_receipts, sub_forked = self._receipts(again)
            for i, rs in zip(forked, sub_receipts, strict=True):
                receipts[i] = rs
            forked = [forked[j] for j in sub_forked]
        return [RawBlock(block=b, receipts=r) for b, r in zip(blocks, receipts, strict=True)]

    def _fork_message(self, block: dict, receipts: list[dict]) -> str:
        other = next((r.get("blockHash") for r in receipts if isinstance(r, dict)), None)
        return (f"receipts for block {int(block['number'], 16)} ({block.get('hash')}) from "
                f"{self.redacted_url} belong to block {other}: the chain reorganised while "
                f"reading, or the node is inconsistent")

    def _receipts(self, blocks: Sequence[dict]) -> tuple[list[list[dict]], list[int]]:
        """Receipts per block, and the indices of blocks whose receipts name another block hash
        (returned, not retried: re-reading receipts by number cannot fix a reorg)."""
        if self._block_receipts is not False:
            try:
                out = self._receipts_by_block(blocks)
                self._block_receipts = True
                return out
            except RpcMethodNotFoundError as err:
                if self._block_receipts:  # it worked before: not a missing method
                    raise
                self._block_receipts = False
                log.warning("node at %s does not serve eth_getBlockReceipts (%s); using "
                            "eth_getTransactionReceipt from now on", self.redacted_url,
                            str(err).rsplit(": ", 1)[-1][:200])
        return self._receipts_by_transaction(blocks)

    def _check_receipts(self, block: dict, receipts: Any) -> str | None:
        """None if ``receipts`` are the block's; "fork" if they name another block hash; else
        a description of what is wrong (retried)."""
        txs = block.get("transactions") or []
        if receipts is None:
            return "null receipts"
        if not isinstance(receipts, list):
            return f"receipts are not a list: {self._redactor.snippet(receipts)}"
        for r in receipts:
            if isinstance(r, dict) and r.get("blockHash") is not None \
                    and not _same_hash(r["blockHash"], block.get("hash")):
                return "fork"
        if len(receipts) != len(txs):
            return f"{len(receipts)} receipts for {len(txs)} transactions"
        for tx, r in zip(txs, receipts, strict=True):
            if not isinstance(r, dict):
                return f"receipt is {self._redactor.snippet(r)}"
            if not _same_hash(r.get("transactionHash"), _tx_hash(tx)):
                return (f"receipt for {r.get('transactionHash')} where transaction "
                        f"{_tx_hash(tx)} was expected")
        return None

    def _receipts_by_block(self, blocks: Sequence[dict]) -> tuple[list[list[dict]], list[int]]:
        receipts: list[list[dict]] = [[] for _ in blocks]
        wanted = [i for i, b in enumerate(blocks) if b.get("transactions")]
        calls = self.block_receipts_calls([blocks[i]["number"] for i in wanted])
        forked: list[int] = []

        def check(j: int, value: Any) -> str | None:
            problem = self._check_receipts(blocks[wanted[j]], value)
            if problem == "fork":
                forked.append(wanted[j])
                return None
            return problem

        for j, value in enumerate(self.fetch_checked(calls, check, what="receipts")):
            receipts[wanted[j]] = value
        return receipts, sorted(set(forked))

    def _receipts_by_transaction(self, blocks: Sequence[dict]
                                 ) -> tuple[list[list[dict]], list[int]]:
        owners: list[int] = []
        calls: list[tuple[str, list]] = []
        for i, block in enumerate(blocks):
            for tx in block.get("transactions") or []:
                owners.append(i)
                calls.append(("eth_getTransactionReceipt", [_tx_hash(tx)]))
        forked: set[int] = set()

        def check(j: int, value: Any) -> str | None:
            block = blocks[owners[j]]
            if value is None:
                return "null receipt"
            if not isinstance(value, dict):
                return f"receipt is {self._redactor.snippet(value)}"
            if not _same_hash(value.get("blockHash"), block.get("hash")):
                forked.add(owners[j])
            return None

        def give_up(pending: dict[int, str], attempt: int) -> None:
            if attempt >= self.settings.max_retries:
                j = min(pending)
                raise RpcResponseError(
                    f"{describe_call(*calls[j])} (block {int(blocks[owners[j]]['number'], 16)})"
                    f" from {self.redacted_url}: {pending[j]} after {attempt + 1} attempts")

        values = self.fetch_checked(calls, check, give_up, what="receipts")
        receipts: list[list[dict]] = [[] for _ in blocks]
        for owner, value in zip(owners, values, strict=True):
            receipts[owner].append(value)
        for i, block in enumerate(blocks):
            if i not in forked and (problem := self._check_receipts(block, receipts[i])):
                raise RpcResponseError(
                    f"receipts for block {int(block['number'], 16)} from {self.redacted_url}: "
                    f"{problem}")
        return receipts, sorted(forked)
