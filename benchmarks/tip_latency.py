"""Tip latency of the dev stack: from a block first seen at the node to its row in bronze/blocks.

Runs ``python -m assets.dev`` (devnet mining a block every ``--block-time`` s, the warm Spark
Connect server unless ``--cold-spark``, ``dagster dev`` with ``chain_head_sensor`` on) in a
temporary DAGSTER_HOME and lake, watches for ``--minutes`` and prints min / median / p95 / max
latency and where the seconds of the sensor's runs went:

  sensor wait  the run's newest block first seen at the node -> the run created by the sensor
  queue        run created -> run worker started (the daemon's run queue and launcher)
  launch       run worker started -> the ingest step started (code location load, resources)
  ingest       ingest step started -> the run's newest block visible in the lake (Spark or
               Spark Connect session, availableNow query: read, write, commit)
  rest         that block visible -> the run ended: following the head (a tip run goes on
               ingesting new blocks for CHAINLAKE_TIP_FOLLOW_S, ``--follow``), then the
               continuity checks

Latency is measured by polling the node's head (every 0.2 s) and the lake's stored tip (every
0.25 s, from Delta file statistics), so each figure is precise to about a quarter second.
The stack is stopped by process group at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dev_stack import DevStack  # noqa: E402

from ingestion import settings  # noqa: E402
from ingestion.devnet import rpc_call  # noqa: E402
from ingestion.sink import BronzeLake  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> str:
    if not values:
        return "no data"
    return (f"min {min(values):5.1f}  median {statistics.median(values):5.1f}  "
            f"p95 {percentile(values, 0.95):5.1f}  max {max(values):5.1f}  (n={len(values)})")


class Watch:
    """First time each block number was seen at the node, and in the lake."""

    def __init__(self, url: str, lake: BronzeLake) -> None:
        self.url, self.lake = url, lake
        self.seen: dict[int, float] = {}
        self.visible: dict[int, float] = {}
        self.stop = threading.Event()

    def _node(self) -> None:
        last = -1
        while not self.stop.is_set():
            try:
                head = int(rpc_call(self.url, "eth_blockNumber", timeout=2), 16)
            except Exception:  # noqa: BLE001 - the devnet may not be up yet
                head = last
            now = time.time()
            for n in range(last + 1, head + 1):
                self.seen.setdefault(n, now)
            last = max(last, head)
            self.stop.wait(0.2)

    def _lake(self) -> None:
        last = -1
        while not self.stop.is_set():
            try:
                tip = self.lake.stored_tip()
            except Exception:  # noqa: BLE001 - tables being created
                tip = None
            now = time.time()
            if tip is not None:
                for n in range(last + 1, tip + 1):
                    self.visible.setdefault(n, now)
                last = max(last, tip)
            self.stop.wait(0.25)

    def start(self) -> Watch:
        for target in (self._node, self._lake):
            threading.Thread(target=target, daemon=True).start()
        return self


def run_stages(home: Path, watch: Watch, since: float) -> dict[str, list[float]]:
    """Seconds per stage of the sensor's finished runs created after ``since``."""
    import dagster as dg

    stages: dict[str, list[float]] = {k: [] for k in
                                      ("sensor wait", "queue", "launch", "ingest", "rest")}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for record in instance.get_run_records(dg.RunsFilter(
                tags={"chainlake/trigger": "chain_head_sensor"},
                statuses=[dg.DagsterRunStatus.SUCCESS])):
            run = record.dagster_run
            created = record.create_timestamp.timestamp()
            safe_head = int(run.tags.get("chainlake/safe_head", -1))
            if created < since or safe_head not in watch.seen or safe_head not in watch.visible:
                continue
            events = {}
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                key = (event.event_type_value, entry.step_key)
                events.setdefault(key, entry.timestamp)
            started = record.start_time
            step = events.get(("STEP_START", "bronze_ingest"))
            ended = record.end_time
            if started is None or step is None or ended is None:
                continue
            stages["sensor wait"].append(created - watch.seen[safe_head])
            stages["queue"].append(started - created)
            stages["launch"].append(step - started)
            stages["ingest"].append(watch.visible[safe_head] - step)
            stages["rest"].append(ended - watch.visible[safe_head])
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--block-time", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds before blocks count (the first catch-up of the history)")
    parser.add_argument("--cold-spark", action="store_true",
                        help="no Spark Connect server: every run starts its own Spark")
    parser.add_argument("--follow", type=int, default=None,
                        help=f"seconds a tip run follows the head ({settings.ENV_TIP_FOLLOW_S}; "
                             f"default {settings.DEFAULT_TIP_FOLLOW_S}, 0: not at all)")
    args = parser.parse_args(argv)
    follow = settings.DEFAULT_TIP_FOLLOW_S if args.follow is None else args.follow

    with DevStack("tip-latency-", args.block_time, cold_spark=args.cold_spark,
                  env={settings.ENV_TIP_FOLLOW_S: str(follow)}) as stack:
        watch = Watch(stack.url, BronzeLake(str(stack.lake_root))).start()
        began = time.time()
        try:
            deadline = began + args.warmup + args.minutes * 60
            while time.time() < deadline:
                if stack.exited() is not None:
                    print(f"the dev stack exited with code {stack.exited()}; see "
                          f"{stack.work}/stack.log")
                    return 1
                time.sleep(1)
            time.sleep(0.5)
            counted_from = began + args.warmup
            latencies = [watch.visible[n] - t for n, t in watch.seen.items()
                         if t >= counted_from and n in watch.visible]
            pending = [n for n, t in watch.seen.items() if t >= counted_from
                       and n not in watch.visible]
            stages = run_stages(stack.home, watch, counted_from)
        finally:
            watch.stop.set()
    spark = "cold Spark per run" if args.cold_spark else "warm Spark Connect server"
    print(f"tip latency, dev stack ({spark}, a block every {args.block_time:g} s, tip runs "
          f"following the head for {follow} s, {args.minutes:g} min after {args.warmup:g} s of "
          f"warm-up), seconds:")
    print(f"  first seen at the node -> visible in bronze/blocks: {summary(latencies)}")
    print(f"  blocks seen but not yet visible at the end: {len(pending)}")
    print(f"  the sensor's runs in that time: {len(stages['queue'])} "
          f"({len(latencies) / max(1, len(stages['queue'])):.1f} blocks each)")
    print("  per stage of the sensor's runs (the newest block of their first pass):")
    for name, values in stages.items():
        print(f"    {name:<12} {summary(values)}")
    print(f"  (stack log and lake kept in {stack.work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
