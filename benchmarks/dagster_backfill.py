"""Orchestration overhead: a Dagster backfill vs `chainlake ingest` over the same devnet range.

    .venv/bin/python benchmarks/dagster_backfill.py [--blocks 10000] [--txs-per-block 50]

Both run as subprocesses, as a user runs them, each into a fresh lake:
  * `chainlake ingest --start-block 0 --end-block N`
  * `dagster asset materialize --partition-range FIRST...LAST` on a real instance (DAGSTER_HOME
    with config/dagster.yaml): exactly the one run that a single-run backfill of those partitions
    launches from the UI (BackfillPolicy.single_run), one availableNow query per partition.
Prints wall time, blocks/s and the peak RSS of each process tree (driver, JVM, Python workers).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from measure import PeakRss, report  # noqa: E402

from assets.bronze import BRONZE_SELECTION  # noqa: E402
from ingestion.devnet import Devnet, free_port  # noqa: E402
from ingestion.devnet.traffic import generate_load  # noqa: E402
from ingestion.ranges import spans_through  # noqa: E402
from ingestion.sink import BronzeLake  # noqa: E402

BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    with PeakRss(proc.pid) as rss:
        out, _ = proc.communicate()
    if proc.returncode != 0:
        print(out[-5000:])
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}")
    return time.monotonic() - started, rss.peak, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--txs-per-block", type=int, default=50)
    parser.add_argument("--partition-size", type=int, default=1_000)
    args = parser.parse_args()

    with Devnet(port=free_port(), hardfork="cancun") as devnet, \
            tempfile.TemporaryDirectory() as scratch:
        load = generate_load(devnet.url, blocks=args.blocks - 1, txs_per_block=args.txs_per_block)
        blocks = devnet.head() + 1
        print(f"chain: {blocks:,} blocks, {load.transactions:,} transactions; "
              f"{args.partition_size:,} blocks per partition", flush=True)
        env = {**os.environ, "CHAINLAKE_RPC_URL": devnet.url,
               "CHAINLAKE_PARTITION_SIZE": str(args.partition_size)}

        # chainlake ingest
        cli_lake = f"{scratch}/cli-lake"
        seconds, rss, _ = timed([str(BIN / "chainlake"), "ingest", "--lake", cli_lake,
                                 "--start-block", "0", "--end-block", str(blocks)], env)
        report("chainlake ingest", blocks, seconds, rss)

        # Dagster: partitions added to a real instance, then the single-run backfill's run
        home = Path(scratch) / "dagster_home"
        home.mkdir()
        shutil.copyfile(REPO / "config" / "dagster.yaml", home / "dagster.yaml")
        dagster_lake = f"{scratch}/dagster-lake"
        env = {**env, "DAGSTER_HOME": str(home), "CHAINLAKE_LAKE_URI": dagster_lake}
        keys = [s.key for s in spans_through(blocks - 1, args.partition_size)]
        add = ("import dagster as dg, sys; from assets.partitions import BLOCK_RANGES; "
               "dg.DagsterInstance.get().add_dynamic_partitions(BLOCK_RANGES.name, sys.argv[1:])")
        subprocess.run([sys.executable, "-c", add, *keys], cwd=REPO, env=env, check=True)
        seconds, rss, _ = timed([str(BIN / "dagster"), "asset", "materialize", "-m",
                                 "assets.definitions", "--select",
                                 BRONZE_SELECTION,
                                 "--partition-range", f"{keys[0]}...{keys[-1]}"], env)
        report(f"Dagster backfill ({len(keys)} partitions, 1 run)", blocks, seconds, rss)

        counts = [{n: BronzeLake(lake).read(n).num_rows for n in ("blocks", "transactions", "logs")}
                  for lake in (cli_lake, dagster_lake)]
        print(f"rows (ingest / Dagster): {counts[0]} / {counts[1]}")
        if counts[0] != counts[1]:
            raise SystemExit("the two lakes differ")


if __name__ == "__main__":
    main()
