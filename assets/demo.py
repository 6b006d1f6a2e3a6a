"""The main job on the embedded default (``make demo``), through a real Dagster instance.

1. start the local devnet (anvil) and generate every transaction shape plus some load;
2. add the block-range partitions to the Dagster instance in ``.dagster_home``;
3. materialize every bronze partition with ``dagster asset materialize`` (a real run, recorded in
   the instance: open ``make dev`` afterwards and it is there);
4. print a summary read back from the Delta tables and the instance; stop the devnet.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAGSTER_HOME = REPO / ".dagster_home"
BIN = Path(sys.executable).parent
# The `dagster` CLI nags that the separate `dg` CLI supersedes `dev` and `asset materialize`;
# nothing to act on here, so keep it out of the output.
QUIET_DAGSTER_CLI = {"PYTHONWARNINGS": "ignore:Function `dev_command` is superseded,"
                                       "ignore:Function `asset_materialize_command` is superseded"}


def prepare_dagster_home(home: Path = DAGSTER_HOME) -> Path:
    """DAGSTER_HOME with config/dagster.yaml (telemetry off, one ingestion run at a time)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "config" / "dagster.yaml", home / "dagster.yaml")
    return home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=2_500, help="devnet length (default 2500)")
    parser.add_argument("--partition-size", type=int, default=1_000)
    parser.add_argument("--lake", default=str(REPO / "lake"))
    parser.add_argument("--dagster-home", default=str(DAGSTER_HOME))
    args = parser.parse_args(argv)
    home = prepare_dagster_home(Path(args.dagster_home).resolve())
    run_log = home / "demo-run.log"

    from ingestion.devnet import Devnet, free_port
    from ingestion.devnet.traffic import generate_coverage, generate_load

    lake_uri = str(Path(args.lake).resolve())
    with Devnet(port=free_port()) as devnet:
        print(f"demo: devnet (anvil) at {devnet.url}", flush=True)
        coverage = generate_coverage(devnet.url)
        remaining = args.blocks - 1 - devnet.head()
        if remaining > 0:
            generate_load(devnet.url, blocks=remaining, txs_per_block=20)
        head = devnet.head()
        print(f"demo: chain of {head + 1:,} blocks ({coverage.transactions} transactions of "
              f"every shape, then ERC-20 and ETH transfers)", flush=True)

        env = {**os.environ, "CHAINLAKE_RPC_URL": devnet.url, "CHAINLAKE_LAKE_URI": lake_uri,
               "CHAINLAKE_PARTITION_SIZE": str(args.partition_size),
               "DAGSTER_HOME": str(home)}
        os.environ.update(env)  # the instance and partition helpers below read the same settings
        keys = add_partitions(head)
        print(f"demo: {len(keys)} partitions {keys[0]} … {keys[-1]}; materializing through "
              f"Dagster (log: {run_log})", flush=True)
        started = time.monotonic()
        code = materialize(keys, env, run_log)
        seconds = time.monotonic() - started
    if code != 0:
        print(f"demo: the Dagster run failed (exit {code}); see {run_log}", file=sys.stderr)
        return code
    summarize(lake_uri, head, seconds)
    return 0


def add_partitions(head: int) -> list[str]:
    import dagster as dg

    from assets.partitions import add_partitions as add_checked
    from assets.partitions import keys_through

    keys = keys_through(head)
    with dg.DagsterInstance.get() as instance:
        add_checked(instance, keys)  # refuses keys that overlap other ranges in the instance
    return keys


def materialize(keys: list[str], env: dict[str, str], run_log: Path) -> int:
    from assets.bronze import BRONZE_SELECTION
    from assets.silver import SILVER_SELECTION

    cmd = [str(BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions",
           "--select", f"{BRONZE_SELECTION},{SILVER_SELECTION}",
           "--partition-range", f"{keys[0]}...{keys[-1]}"]
    with open(run_log, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**env, **QUIET_DAGSTER_CLI}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            return proc.wait()
        except BaseException:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise


def summarize(lake_uri: str, head: int, seconds: float) -> None:
    import dagster as dg

    from assets.checks import CONTINUITY_CHECKS
    from assets.silver import SILVER_CHECKS
    from ingestion.schemas import SILVER_TABLES, TABLES
    from ingestion.silver import SilverLake
    from ingestion.sink import BronzeLake

    lake, silver = BronzeLake(lake_uri), SilverLake(lake_uri)
    counts = {f"bronze/{name}": lake.read(name).num_rows for name in TABLES}
    counts.update({f"silver/{name}": silver.read(name).num_rows for name in SILVER_TABLES})
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["bronze", "blocks"]))
        meta = event.asset_materialization.metadata if event and event.asset_materialization \
            else {}
        checks = {}
        for spec in (s for c in (*CONTINUITY_CHECKS, *SILVER_CHECKS) for s in c.check_specs):
            record = instance.get_latest_asset_check_evaluation_record(spec.key)
            evaluation = record.evaluation if record is not None else None
            checks[spec.asset_key.to_user_string()] = (
                "not run" if evaluation is None else "passed" if evaluation.passed else "FAILED")
    rate = meta.get("blocks_per_second")
    print("demo: done")
    for name, count in counts.items():
        print(f"  {name:<24}{count:>10,}" + (f"   (chain head {head:,})"
                                             if name == "bronze/blocks" else ""))
    print(f"  Dagster run   {seconds:,.0f}s including Spark start; ingestion "
          f"{rate.value if rate else '?'} blocks/s")
    print("  checks        " + ", ".join(f"{name} {state}" for name, state in checks.items())
          + "  (blocking asset checks; bronze: great-expectations continuity)")
    print(f"  tables        {lake.root}/{{bronze,silver}}/<table> (Delta)")
    print("Query them:")
    print(f"  .venv/bin/python -c \"import polars as pl; print(pl.read_delta("
          f"'{lake.table_uri('transactions')}').group_by('transaction_type').len())\"")
    print(f"  .venv/bin/python -c \"import duckdb, deltalake; t = deltalake.DeltaTable("
          f"'{lake.table_uri('logs')}').to_pyarrow_dataset(); print(duckdb.sql("
          "'select address, count(*) n from t group by 1 order by n desc limit 5'))\"")
    print("Explore in the Dagster UI: make dev")


if __name__ == "__main__":
    sys.exit(main())
