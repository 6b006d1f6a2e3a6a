"""Two `dagster asset materialize` commands on one partition, started at the same moment.

Dagster's pools (config/dagster.yaml `concurrency: pools`) bind only the runs the daemon launches
(queued runs: UI, backfills, sensor, schedule); a `dagster asset materialize` on the command line
executes its run at once, so two of them on one partition (same DAGSTER_HOME, same lake) really
run together. Both use the partition's Spark checkpoint, which Spark lets one query use at a
time: the scope's lock (ingestion.checkpoint.scope_lock) makes the second wait, so both succeed.
The lake must be exact: no key twice, the node's rows, `chainlake validate` passing (every write
replaces its block range; a conflicting commit is retried). Once on a fresh lake (both runs
also race to create the tables) and once on a lake whose tables exist (an earlier range ingested;
the racing partition is linked to it).
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from integration.reference import project, reference_rows
from process_tree import descendants, survivors

from assets.bronze import BRONZE_SELECTION
from assets.demo import QUIET_DAGSTER_CLI, prepare_dagster_home
from assets.partitions import BLOCK_RANGES
from ingestion.ranges import span_of
from ingestion.schemas import TABLES
from ingestion.sink import BronzeLake

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SIZE = 8  # blocks per partition: one micro-batch per run
SELECT = BRONZE_SELECTION  # every bronze table: the multi-asset is not subsettable
RUN_TIMEOUT_S = 600
# What Spark says to the run that loses the race for the partition's checkpoint: creating its
# `metadata` or an `offsets/<batch>` file (SparkConcurrentModificationException), or the
# `commits/<batch>` file after both wrote the batch (CONCURRENT_STREAM_LOG_UPDATE).
CHECKPOINT_RACE = re.compile(r"Multiple streaming (queries are concurrently using|jobs detected for)")


class Command:
    """A subprocess in a session of its own; every process below it is noted while it runs
    (PySpark's worker daemon makes a process group of its own), so that ``stop`` ends them all."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.known: dict[int, tuple[int, int]] = {}  # pid -> (process group, start time)

    def note_processes(self) -> None:
        self.known.update(descendants(self.proc.pid))

    def survivors(self) -> list[int]:
        return survivors(self.known)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """End the command and everything it started (a no-op for what has ended by itself)."""
        if self.proc.poll() is None:
            self.note_processes()
        groups = {self.proc.pid} | {group for group, _ in self.known.values()
                                    if group in self.known}
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        for pid in self.survivors():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def run_together(commands: list[Command], timeout: float = RUN_TIMEOUT_S) -> list[int]:
    """Wait for all of them; stop them all in any case; their exit codes."""
    try:
        deadline = time.monotonic() + timeout
        while any(c.proc.poll() is None for c in commands):
            assert time.monotonic() < deadline, "\n\n".join(c.output() for c in commands)
            for c in commands:
                if c.proc.poll() is None:
                    c.note_processes()
            time.sleep(0.5)
        # Spark's JVM and Python daemon follow their driver out: give them a moment.
        settle = time.monotonic() + 30
        while any(c.survivors() for c in commands) and time.monotonic() < settle:
            time.sleep(0.2)
        left = [pid for c in commands for pid in c.survivors()]
        assert not left, f"processes left behind by the runs: {left}"
        return [c.proc.returncode for c in commands]
    finally:
        for c in commands:
            c.stop()


def cli_env(devnet, lake_root: str, home: Path) -> dict[str, str]:
    env = {**os.environ, **QUIET_DAGSTER_CLI, "CHAINLAKE_RPC_URL": devnet.url,
           "CHAINLAKE_LAKE_URI": lake_root, "CHAINLAKE_PARTITION_SIZE": str(SIZE),
           "DAGSTER_HOME": str(home),
           # one task thread per run: two Spark sessions share two cores with the rest
           "CHAINLAKE_SPARK_MASTER": "local[1,3]"}
    env.pop("CHAINLAKE_START_BLOCK", None)
    return env


def assert_lake_exact(lake: BronzeLake, devnet, end: int) -> None:
    """Blocks [0, end) once each, every key once, the node's rows, and `chainlake validate`."""
    reference = reference_rows(devnet.url, 0, end)
    for name in TABLES:
        key = list(TABLES[name].key)
        table = lake.read(name)
        keys = [tuple(row.values()) for row in table.select(key).to_pylist()]
        assert len(keys) == len(set(keys)), \
            f"{name}: {len(keys) - len(set(keys))} duplicate keys ({len(keys)} rows)"
        rows = table.sort_by([(k, "ascending") for k in key]).to_pylist()
        if name == "blocks":
            assert [r["block_number"] for r in rows] == list(range(end))
        if name not in reference:  # web3's reference has the core tables
            continue
        expected = reference[name]
        columns = list(expected[0]) if expected else key
        assert project(rows, columns) == expected, f"{name} differs from the node"
    done = subprocess.run([str(BIN / "chainlake"), "validate", "--lake", lake.root],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          start_new_session=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def commits(lake: BronzeLake) -> str:
    """What each table's Delta log records, e.g. ``blocks: CREATE TABLE, WRITE x2``."""
    parts = []
    for name in TABLES:
        table = lake.table(name)
        ops = [h["operation"] for h in reversed(table.history())] if table is not None else []
        parts.append(f"{name}: " + ", ".join(f"{op} x{ops.count(op)}" for op in dict.fromkeys(ops)))
    return "; ".join(parts)


@pytest.mark.parametrize("lake_state", ["fresh lake", "tables exist"])
def test_two_cli_materializations_of_one_partition_leave_the_lake_exact(devnet, tmp_path,
                                                                         lake_state):
    assert devnet.head + 1 >= 2 * SIZE
    lake = BronzeLake(str(tmp_path / "lake"))
    home = prepare_dagster_home(tmp_path / "dagster_home")
    env = cli_env(devnet, lake.root, home)
    span = span_of(0 if lake_state == "fresh lake" else SIZE, SIZE)
    if lake_state == "tables exist":
        # The range before it, ingested by the same code path (no Dagster run needed).
        (code,) = run_together([Command(
            [str(BIN / "chainlake"), "ingest", "--rpc-url", devnet.url, "--lake", lake.root,
             "--start-block", "0", "--end-block", str(span.start)], env, tmp_path / "ingest.log")])
        assert code == 0, (tmp_path / "ingest.log").read_text()[-3000:]
        assert all(lake.table(name) is not None for name in TABLES)
    else:
        assert not lake.exists()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(BLOCK_RANGES.name, [span.key])

    cmd = [str(BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions",
           "--select", SELECT, "--partition", span.key]
    runs = [Command(cmd, env, tmp_path / f"materialize-{i}.log") for i in (1, 2)]
    codes = run_together(runs)
    lost = [m.group(0) for r in runs
            if (m := CHECKPOINT_RACE.search(r.log.read_text(errors="replace")))]
    outcome = f"exit codes {codes} {lost}; {commits(lake)}"
    print(f"{lake_state}: {outcome}")

    # The lake first: it must be exact whatever happened to the runs.
    assert_lake_exact(lake, devnet, span.end)
    # Both runs use the partition's Spark checkpoint: the scope's lock makes the second wait
    # for the first (Spark would fail it), then it finds nothing left to ingest.
    assert codes == [0, 0], outcome + "\n\n" + "\n\n".join(r.output() for r in runs)
    assert not lost, outcome
    assert any("another run is ingesting scope" in r.log.read_text(errors="replace")
               for r in runs), outcome
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records()
    assert sorted(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records) == \
        sorted(code == 0 for code in codes)
    # They ran at the same time: the `chainlake_ingest` pool (limit 1) did not serialize them.
    assert max(r.start_time for r in records) < min(r.end_time for r in records), outcome
