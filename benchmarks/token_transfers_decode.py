"""Throughput of ``decode_token_transfers`` on one core, over synthetic bronze logs.

    .venv/bin/python benchmarks/token_transfers_decode.py [--logs 1000000] [--batch-rows 0]

The logs mimic a mainnet block mix: 70 % ERC-20 Transfer, 8 % ERC-721 Transfer, 3 % ERC-1155
TransferSingle, 1 % TransferBatch (1–8 pairs), 18 % other events (swap-like: 3 topics and 128
bytes; sync-like: 1 topic and 64 bytes); 0.1 % of ERC-20 amounts are full 256-bit numbers (beyond
DECIMAL(38,0)). Prints logs/s and rows/s (best and median of the runs); the process is pinned to
one CPU and Arrow to one thread.
"""

from __future__ import annotations

import argparse
import binascii
import os
import statistics
import time

import numpy as np
import pyarrow as pa
from eth_abi import encode

from ingestion import schemas
from ingestion.datasets.token_transfers import (
    TRANSFER_BATCH_TOPIC,
    TRANSFER_SINGLE_TOPIC,
    TRANSFER_TOPIC,
    decode_token_transfers,
)

# kind: (share, topic count, data bytes; None: an ABI-encoded batch)
KINDS = {
    "erc20": (0.70, 3, 32),
    "erc721": (0.08, 4, 0),
    "single": (0.03, 4, 64),
    "batch": (0.01, 4, None),
    "swap": (0.10, 3, 128),
    "sync": (0.08, 1, 64),
}
SIGNATURES = {"erc20": TRANSFER_TOPIC, "erc721": TRANSFER_TOPIC, "single": TRANSFER_SINGLE_TOPIC,
              "batch": TRANSFER_BATCH_TOPIC}
LOGS_PER_BLOCK = 400


def _hex_strings(raw: bytes, lengths: np.ndarray) -> pa.Array:
    """"0x"-prefixed hex strings of consecutive byte runs of ``raw`` (vectorized)."""
    digits = np.frombuffer(binascii.hexlify(raw), np.uint8)
    sizes = 2 + 2 * lengths
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    chars = np.empty(offsets[-1], np.uint8)
    prefix = np.zeros(offsets[-1], bool)
    prefix[offsets[:-1]] = prefix[offsets[:-1] + 1] = True
    chars[offsets[:-1]], chars[offsets[:-1] + 1] = ord("0"), ord("x")
    chars[~prefix] = digits
    return pa.Array.from_buffers(pa.string(), len(lengths),
                                 [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(chars)])


def synthetic_logs(n: int, seed: int = 7) -> pa.Table:
    """n bronze log rows (schemas.LOGS) with the mix above."""
    rng = np.random.default_rng(seed)
    names = list(KINDS)
    kind = rng.choice(len(names), size=n, p=[KINDS[k][0] for k in names])
    counts = np.array([KINDS[k][1] for k in names])[kind]

    # Topics: 32 random bytes each; addresses padded with 12 zero bytes, event signatures.
    topic_start = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=topic_start[1:])
    topics = rng.integers(0, 256, (topic_start[-1], 32), dtype=np.uint8)
    for position in (1, 2, 3):
        has = counts > position
        topics[topic_start[:-1][has] + position, :12] = 0
    for name, signature in SIGNATURES.items():
        rows = kind == names.index(name)
        topics[topic_start[:-1][rows]] = np.frombuffer(bytes.fromhex(signature[2:]), np.uint8)
    erc721 = kind == names.index("erc721")
    topics[topic_start[:-1][erc721] + 3, :28] = 0  # token ids below 2^32
    topic_strings = _hex_strings(topics.tobytes(), np.full(len(topics), 32))
    topic_lists = pa.ListArray.from_arrays(pa.array(topic_start, pa.int32()), topic_strings,
                                           type=schemas.LOGS.arrow_schema.field("topics").type)

    # Data: fixed sizes, amounts of realistic magnitude, ABI-encoded batches.
    data_sizes = np.array([KINDS[k][2] or 0 for k in names])[kind]
    batches = np.flatnonzero(kind == names.index("batch"))
    pairs = rng.integers(1, 9, len(batches))
    encoded = [encode(["uint256[]", "uint256[]"],
                      [rng.integers(0, 10**6, k).tolist(), rng.integers(1, 100, k).tolist()])
               for k in pairs]
    data_sizes[batches] = [len(e) for e in encoded]
    data_start = np.zeros(n + 1, np.int64)
    np.cumsum(data_sizes, out=data_start[1:])
    data = rng.integers(0, 256, data_start[-1], dtype=np.uint8)
    for name in ("erc20", "single"):  # amounts and ids below 2^80, a few full-width ERC-20
        rows = np.flatnonzero(kind == names.index(name))
        words = 1 if name == "erc20" else 2
        small = rows if name == "single" else rows[rng.random(len(rows)) >= 0.001]
        for w in range(words):
            at = data_start[small] + 32 * w
            data[at[:, None] + np.arange(22)] = 0
    for i, e in zip(batches, encoded, strict=True):
        data[data_start[i]:data_start[i + 1]] = np.frombuffer(e, np.uint8)
    data_strings = _hex_strings(data.tobytes(), data_sizes)

    tokens = np.frombuffer(rng.bytes(20 * 5000), np.uint8).reshape(5000, 20)
    address = _hex_strings(tokens[rng.integers(0, 5000, n)].tobytes(), np.full(n, 20))
    block = np.arange(n) // LOGS_PER_BLOCK
    log_index = np.arange(n) % LOGS_PER_BLOCK
    tx = block * LOGS_PER_BLOCK + log_index // 4
    hashes = _hex_strings(rng.bytes(32 * (tx[-1] + 1)), np.full(tx[-1] + 1, 32))
    block_hashes = _hex_strings(rng.bytes(32 * (block[-1] + 1)), np.full(block[-1] + 1, 32))
    columns = {
        "chain_id": pa.array(np.ones(n, np.int64)),
        "block_number": pa.array(17_000_000 + block),
        "block_hash": block_hashes.take(pa.array(block)),
        "block_timestamp": pa.array((1_680_000_000 + 12 * block) * 1_000_000).cast(
            schemas.TIMESTAMP),
        "transaction_index": pa.array(log_index // 4),
        "transaction_hash": hashes.take(pa.array(tx)),
        "log_index": pa.array(log_index),
        "address": address,
        "data": data_strings,
        "topics": topic_lists,
    }
    schema = schemas.LOGS.arrow_schema
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=0,
                        help="split the input into record batches of this many rows (0: one)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):  # one core, whatever the machine has
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pa.set_cpu_count(1)

    logs = synthetic_logs(args.logs)
    if args.batch_rows:
        logs = pa.Table.from_batches(logs.to_batches(max_chunksize=args.batch_rows))
    decode_token_transfers(logs.slice(0, 10_000))  # warm up imports and allocators
    seconds, rows = [], 0
    for _ in range(args.runs):
        start = time.perf_counter()
        rows = decode_token_transfers(logs).num_rows
        seconds.append(time.perf_counter() - start)
    best, median = min(seconds), statistics.median(seconds)
    batches = len(logs.to_batches())
    print(f"{args.logs:,} logs in {batches} record batch(es) -> {rows:,} token transfers, 1 core")
    print(f"best   {best:.3f} s: {args.logs / best:,.0f} logs/s, {rows / best:,.0f} rows/s")
    print(f"median {median:.3f} s: {args.logs / median:,.0f} logs/s, {rows / median:,.0f} rows/s")


if __name__ == "__main__":
    main()
