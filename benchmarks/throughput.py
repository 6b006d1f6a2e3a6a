"""Throughput of each stage on one devnet chain; prints blocks/s and peak RSS.

    .venv/bin/python benchmarks/throughput.py [--blocks 5000] [--txs-per-block 50]

Stages, all over the same chain:
  (a) raw batched JSON-RPC fetch (blocks + receipts): the node's limit
  (b) the RPC JSON -> Arrow transform alone, on already fetched replies
  (c) Spark batch read of each dataset (blocks, transactions, logs) and of the bundle
  (d) `chainlake ingest` end to end, as a subprocess: Spark start, stream, Delta writes

The chain runs on anvil with --hardfork cancun (prague mining slows per block in anvil 1.7.1)
and impersonated senders (anvil re-verifies signatures each time it serves a signed block).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from measure import PeakRss, report  # noqa: E402

from ingestion.devnet import Devnet, free_port  # noqa: E402
from ingestion.devnet.traffic import generate_load  # noqa: E402
from ingestion.rpc import RpcClient  # noqa: E402
from ingestion.transform import table_batches  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=5_000)
    parser.add_argument("--txs-per-block", type=int, default=50)
    parser.add_argument("--skip-spark", action="store_true", help="only (a) and (b)")
    args = parser.parse_args()

    with Devnet(port=free_port(), hardfork="cancun") as devnet:
        t0 = time.monotonic()
        load = generate_load(devnet.url, blocks=args.blocks, txs_per_block=args.txs_per_block)
        head = devnet.head()
        blocks = head + 1
        print(f"chain: {blocks:,} blocks, {load.transactions:,} transactions "
              f"(built in {time.monotonic() - t0:.0f}s), {os.cpu_count()} cores", flush=True)

        # (a) raw batched fetch, single client, 25 blocks per round trip
        with RpcClient(devnet.url) as client:
            raw = []
            t0 = time.monotonic()
            for a in range(0, blocks, 25):
                raw.extend(client.fetch_raw_blocks(a, min(a + 25, blocks)))
            fetch_s = time.monotonic() - t0
        report("(a) batched JSON-RPC fetch (1 client)", blocks, fetch_s)

        # (b) transform alone
        t0 = time.monotonic()
        rows = {"transactions": 0, "logs": 0}
        for a in range(0, blocks, 25):
            batches = table_batches(devnet.chain_id, raw[a:a + 25])
            rows["transactions"] += batches["transactions"].num_rows
            rows["logs"] += batches["logs"].num_rows
        report("(b) transform RPC JSON -> Arrow (1 core)", blocks, time.monotonic() - t0,
               extra=f"  {rows['transactions']:,} txs, {rows['logs']:,} logs")
        del raw

        if args.skip_spark:
            return

        # (c) Spark batch reads
        from ingestion.spark import get_spark

        with PeakRss(exclude=frozenset({devnet.process.pid})) as rss:
            t0 = time.monotonic()
            spark = get_spark()
            print(f"    Spark session start: {time.monotonic() - t0:.1f}s", flush=True)
            for dataset in ("blocks", "transactions", "logs", "bundle"):
                t0 = time.monotonic()
                n = (spark.read.format("evm").option("rpc_url", devnet.url)
                     .option("dataset", dataset).option("end_block", blocks).load()
                     .toArrow().num_rows)
                report(f"(c) Spark batch read, dataset={dataset}", blocks,
                       time.monotonic() - t0, extra=f"  {n:,} rows")
            spark.stop()
        print(f"    peak RSS of (c), driver + JVM + workers: {rss.peak / 2**20:,.0f} MiB")

        # (d) chainlake ingest end to end, as a user runs it
        with tempfile.TemporaryDirectory() as lake:
            cmd = [str(Path(sys.executable).parent / "chainlake"), "ingest", "--rpc-url",
                   devnet.url, "--lake", lake, "--start-block", "0", "--end-block", str(blocks)]
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            with PeakRss(proc.pid) as rss:
                out, _ = proc.communicate()
            seconds = time.monotonic() - t0
            if proc.returncode != 0:
                print(out)
                raise SystemExit("chainlake ingest failed")
            report("(d) chainlake ingest end to end", blocks, seconds, rss.peak)
            summary = [line for line in out.splitlines() if "done" in line]
            print(f"    {summary[-1].strip() if summary else ''}")


if __name__ == "__main__":
    main()
