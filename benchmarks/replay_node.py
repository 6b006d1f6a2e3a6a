"""A fast local JSON-RPC node serving mainnet-shaped blocks, for benchmarks.

    .venv/bin/python benchmarks/replay_node.py --port 8547 --blocks 20000 [--host 127.0.0.1]
    .venv/bin/python benchmarks/replay_node.py --self-test      # render cost per block, no server

It serves blocks ``0..N-1`` of chain id 1, each a copy of one of the real Ethereum mainnet blocks
17173049 and 17173050 (post-Shanghai; 116 and 182 transactions, 271 and 410 logs, 16 withdrawals
each), taken in turn. The fixtures hold ethereum-etl's rows of those blocks
(``shared/fixtures/ethereum-etl-mainnet/test_stream/blocks_17173049_17173050``, MIT); the node
turns them back into geth-shaped replies (hex quantities, typed transactions with ``chainId``,
``v``/``r``/``s``/``yParity`` and access lists, receipts with ``logsBloom``), about 0.5 MB of
JSON per block with its receipts.

What changes per block (everything else is the template's):

* ``number``; ``timestamp`` = template 0's + 12 s per block (non-decreasing, like mainnet);
* ``hash``: 24 bytes of blake2b of the number followed by the number in 8 bytes, so a hash names
  its block; ``parentHash`` is the hash of ``n - 1`` (zero for block 0): the chain links;
* transaction hashes: the template's first 24 bytes followed by the block number in 8 bytes
  (unique over the chain, and a receipt can be found by hash);
* ``blockHash``/``blockNumber`` of every transaction, receipt and log.

Replies are pre-serialized: each template's block (full or hashes only), receipts, logs and
per-transaction receipt are kept as JSON bytes cut at their placeholders, and serving a block is
one list copy and one ``bytes.join`` (about 0.13 ms of CPU per block with its receipts;
``--self-test`` prints the figure). Served over HTTP, the node's whole CPU (user + system, socket
copies included) was about 0.4 ms per block for 25-block batches, 0.8 ms for cryo's single
requests and 1.4 ms for ethereum-etl's per-transaction receipts. HTTP/1.1 with keep-alive, one
thread per connection, a minimal parser, and one blocking ``sendall`` per reply.

Methods, single or batched: ``eth_chainId``, ``net_version``, ``web3_clientVersion``,
``eth_syncing``, ``eth_blockNumber``, ``eth_getBlockByNumber`` (full or hashes; tags ``latest``,
``safe``, ``finalized``, ``pending``, ``earliest``), ``eth_getBlockByHash``,
``eth_getBlockReceipts``, ``eth_getTransactionReceipt``, ``eth_getTransactionByHash``,
``eth_getBlockTransactionCountByNumber``, ``eth_getLogs`` (``fromBlock``/``toBlock`` or
``blockHash``, ``address`` and ``topics`` filters), and ``replay_stats`` (this node's own counters
and CPU seconds, for the benchmark scripts). Anything else: JSON-RPC error -32601. Blocks beyond
the head are ``null``.

On start it prints ``listening on http://HOST:PORT`` (``--port 0`` picks a free port); on SIGTERM
or SIGINT it prints its counters and CPU to stderr and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

CHAIN_ID = 1
BLOCK_TIME_S = 12
TEMPLATE_DIR = "test_stream/blocks_17173049_17173050"
DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ethereum-etl-mainnet"
ZERO_HASH = "0x" + "00" * 32

# Placeholders: not hex, so they cannot occur in real data; fixed-length ones keep the shape.
P_HASH = b"0x" + b"@" * 62 + b"BH"  # this block's hash
P_PARENT = b"0x" + b"@" * 62 + b"PH"  # its parent's hash
P_NUMBER = b"0x@NUMBER@"  # this block's number, hex quantity
P_TIME = b"0x@TIME@"  # this block's timestamp, hex quantity
P_TX = b"@" * 14 + b"TX"  # the last 16 hex digits of every transaction hash (block number)
_PLACEHOLDERS = re.compile(b"(" + b"|".join(re.escape(p) for p in (P_HASH, P_PARENT, P_NUMBER,
                                                                    P_TIME, P_TX)) + b")")


# ---------------------------------------------------------------------------------------------
# Synthetic identities


def block_hash(n: int) -> str:
    """Block ``n``'s hash: 24 bytes of blake2b(n), then n in 8 bytes (``n`` reads back from it)."""
    if n < 0:
        return ZERO_HASH
    head = hashlib.blake2b(n.to_bytes(8, "big"), digest_size=24, person=b"chainlake-replay").hexdigest()
    return f"0x{head}{n:016x}"


def number_of_hash(value: Any) -> int | None:
    """The block number a synthetic block or transaction hash names, or None."""
    if not isinstance(value, str) or len(value) != 66 or not value.startswith(("0x", "0X")):
        return None
    try:
        return int(value[50:], 16)
    except ValueError:
        return None


def _keccak(data: bytes) -> bytes:
    try:
        from eth_utils import keccak
    except ImportError:  # only for the blooms: any 32-byte hash gives the same shape
        return hashlib.sha3_256(data).digest()
    return keccak(data)


def _bloom(logs: list[dict]) -> str:
    """The 2048-bit bloom of the logs' addresses and topics (as geth computes it)."""
    bits = 0
    for log in logs:
        for item in [log["address"], *log["topics"]]:
            digest = _keccak(bytes.fromhex(item[2:]))
            for i in (0, 2, 4):
                bits |= 1 << (int.from_bytes(digest[i:i + 2], "big") & 2047)
    return "0x" + bits.to_bytes(256, "big").hex()


def _q(value: int | None) -> str | None:
    return None if value is None else hex(value)


def _signature(tx_hash: str, tag: str) -> str:
    """A deterministic 32-byte value, formatted like a quantity (as geth prints r and s)."""
    return hex(int.from_bytes(hashlib.sha256(f"{tag}{tx_hash}".encode()).digest(), "big"))


class Compiled:
    """JSON bytes cut at their placeholders: rendering is one list copy and one join."""

    __slots__ = ("keys", "parts")

    def __init__(self, raw: bytes) -> None:
        self.parts = _PLACEHOLDERS.split(raw)  # literal, placeholder, literal, ...
        self.keys = self.parts[1::2]

    def render(self, values: dict[bytes, bytes]) -> bytes:
        if not self.keys:
            return self.parts[0]
        out = self.parts[:]
        out[1::2] = map(values.__getitem__, self.keys)
        return b"".join(out)


# ---------------------------------------------------------------------------------------------
# Templates: replies rebuilt from ethereum-etl's rows, serialized once with placeholders


@dataclass
class Template:
    """One mainnet block's replies as JSON bytes with placeholders."""

    timestamp: int
    block_full: Compiled
    block_hashes: Compiled
    receipts: Compiled
    logs_joined: Compiled  # every log object, comma-separated (eth_getLogs without filters)
    logs: list[bytes]  # each log object, in log-index order
    log_keys: list[tuple[str, tuple[str, ...]]]  # (address, topics) of each log, lower-case
    receipt_by_tx: dict[str, Compiled] = field(default_factory=dict)  # hash prefix -> receipt
    tx_by_hash: dict[str, Compiled] = field(default_factory=dict)  # hash prefix -> transaction
    transaction_count: int = 0


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_templates(fixtures: Path) -> list[Template]:
    """The two post-Shanghai mainnet blocks as templates, in block order."""
    d = fixtures / TEMPLATE_DIR
    if not d.is_dir():
        raise SystemExit(f"fixtures not found: {d} (set --fixtures or CHAINLAKE_FIXTURES)")
    blocks = _rows(d / "expected_blocks.json")
    txs = _rows(d / "expected_transactions.json")
    logs = _rows(d / "expected_logs.json")
    return [_template(b, [t for t in txs if t["block_number"] == b["number"]],
                      [lg for lg in logs if lg["block_number"] == b["number"]]) for b in blocks]


def _template(b: dict, txs: list[dict], logs: list[dict]) -> Template:
    h, num = P_HASH.decode(), P_NUMBER.decode()
    txs = sorted(txs, key=lambda t: t["transaction_index"])
    logs = sorted(logs, key=lambda lg: lg["log_index"])
    assert len(txs) == b["transaction_count"], "fixture rows do not add up"

    def tx_hash(original: str) -> str:
        return original[:50] + P_TX.decode()

    reply_txs, receipts, log_objs = [], [], []
    for t in txs:
        typ = t["transaction_type"]
        tx: dict[str, Any] = {
            "blockHash": h, "blockNumber": num, "from": t["from_address"], "gas": hex(t["gas"]),
            "gasPrice": hex(t["gas_price"]),
        }
        if typ >= 2:
            tx["maxFeePerGas"] = hex(t["max_fee_per_gas"])
            tx["maxPriorityFeePerGas"] = hex(t["max_priority_fee_per_gas"])
        parity = int(hashlib.sha256(t["hash"].encode()).digest()[0] & 1)
        tx.update({
            "hash": tx_hash(t["hash"]), "input": t["input"], "nonce": hex(t["nonce"]),
            "to": t["to_address"], "transactionIndex": hex(t["transaction_index"]),
            "value": hex(t["value"]), "type": hex(typ),
        })
        if typ >= 1:
            tx["accessList"] = []
        tx["chainId"] = hex(CHAIN_ID)
        tx["v"] = hex(parity) if typ >= 1 else hex(CHAIN_ID * 2 + 35 + parity)
        tx["r"] = _signature(t["hash"], "r")
        tx["s"] = _signature(t["hash"], "s")
        if typ >= 1:
            tx["yParity"] = hex(parity)
        reply_txs.append(tx)

        tx_logs = [{
            "address": lg["address"], "topics": lg["topics"], "data": lg["data"],
            "blockNumber": num, "transactionHash": tx_hash(t["hash"]),
            "transactionIndex": hex(lg["transaction_index"]), "blockHash": h,
            "logIndex": hex(lg["log_index"]), "removed": False,
        } for lg in logs if lg["transaction_hash"] == t["hash"]]
        log_objs.extend(tx_logs)
        receipt: dict[str, Any] = {
            "blockHash": h, "blockNumber": num, "contractAddress": t["receipt_contract_address"],
            "cumulativeGasUsed": hex(t["receipt_cumulative_gas_used"]),
            "effectiveGasPrice": _q(t["receipt_effective_gas_price"]), "from": t["from_address"],
            "gasUsed": hex(t["receipt_gas_used"]), "logs": tx_logs, "logsBloom": _bloom(tx_logs),
        }
        if t["receipt_root"] is not None:
            receipt["root"] = t["receipt_root"]
        else:
            receipt["status"] = hex(t["receipt_status"])
        receipt.update({"to": t["to_address"], "transactionHash": tx_hash(t["hash"]),
                        "transactionIndex": hex(t["transaction_index"]), "type": hex(typ)})
        receipts.append(receipt)
    assert len(log_objs) == len(logs), "logs without a transaction in the fixture"

    block: dict[str, Any] = {
        "baseFeePerGas": _q(b["base_fee_per_gas"]), "difficulty": hex(b["difficulty"]),
        "extraData": b["extra_data"], "gasLimit": hex(b["gas_limit"]),
        "gasUsed": hex(b["gas_used"]), "hash": h, "logsBloom": b["logs_bloom"],
        "miner": b["miner"], "mixHash": "0x" + hashlib.sha256(b["hash"].encode()).hexdigest(),
        "nonce": b["nonce"], "number": num, "parentHash": P_PARENT.decode(),
        "receiptsRoot": b["receipts_root"], "sha3Uncles": b["sha3_uncles"], "size": hex(b["size"]),
        "stateRoot": b["state_root"], "timestamp": P_TIME.decode(),
        "totalDifficulty": _q(b["total_difficulty"]), "transactions": reply_txs,
        "transactionsRoot": b["transactions_root"], "uncles": [],
        "withdrawals": [{"index": hex(w["index"]), "validatorIndex": hex(w["validator_index"]),
                         "address": w["address"], "amount": hex(w["amount"])}
                        for w in b["withdrawals"]],
        "withdrawalsRoot": b["withdrawals_root"],
    }
    hashes_only = {**block, "transactions": [tx["hash"] for tx in reply_txs]}
    log_bytes = [orjson.dumps(lg) for lg in log_objs]
    return Template(
        timestamp=b["timestamp"],
        block_full=Compiled(orjson.dumps(block)),
        block_hashes=Compiled(orjson.dumps(hashes_only)),
        receipts=Compiled(orjson.dumps(receipts)),
        logs_joined=Compiled(b",".join(log_bytes)),
        logs=log_bytes,
        log_keys=[(lg["address"].lower(), tuple(x.lower() for x in lg["topics"])) for lg in log_objs],
        receipt_by_tx={tx["hash"][:50]: Compiled(orjson.dumps(r))
                       for tx, r in zip(reply_txs, receipts, strict=True)},
        tx_by_hash={tx["hash"][:50]: Compiled(orjson.dumps(tx)) for tx in reply_txs},
        transaction_count=len(reply_txs),
    )


# ---------------------------------------------------------------------------------------------
# The chain


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_TAGS_HEAD = ("latest", "safe", "finalized", "pending")


class ReplayChain:
    """Blocks ``0..blocks-1``; renders replies from the templates."""

    def __init__(self, templates: list[Template], blocks: int) -> None:
        if blocks < 1:
            raise ValueError("--blocks must be at least 1")
        self.templates = templates
        self.blocks = blocks
        self.head = blocks - 1
        self.base_time = templates[0].timestamp
        self.stats = {"requests": 0, "calls": 0, "blocks": 0, "block_receipts": 0,
                      "receipts": 0, "logs_blocks": 0, "bytes_out": 0}
        self.started = time.monotonic()
        self.cpu_start = time.process_time()

    # -- rendering ----------------------------------------------------------------------

    def template(self, n: int) -> Template:
        return self.templates[n % len(self.templates)]

    def values(self, n: int) -> dict[bytes, bytes]:
        """What each placeholder stands for in block ``n``."""
        return {P_HASH: block_hash(n).encode(), P_PARENT: block_hash(n - 1).encode(),
                P_NUMBER: b"0x%x" % n, P_TIME: b"0x%x" % (self.base_time + BLOCK_TIME_S * n),
                P_TX: b"%016x" % n}

    def _render(self, template: Compiled, n: int) -> bytes:
        return template.render(self.values(n))

    def block(self, n: int, full: bool) -> bytes:
        if not 0 <= n <= self.head:
            return b"null"
        self.stats["blocks"] += 1
        t = self.template(n)
        return self._render(t.block_full if full else t.block_hashes, n)

    def block_receipts(self, n: int) -> bytes:
        if not 0 <= n <= self.head:
            return b"null"
        self.stats["block_receipts"] += 1
        return self._render(self.template(n).receipts, n)

    def receipt(self, tx_hash: Any) -> bytes:
        n = number_of_hash(tx_hash)
        if n is None or not 0 <= n <= self.head:
            return b"null"
        raw = self.template(n).receipt_by_tx.get(tx_hash[:50].lower())
        if raw is None:
            return b"null"
        self.stats["receipts"] += 1
        return self._render(raw, n)

    def transaction(self, tx_hash: Any) -> bytes:
        n = number_of_hash(tx_hash)
        if n is None or not 0 <= n <= self.head:
            return b"null"
        raw = self.template(n).tx_by_hash.get(tx_hash[:50].lower())
        return b"null" if raw is None else self._render(raw, n)

    def logs(self, flt: dict) -> bytes:
        if not isinstance(flt, dict):
            raise RpcError(-32602, "invalid argument 0: expected a filter object")
        if flt.get("blockHash") is not None:
            n = number_of_hash(flt["blockHash"])
            if n is None or not 0 <= n <= self.head or block_hash(n) != flt["blockHash"].lower():
                raise RpcError(-32000, "unknown block")
            first = last = n
        else:
            first = self.number(flt.get("fromBlock", "latest"))
            last = self.number(flt.get("toBlock", "latest"))
            last = min(last, self.head)
            if first > last:
                return b"[]"
        address = flt.get("address")
        addresses = None if address is None else {a.lower() for a in (
            [address] if isinstance(address, str) else address)}
        topics = flt.get("topics") or []
        wanted = [None if t is None else {x.lower() for x in ([t] if isinstance(t, str) else t)}
                  for t in topics]
        parts = []
        for n in range(first, last + 1):
            self.stats["logs_blocks"] += 1
            t = self.template(n)
            if addresses is None and not any(w is not None for w in wanted):
                compiled = t.logs_joined
            else:
                compiled = Compiled(b",".join(
                    lg for lg, (addr, tops) in zip(t.logs, t.log_keys, strict=True)
                    if _matches(addr, tops, addresses, wanted)))
            if compiled.parts != [b""]:
                parts.append(self._render(compiled, n))
        return b"[" + b",".join(parts) + b"]"

    def number(self, tag: Any) -> int:
        if isinstance(tag, int) and not isinstance(tag, bool):
            return tag
        if isinstance(tag, str):
            if tag in _TAGS_HEAD:
                return self.head
            if tag == "earliest":
                return 0
            try:
                return int(tag, 16)
            except ValueError:
                pass
        raise RpcError(-32602, f"invalid block number {tag!r}")

    # -- dispatch -----------------------------------------------------------------------

    def call(self, method: Any, params: Any) -> bytes:
        p = params if isinstance(params, list) else []
        if method == "eth_getBlockByNumber":
            return self.block(self.number(_param(p, 0)), bool(_param(p, 1, False)))
        if method == "eth_getBlockReceipts":
            ref = _param(p, 0)
            if isinstance(ref, dict):  # {"blockHash": ...} or {"blockNumber": ...}
                ref = ref.get("blockHash") or ref.get("blockNumber")
            if isinstance(ref, str) and len(ref) == 66:
                n = number_of_hash(ref)
                return self.block_receipts(n) if n is not None and block_hash(n) == ref.lower() \
                    else b"null"
            return self.block_receipts(self.number(ref))
        if method == "eth_getTransactionReceipt":
            return self.receipt(_param(p, 0))
        if method == "eth_getLogs":
            return self.logs(_param(p, 0))
        if method == "eth_blockNumber":
            return b'"%s"' % hex(self.head).encode()
        if method == "eth_chainId":
            return b'"%s"' % hex(CHAIN_ID).encode()
        if method == "net_version":
            return b'"%d"' % CHAIN_ID
        if method == "eth_getBlockByHash":
            ref = _param(p, 0)
            n = number_of_hash(ref)
            if n is None or block_hash(n) != ref.lower():
                return b"null"
            return self.block(n, bool(_param(p, 1, False)))
        if method == "eth_getTransactionByHash":
            return self.transaction(_param(p, 0))
        if method == "eth_getBlockTransactionCountByNumber":
            n = self.number(_param(p, 0))
            return b"null" if not 0 <= n <= self.head else \
                b'"%s"' % hex(self.template(n).transaction_count).encode()
        if method == "eth_syncing":
            return b"false"
        if method == "web3_clientVersion":
            return b'"chainlake-replay/1.0"'
        if method == "replay_stats":
            return orjson.dumps({**self.stats, "head": self.head,
                                 "cpu_s": time.process_time() - self.cpu_start,
                                 "uptime_s": time.monotonic() - self.started})
        raise RpcError(-32601, f"the method {method} does not exist/is not available")

    def handle(self, request: Any) -> list[bytes]:
        """One JSON-RPC request object → its reply object, as pieces of bytes to join."""
        if not isinstance(request, dict):
            return [_error(None, -32600, "invalid request")]
        ident = orjson.dumps(request.get("id"))
        self.stats["calls"] += 1
        try:
            result = self.call(request.get("method"), request.get("params"))
        except RpcError as err:
            return [_error(ident, err.code, err.message)]
        except Exception as err:  # noqa: BLE001 - a malformed call must not kill the server
            return [_error(ident, -32602, f"invalid params: {type(err).__name__}: {err}")]
        return [b'{"jsonrpc":"2.0","id":', ident, b',"result":', result, b"}"]

    def handle_body(self, body: bytes) -> bytes:
        """A request body (one call or a batch) → the reply body (copied once, by one join)."""
        self.stats["requests"] += 1
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(b"null", -32700, "parse error")
        if not isinstance(data, list):
            return b"".join(self.handle(data))
        if not data:
            return _error(b"null", -32600, "empty batch")
        pieces = [b"["]
        for item in data:
            pieces += self.handle(item)
            pieces.append(b",")
        pieces[-1] = b"]"
        return b"".join(pieces)


def _param(params: list, i: int, default: Any = None) -> Any:
    return params[i] if len(params) > i else default


def _matches(addr: str, topics: tuple[str, ...], addresses: set[str] | None,
             wanted: list[set[str] | None]) -> bool:
    if addresses is not None and addr not in addresses:
        return False
    if len(wanted) > len(topics):
        return False
    return all(w is None or topics[i] in w for i, w in enumerate(wanted))


def _error(ident: bytes | None, code: int, message: str) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
                        ) if ident is None else (
        b'{"jsonrpc":"2.0","id":' + ident + b',"error":'
        + orjson.dumps({"code": code, "message": message}) + b"}")


# ---------------------------------------------------------------------------------------------
# HTTP/1.1, one thread per connection: just enough for JSON-RPC clients (keep-alive,
# Content-Length or chunked bodies). Replies go out with one blocking sendall: no user-space
# buffering of the multi-megabyte batch replies.

_MAX_BODY = 64 * 2**20
_REASONS = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed", 413: "Payload Too Large",
            431: "Request Header Fields Too Large"}


class _Closed(Exception):  # noqa: N818 - control flow
    """The client closed the connection (or sent something unusable)."""


class _Connection:
    def __init__(self, sock: socket.socket, chain: ReplayChain) -> None:
        self.sock = sock
        self.chain = chain
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 18)
        if not data:
            raise _Closed
        self.buf += data

    def serve(self) -> None:
        with contextlib.suppress(_Closed, OSError):
            while True:
                self._one_request()

    def _one_request(self) -> None:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > 65536:
                self._reply(431, b"headers too large\n", close=True)
            self._fill()
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        parts = head[0].split(" ")
        method, version = parts[0], parts[-1]
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        del self.buf[:end + 4]
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked_body()
        else:
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                self._reply(400, b"bad content-length\n", close=True)
            if length > _MAX_BODY:
                self._reply(413, b"request too large\n", close=True)
            if headers.get("expect", "").lower() == "100-continue" and len(self.buf) < length:
                self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            while len(self.buf) < length:
                self._fill()
            body = bytes(self.buf[:length])
            del self.buf[:length]
        connection = headers.get("connection", "").lower()
        close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        if method == "POST":
            self._reply(200, self.chain.handle_body(body), close=close, json=True)
        elif method == "GET":
            self._reply(200, b"chainlake replay node\n", close=close)
        else:
            self._reply(405, b"method not allowed\n", close=close)

    def _chunked_body(self) -> bytes:
        body = bytearray()
        while True:
            while (eol := self.buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(bytes(self.buf[:eol]).split(b";")[0], 16)
            del self.buf[:eol + 2]
            if size == 0:  # trailers (ignored), then an empty line
                while True:
                    while (eol := self.buf.find(b"\r\n")) < 0:
                        self._fill()
                    del self.buf[:eol + 2]
                    if eol == 0:
                        return bytes(body)
            while len(self.buf) < size + 2:
                self._fill()
            body += self.buf[:size]
            del self.buf[:size + 2]
            if len(body) > _MAX_BODY:
                self._reply(413, b"request too large\n", close=True)

    def _reply(self, status: int, body: bytes, close: bool = False, json: bool = False) -> None:
        kind = b"application/json" if json else b"text/plain"
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n"
                % (status, _REASONS.get(status, "Error").encode(), kind, len(body),
                   b"connection: close\r\n" if close else b""))
        self.chain.stats["bytes_out"] += len(body)
        self.sock.sendall(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.sock.sendall(body)
        if close:
            raise _Closed


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], chain: ReplayChain) -> None:
        self.chain = chain
        super().__init__(address, _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _Connection(self.request, self.server.chain).serve()  # type: ignore[attr-defined]


def serve(chain: ReplayChain, host: str, port: int) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # also resets an inherited "ignore"
        signal.signal(sig, lambda *_: stop.set())
    with _Server((host, port), chain) as server:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                  daemon=True)
        thread.start()
        bound = server.server_address[1]
        print(f"listening on http://{host}:{bound} ({chain.blocks:,} blocks, head {chain.head})",
              flush=True)
        while not stop.wait(1.0):
            pass
        server.shutdown()
    stats = {**chain.stats, "cpu_s": round(time.process_time() - chain.cpu_start, 3)}
    print(f"replay node stopped: {stats}", file=sys.stderr, flush=True)


def self_test(chain: ReplayChain, blocks: int) -> None:
    """Render ``blocks`` blocks (full transactions + receipts) and check them; print the cost."""
    t0 = time.process_time()
    size = 0
    for n in range(blocks):
        size += len(chain.block(n, True)) + len(chain.block_receipts(n))
    cpu = time.process_time() - t0
    print(f"rendered {blocks:,} blocks with receipts: {cpu / blocks * 1e3:.3f} ms CPU per block, "
          f"{size / blocks / 1e3:,.0f} kB of JSON per block", flush=True)
    t0 = time.process_time()
    for n in range(min(blocks, 200)):
        orjson.loads(chain.block(n, True)), orjson.loads(chain.block_receipts(n))
    per = (time.process_time() - t0) / min(blocks, 200)
    print(f"(for scale: orjson.loads of the same replies takes {per * 1e3:.3f} ms per block)")
    previous = None
    for n in range(min(blocks, 50)):
        block = orjson.loads(chain.block(n, True))
        receipts = orjson.loads(chain.block_receipts(n))
        assert int(block["number"], 16) == n and block["hash"] == block_hash(n)
        assert previous is None or block["parentHash"] == previous
        assert len(receipts) == len(block["transactions"])
        for tx, r in zip(block["transactions"], receipts, strict=True):
            assert tx["hash"] == r["transactionHash"] and r["blockHash"] == block["hash"]
            assert all(lg["blockHash"] == block["hash"] for lg in r["logs"])
        previous = block["hash"]
    print("linked hashes and receipts: ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8547, help="0: any free port")
    parser.add_argument("--blocks", type=int, default=20_000, help="serve blocks 0..N-1")
    parser.add_argument("--fixtures", type=Path,
                        default=Path(os.environ.get("CHAINLAKE_FIXTURES") or DEFAULT_FIXTURES))
    parser.add_argument("--self-test", action="store_true",
                        help="render --blocks blocks in-process, print the CPU per block, exit")
    args = parser.parse_args()
    chain = ReplayChain(load_templates(args.fixtures), args.blocks)
    if args.self_test:
        self_test(chain, args.blocks)
        return
    serve(chain, args.host, args.port)


if __name__ == "__main__":
    main()
