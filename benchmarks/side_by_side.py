"""chainlake side by side with a bare reader, cryo and ethereum-etl, against the same node.

    .venv/bin/python benchmarks/side_by_side.py [--short 300] [--long 3000] [--rounds 2]
        [--node replay|anvil] [--tools bare,cryo,etl,chainlake,validated,warm,dagster]
        [--floors] [--install-peers]

The node (started and stopped by this script):
  replay  (default) benchmarks/replay_node.py: real mainnet blocks 17173049/17173050 in turn,
          about 149 transactions, 340 logs and 545 kB of JSON per block with receipts, served
          pre-rendered (~0.1-0.2 ms of node CPU per block): the clients are the bottleneck.
  anvil   a devnet chain of 50 transactions per block built like benchmarks/throughput.py
          (ingestion.devnet.Devnet with --hardfork cancun, ingestion.devnet.traffic.generate_load with
          impersonated senders): anvil itself is the bottleneck (~180 blocks/s with receipts).

The tools, each a separate process tree started as a user would start it, into fresh output:
  bare       benchmarks/measure.py bare-read: batched eth_getBlockByNumber + eth_getBlockReceipts,
             25 blocks per round trip, orjson parse and discard, one connection: the floor.
  cryo       PyPI cryo (Python bindings): cryo.freeze(["blocks", "transactions", "logs"]) into
             parquet, default concurrency.
  etl        PyPI ethereum-etl: export_blocks_and_transactions, extract_csv_column (hashes),
             export_receipts_and_logs, into CSV, default batch size and workers.
  chainlake  `chainlake ingest --start-block S --end-block E --confirmations 0 --datasets
             blocks,transactions,logs` into a fresh lake: Spark start, streaming, Delta writes,
             Spark stop. Every tool writes blocks, transactions and logs, no traces.
  validated  `chainlake ingest` as above, then `chainlake validate` of the range: the work a
             Dagster run does (ingest, then the great_expectations continuity suite), from the
             command line.
  warm       the same command connected to a warm Spark (`chainlake spark-server`, as `make dev`
             runs it): the server is started and warmed up once (a 10-block ingest), not counted;
             its CPU during each run and its RSS after it are added to the tool's.
  dagster    the single run a Dagster backfill of the same range launches
             (`dagster asset materialize --partition-range`, as benchmarks/dagster_backfill.py),
             fresh DAGSTER_HOME and lake; adding the dynamic partitions first is not counted.
With --floors, four more process trees, each run once a round (they read no blocks), measure
what the platform costs before any block, and the report ends with the bounds they set:
  spark-floor     the cheapest streaming query of a Python data source (one partition, one row,
                  a foreachBatch that collects it) in a local session started as chainlake starts
                  its own (same settings, class-data-sharing archive and worker wrapper): JVM
                  start, Spark's four Python worker starts, one micro-batch; the process then
                  ends as `chainlake` does, leaving the JVM to stop on its own.
  dagster-floor   `dagster asset materialize` of an asset that does nothing (in-process
                  executor, a DAGSTER_HOME with config/dagster.yaml): Dagster's own start, run
                  and exit.
  imports         python importing what a Dagster run has imported before its checks (dagster,
                  pyarrow, pandas, deltalake, pyspark.sql)...
  imports-gx      ...and then great_expectations: the difference is what the checks' import
                  costs a run.
cryo and ethereum-etl run from their own virtualenvs (--peers, default /tmp/chainlake-peers/{cryo,
etl}; --install-peers creates them with pip); a missing one is skipped with a note.

Every tool runs over a short and a long range starting at block 0, for --rounds rounds; the tool
order rotates each round. Each figure is the median over the rounds:
  blocks/s         blocks of the range / wall time of the whole run, start-up included.
  CPU-s/1k         CPU seconds (user + system) of the tool's whole process tree per 1,000 blocks
                   of the long run, start-up included. The tree runs in a fresh cpuacct cgroup
                   joined before the tool's first instruction (a JVM re-parented to init still
                   counts); without a writable cgroup, /proc by parent pid (noted).
  marginal CPU     (CPU long - CPU short) / (long - short) * 1,000: the CPU per 1,000 more blocks,
                   start-up cancelled out. This is the figure to compare tools by.
  fixed CPU        CPU short - marginal * short: what one run costs before its first block
                   (interpreter and JVM start, Spark session, Dagster code location...); an
                   extrapolation, so a tool that starts in a fraction of a second can come out
                   slightly negative.
  ×bare            marginal CPU / the bare reader's marginal CPU, measured in the same run.
  peak RSS         largest sum of the RSS of the tree's processes during the long run, sampled
                   every 50 ms (shared pages of forked workers count once per process).
  node CPU-s/1k    CPU of the node's own process tree during the long run, per 1,000 blocks
                   (how much of the two cores the node took from the tool).
Row counts (blocks, transactions, logs) of every run are checked against the bare reader's.
Wall-clock figures depend on what else runs on the machine; CPU seconds much less so.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata as md
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from measure import MeasuredTree, tree_cpu, tree_rss  # noqa: E402

from assets.bronze import BRONZE_SELECTION  # noqa: E402
from ingestion.ranges import spans_through  # noqa: E402
from ingestion.schemas import CORE_TABLES  # noqa: E402

BIN = Path(sys.executable).parent
# Every tool writes the same tables: the peers write no traces, so neither does chainlake (by
# default it adds traces when the node serves a tracing API, as anvil does).
DATASETS = ",".join(CORE_TABLES)
PEERS_DEFAULT = Path(os.environ.get("CHAINLAKE_PEERS") or "/tmp/chainlake-peers")
TOOLS = ("bare", "cryo", "etl", "chainlake", "validated", "warm", "dagster")
FLOORS = ("spark-floor", "dagster-floor", "imports", "imports-gx")

SPARK_FLOOR = """
import os
import sys
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from ingestion.spark import get_spark

class OneRowReader(DataSourceStreamReader):
    def initialOffset(self):
        return {"row": 0}
    def latestOffset(self):
        return {"row": 1}
    def partitions(self, start, end):
        return [InputPartition(0)]
    def read(self, partition):
        yield (1,)

class OneRow(DataSource):
    @classmethod
    def name(cls):
        return "one_row"
    def schema(self):
        return "n long"
    def streamReader(self, schema):
        return OneRowReader()

spark = get_spark()
spark.dataSource.register(OneRow)
counts = []
query = (spark.readStream.format("one_row").load().writeStream
         .foreachBatch(lambda frame, _batch: counts.append(len(frame.collect())))
         .option("checkpointLocation", sys.argv[1]).trigger(availableNow=True).start())
query.awaitTermination()
assert counts == [1], counts
os._exit(0)  # as `chainlake` ends: the JVM stops on its own when this process is gone
"""

DAGSTER_FLOOR = """
import dagster as dg

@dg.asset
def nothing() -> None:
    return None

defs = dg.Definitions(assets=[nothing], executor=dg.in_process_executor)
"""

RUN_IMPORTS = "import dagster, pyarrow, pandas, deltalake, pyspark.sql"

CRYO_SNIPPET = """
import sys, cryo
url, start, end, out = sys.argv[1:5]
cryo.freeze(["blocks", "transactions", "logs"], blocks=[f"{start}:{end}"], rpc=url,
            output_dir=out, no_verbose=True)
"""

ETL_SCRIPT = """
set -e
etl="$1"; url="$2"; start="$3"; last="$4"
"$etl" export_blocks_and_transactions --start-block "$start" --end-block "$last" \
    --provider-uri "$url" --blocks-output blocks.csv --transactions-output transactions.csv
"$etl" extract_csv_column --input transactions.csv --column hash --output tx_hashes.txt
"$etl" export_receipts_and_logs --transaction-hashes tx_hashes.txt --provider-uri "$url" \
    --receipts-output receipts.csv --logs-output logs.csv
"""

ADD_PARTITIONS = ("import dagster as dg, sys; from assets.partitions import BLOCK_RANGES; "
                  "dg.DagsterInstance.get().add_dynamic_partitions(BLOCK_RANGES.name, sys.argv[1:])")


# ---------------------------------------------------------------------------------------------
# Nodes


@dataclass
class Node:
    url: str
    chain_id: int
    pid: int  # root of the node's process tree (for its CPU)
    description: str
    version: str
    stop: Callable[[], None]


def start_replay_node(blocks: int) -> Node:
    proc = subprocess.Popen([sys.executable, str(BENCH / "replay_node.py"), "--port", "0",
                             "--blocks", str(blocks)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        stop()
        raise SystemExit(f"replay node did not start: {line!r}")
    return Node(line.split()[2], 1, proc.pid,
                f"replay node (benchmarks/replay_node.py), {blocks:,} blocks of mainnet "
                f"17173049/17173050 in turn (149 txs, 340 logs, ~545 kB JSON per block "
                f"with receipts)", "chainlake-replay", stop)


def start_anvil(blocks: int, txs_per_block: int) -> Node:
    # The chain is built exactly as benchmarks/throughput.py builds it.
    from ingestion.devnet import Devnet, find_anvil, free_port
    from ingestion.devnet.traffic import generate_load

    devnet = Devnet(port=free_port(), hardfork="cancun")
    devnet.start()
    try:
        t0 = time.monotonic()
        load = generate_load(devnet.url, blocks=blocks, txs_per_block=txs_per_block)
        print(f"anvil chain: {devnet.head() + 1:,} blocks, {load.transactions:,} transactions, "
              f"built in {time.monotonic() - t0:.0f}s", flush=True)
    except BaseException:
        devnet.stop()
        raise
    version = _first_line([find_anvil(), "--version"])
    return Node(devnet.url, devnet.chain_id, devnet.process.pid,
                f"anvil --hardfork cancun, {blocks:,} blocks × {txs_per_block} transactions "
                f"(impersonated senders)", version, devnet.stop)


# ---------------------------------------------------------------------------------------------
# Tools


@dataclass
class Run:
    tool: str
    blocks: int
    wall_s: float
    cpu_s: float
    peak_rss: int
    node_cpu_s: float
    counts: tuple[int, int, int] | None  # blocks, transactions, logs written (or read)
    ok: bool
    method: str = ""
    note: str = ""


@dataclass
class Tool:
    name: str
    label: str
    prepare: Callable[[int, int, Path], tuple[list[str], dict[str, str], Path]]
    count: Callable[[Path, str], tuple[int, int, int] | None]
    version: str = ""
    server_pid: int | None = None  # a long-lived process tree the tool uses (a warm Spark)
    floor: bool = False  # reads no blocks: run once a round, reported apart


@dataclass
class Setup:
    node: Node
    peers: Path
    partition_size: int
    skipped: dict[str, str] = field(default_factory=dict)
    server: subprocess.Popen | None = None  # `chainlake spark-server`, when started
    server_url: str = ""

    def warm_server(self) -> subprocess.Popen:
        """`chainlake spark-server` as `make dev` runs it (idle PySpark daemons reaped), started
        once and warmed up with a 10-block ingest: its start is not counted (like the node's),
        its CPU during a run and its memory after it are."""
        from ingestion.devnet import free_port

        port = free_port()
        self.server_url = f"sc://127.0.0.1:{port}"
        self.server = subprocess.Popen([str(BIN / "chainlake"), "spark-server", "--port",
                                        str(port)], stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True,
                                       start_new_session=True)
        line = self.server.stdout.readline()
        if "listening" not in line:
            self.stop()
            raise SystemExit(f"chainlake spark-server did not start: {line!r}")
        with tempfile.TemporaryDirectory(prefix="sbs-warmup-") as scratch:
            subprocess.run([str(BIN / "chainlake"), "ingest", "--rpc-url", self.node.url,
                            "--lake", f"{scratch}/lake", "--start-block", "0", "--end-block",
                            "10", "--confirmations", "0", "--datasets", DATASETS],
                           check=True, capture_output=True,
                           env={**os.environ, "CHAINLAKE_SPARK_REMOTE": self.server_url})
        return self.server

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            from ingestion.processes import stop_group

            stop_group(server, timeout=30)


def _first_line(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"? ({err})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _lake_counts(lake: Path) -> tuple[int, int, int] | None:
    from deltalake import DeltaTable

    try:
        return tuple(DeltaTable(str(lake / "bronze" / name)).to_pyarrow_dataset().count_rows()
                     for name in ("blocks", "transactions", "logs"))  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - a failed run may have left no table
        return None


def _parquet_counts(out: Path, _output: str) -> tuple[int, int, int] | None:
    import pyarrow.parquet as pq

    counts = []
    for kind in ("blocks", "transactions", "logs"):
        files = list(out.glob(f"*__{kind}__*.parquet"))
        if not files:
            return None
        counts.append(sum(pq.ParquetFile(f).metadata.num_rows for f in files))
    return tuple(counts)  # type: ignore[return-value]


def _csv_counts(out: Path, _output: str) -> tuple[int, int, int] | None:
    def rows(name: str) -> int:
        with open(out / name, "rb") as f:
            return sum(1 for _ in f) - 1

    try:
        return rows("blocks.csv"), rows("transactions.csv"), rows("logs.csv")
    except OSError:
        return None


def _bare_counts(_out: Path, output: str) -> tuple[int, int, int] | None:
    m = re.search(r"bare reader: (\d+) blocks, (\d+) transactions, (\d+) logs", output)
    return tuple(int(g) for g in m.groups()) if m else None  # type: ignore[return-value]


def build_tools(setup: Setup, wanted: list[str]) -> list[Tool]:
    node, peers = setup.node, setup.peers
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    tools: list[Tool] = []

    if "bare" in wanted:
        tools.append(Tool("bare", "bare orjson reader", lambda s, e, d: (
            [sys.executable, str(BENCH / "measure.py"), "bare-read", node.url, str(s), str(e)],
            base_env, d), _bare_counts, f"httpx {md.version('httpx')}, orjson "
            f"{md.version('orjson')}"))

    if "cryo" in wanted:
        python = peers / "cryo" / "bin" / "python"
        if not python.exists():
            python = Path(sys.executable)
        version = _first_line([str(python), "-c", "import cryo; print(cryo.__version__)"])
        if re.fullmatch(r"[\w.]+", version):
            tools.append(Tool("cryo", f"cryo {version}", lambda s, e, d, py=python: (
                [str(py), "-c", CRYO_SNIPPET, node.url, str(s), str(e), str(d)], base_env, d),
                _parquet_counts, f"cryo {version}"))
        else:
            setup.skipped["cryo"] = (f"cryo not importable from {peers / 'cryo'} nor this venv "
                                     f"({version}); --install-peers installs it from PyPI")

    if "etl" in wanted:
        etl = peers / "etl" / "bin" / "ethereumetl"
        version = _first_line([str(etl), "--version"]) if etl.exists() else "absent"
        if etl.exists() and "version" in version:
            label = f"ethereum-etl {version.split()[-1]}"
            tools.append(Tool("etl", label, lambda s, e, d: (
                ["sh", "-c", ETL_SCRIPT, "etl", str(etl), node.url, str(s), str(e - 1)],
                base_env, d), _csv_counts, label))
        else:
            setup.skipped["etl"] = (f"ethereum-etl not found or not working at {etl} ({version}); "
                                    f"--install-peers installs it (with parsimonious==0.9.0)")

    def ingest_command(s: int, e: int, d: Path) -> list[str]:
        return [str(BIN / "chainlake"), "ingest", "--rpc-url", node.url, "--lake",
                str(d / "lake"), "--start-block", str(s), "--end-block", str(e),
                "--chain-id", str(node.chain_id), "--confirmations", "0", "--datasets", DATASETS]

    if "chainlake" in wanted:
        tools.append(Tool("chainlake", "chainlake ingest",
                          lambda s, e, d: (ingest_command(s, e, d), base_env, d),
                          lambda d, _o: _lake_counts(d / "lake"),
                          f"chainlake {md.version('chainlake')}"))

    if "validated" in wanted:
        def validated(s: int, e: int, d: Path) -> tuple[list[str], dict[str, str], Path]:
            validate = [str(BIN / "chainlake"), "validate", "--lake", str(d / "lake"),
                        "--start-block", str(s), "--end-block", str(e),
                        "--chain-id", str(node.chain_id)]
            script = f"{shlex.join(ingest_command(s, e, d))} && {shlex.join(validate)}"
            return (["sh", "-c", script], base_env, d)

        tools.append(Tool("validated", "chainlake ingest, then chainlake validate", validated,
                          lambda d, _o: _lake_counts(d / "lake")))

    if "warm" in wanted:
        server = setup.warm_server()
        server_url = setup.server_url
        tools.append(Tool("warm", "chainlake ingest, warm Spark", lambda s, e, d: (
            ingest_command(s, e, d), {**base_env, "CHAINLAKE_SPARK_REMOTE": server_url}, d),
            lambda d, _o: _lake_counts(d / "lake"), server_pid=server.pid))

    if "dagster" in wanted:
        def dagster(s: int, e: int, d: Path) -> tuple[list[str], dict[str, str], Path]:
            size = setup.partition_size
            keys = [span.key for span in spans_through(e - 1, size, first_block=s)]
            home = d / "dagster_home"
            home.mkdir()
            shutil.copyfile(REPO / "config" / "dagster.yaml", home / "dagster.yaml")
            env = {**base_env, "CHAINLAKE_RPC_URL": node.url, "CHAINLAKE_PARTITION_SIZE": str(size),
                   "DAGSTER_HOME": str(home), "CHAINLAKE_LAKE_URI": str(d / "lake"),
                   "CHAINLAKE_DATASETS": DATASETS}
            subprocess.run([sys.executable, "-c", ADD_PARTITIONS, *keys], cwd=REPO, env=env,
                           check=True, capture_output=True)
            return ([str(BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions",
                     "--select", BRONZE_SELECTION,
                     "--partition-range", f"{keys[0]}...{keys[-1]}"], env, REPO)

        tools.append(Tool("dagster", "Dagster backfill (1 run)", dagster,
                          lambda d, _o: _lake_counts(d / "lake"),
                          f"dagster {md.version('dagster')}"))

    def no_rows(_d: Path, _o: str) -> None:
        return None

    if "spark-floor" in wanted:
        tools.append(Tool("spark-floor", "a one-row Python data source stream, local Spark",
                          lambda s, e, d: ([sys.executable, "-c", SPARK_FLOOR, str(d / "cp")],
                                           base_env, REPO), no_rows, floor=True))
    if "dagster-floor" in wanted:
        def dagster_floor(s: int, e: int, d: Path) -> tuple[list[str], dict[str, str], Path]:
            home = d / "dagster_home"
            home.mkdir()
            shutil.copyfile(REPO / "config" / "dagster.yaml", home / "dagster.yaml")
            (d / "floor_defs.py").write_text(DAGSTER_FLOOR)
            return ([str(BIN / "dagster"), "asset", "materialize", "-f", str(d / "floor_defs.py"),
                     "--select", "nothing"], {**base_env, "DAGSTER_HOME": str(home)}, d)

        tools.append(Tool("dagster-floor", "`dagster asset materialize` of an empty asset",
                          dagster_floor, no_rows, floor=True))
    for name, code in (("imports", RUN_IMPORTS),
                       ("imports-gx", f"{RUN_IMPORTS}; import great_expectations")):
        if name in wanted:
            tools.append(Tool(name, f"python -c {code!r}", lambda s, e, d, c=code: (
                [sys.executable, "-c", c], base_env, d), no_rows, floor=True))
    return tools


def run_tool(tool: Tool, node: Node, start: int, end: int, timeout: float) -> Run:
    with tempfile.TemporaryDirectory(prefix=f"sbs-{tool.name}-") as scratch:
        out = Path(scratch)
        cmd, env, cwd = tool.prepare(start, end, out)
        node_before = tree_cpu(node.pid)
        server_before = tree_cpu(tool.server_pid) if tool.server_pid else 0.0
        m = MeasuredTree(cmd, env=env, cwd=str(cwd), timeout=timeout).run()
        node_cpu = tree_cpu(node.pid) - node_before
        if tool.server_pid:  # the warm server's work for this run is the tool's, and its memory
            m.cpu_s += tree_cpu(tool.server_pid) - server_before
            m.peak_rss += tree_rss(tool.server_pid)
        counts = tool.count(out, m.output)
    ok = m.returncode == 0 and not m.timed_out and (
        tool.floor or (counts is not None and counts[0] == end - start))
    note = "" if ok else ("timed out" if m.timed_out else f"exit {m.returncode}, rows {counts}")
    if not ok:
        tail = "\n    ".join(m.output.strip().splitlines()[-15:])
        print(f"  !! {tool.name} failed ({note}):\n    {tail}", flush=True)
    return Run(tool.name, end - start, m.wall_s, m.cpu_s, m.peak_rss, node_cpu, counts, ok,
               m.method.split(" (")[0] if m.method.startswith("cgroup") else m.method, note)


# ---------------------------------------------------------------------------------------------
# Report


def environment(setup: Setup, tools: list[Tool]) -> list[str]:
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    java = _first_line(["java", "-version"])
    versions = ", ".join(t.version for t in tools if t.version)
    libs = ", ".join(f"{name} {md.version(name)}" for name in ("pyspark", "deltalake"))
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; memory {mem}; "
        f"load average at start {load}",
        f"Python {platform.python_version()}, {libs}, {java}",
        f"tools: {versions}",
        f"node: {setup.node.description}" + (f" [{setup.node.version}]"
                                             if setup.node.version != "chainlake-replay" else ""),
    ]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def table(runs: list[Run], tools: list[Tool], short: int, long: int) -> list[str]:
    def fmt(v: float, digits: int = 1) -> str:
        return "–" if math.isnan(v) else f"{v:,.{digits}f}"

    rows, marginals = [], {}
    for tool in tools:
        by = {n: [r for r in runs if r.tool == tool.name and r.blocks == n and r.ok]
              for n in (short, long)}
        wall = {n: _median([r.wall_s for r in by[n]]) for n in by}
        cpu = {n: _median([r.cpu_s for r in by[n]]) for n in by}
        marginal = (cpu[long] - cpu[short]) / (long - short)
        marginals[tool.name] = marginal
        rows.append((tool, {n: n / wall[n] for n in by}, cpu[long] / long * 1000,
                     marginal * 1000, cpu[short] - marginal * short,
                     max((r.peak_rss for r in by[long]), default=0) / 2**20,
                     _median([r.node_cpu_s for r in by[long]]) / long * 1000,
                     len(by[short]), len(by[long])))
    bare = marginals.get("bare", math.nan)
    lines = [
        f"| tool | blocks/s {short:,} | blocks/s {long:,} | CPU-s/1k blocks ({long:,}) | "
        f"marginal CPU-s/1k blocks | ×bare | fixed CPU-s/run | peak RSS ({long:,}) | "
        f"node CPU-s/1k blocks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, rate, per_k, marginal_k, fixed, rss, node_k, n_short, n_long in rows:
        ratio = marginal_k / 1000 / bare if bare and not math.isnan(bare) else math.nan
        runs_note = "" if n_short and n_long else " (failed)"
        lines.append(
            f"| {tool.label}{runs_note} | {fmt(rate[short], 0)} | {fmt(rate[long], 0)} | "
            f"{fmt(per_k)} | {fmt(marginal_k)} | {fmt(ratio)} | {fmt(fixed)} | "
            f"{fmt(rss, 0)} MiB | {fmt(node_k, 2)} |")
    return lines


def floors(runs: list[Run], floor_tools: list[Tool], long: int) -> list[str]:
    """The floor tools' figures, and the bounds they set on the long range on this machine."""
    def median(name: str, attr: str) -> float:
        return _median([getattr(r, attr) for r in runs if r.tool == name and r.ok
                        and (r.blocks == long or name in FLOORS)])

    lines = ["| floor (no blocks) | wall s | CPU-s | peak RSS |", "|---|---:|---:|---:|"]
    for tool in floor_tools:
        ok = [r for r in runs if r.tool == tool.name and r.ok]
        lines.append(f"| {tool.label} | {median(tool.name, 'wall_s'):.2f} | "
                     f"{median(tool.name, 'cpu_s'):.2f} | "
                     f"{max((r.peak_rss for r in ok), default=0) / 2**20:,.0f} MiB |")
    cores = os.cpu_count() or 1
    bare_wall, bare_cpu, bare_node = (median("bare", a) for a in ("wall_s", "cpu_s", "node_cpu_s"))
    cl_wall, cl_cpu, cl_node = (median("chainlake", a) for a in ("wall_s", "cpu_s", "node_cpu_s"))
    spark_wall, spark_cpu = median("spark-floor", "wall_s"), median("spark-floor", "cpu_s")
    lines.append("")
    if not math.isnan(cl_wall):
        lines.append(f"- `chainlake ingest` of {long:,} blocks: {cl_cpu:.1f} CPU-s of its tree + "
                     f"{cl_node:.1f} of the node in {cl_wall:.2f} s: {(cl_cpu + cl_node) / cl_wall:.2f}"
                     f" of {cores} cores busy on average.")
    if not any(math.isnan(v) for v in (bare_wall, spark_wall)):
        # A local-Spark ingest does at least the floor's work, the bare reader's parsing and
        # makes the node do the same work; it cannot end before the floor's query does.
        bound = max(spark_wall, (spark_cpu + bare_cpu + bare_node) / cores)
        lines.append(
            f"- Any ingest through a local Spark query takes at least max(the Spark floor's "
            f"{spark_wall:.2f} s, (its {spark_cpu:.1f} + the bare reader's {bare_cpu:.1f} + the "
            f"node's {bare_node:.1f} CPU-s) / {cores} cores) = {bound:.2f} s for {long:,} blocks: "
            f"at best {bare_wall / bound:.2f}× the bare reader's {bare_wall:.2f} s"
            + (f" (`chainlake ingest`: {bare_wall / cl_wall:.2f}×)." if not math.isnan(cl_wall)
               else "."))
    dagster_cpu = median("dagster-floor", "cpu_s")
    gx_cpu = median("imports-gx", "cpu_s") - median("imports", "cpu_s")
    if not any(math.isnan(v) for v in (cl_wall, dagster_cpu, gx_cpu)):
        bound = max(cl_wall, (cl_cpu + cl_node + dagster_cpu + gx_cpu) / cores)
        dag_wall = median("dagster", "wall_s")
        lines.append(
            f"- A Dagster run of the same range does the CLI's work plus Dagster's own start and "
            f"run ({dagster_cpu:.1f} CPU-s) and the great_expectations import of its checks "
            f"({gx_cpu:.1f} CPU-s), before the suite itself: at least max({cl_wall:.2f} s, "
            f"({cl_cpu:.1f} + {cl_node:.1f} + {dagster_cpu:.1f} + {gx_cpu:.1f}) / {cores}) = "
            f"{bound:.2f} s: at best {cl_wall / bound:.2f}× the CLI"
            + (f" (measured: {cl_wall / dag_wall:.2f}×)." if not math.isnan(dag_wall) else "."))
    return lines


# ---------------------------------------------------------------------------------------------


def install_peers(peers: Path) -> None:
    """cryo and ethereum-etl (+ parsimonious 0.9.0 for Python 3.11) in venvs of their own."""
    for name, packages in (("cryo", [["cryo"]]),
                           ("etl", [["ethereum-etl"], ["--no-deps", "parsimonious==0.9.0"]])):
        venv = peers / name
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for args in packages:
            print(f"pip install {' '.join(args)} into {venv}", flush=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *args], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=int, default=300, help="blocks in the short range")
    parser.add_argument("--long", type=int, default=3_000, help="blocks in the long range")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--node", choices=("replay", "anvil"), default="replay")
    parser.add_argument("--txs-per-block", type=int, default=50, help="anvil chain only")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated subset of {','.join(TOOLS)}")
    parser.add_argument("--partition-size", type=int, default=None,
                        help="Dagster partition size (default: gcd of --short and --long)")
    parser.add_argument("--peers", type=Path, default=PEERS_DEFAULT,
                        help="where the cryo/ and etl/ virtualenvs are (CHAINLAKE_PEERS)")
    parser.add_argument("--floors", action="store_true",
                        help=f"also measure {', '.join(FLOORS)} and print the bounds they set")
    parser.add_argument("--install-peers", action="store_true",
                        help="create the cryo and ethereum-etl virtualenvs with pip first")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    args = parser.parse_args()
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    wanted += list(FLOORS) if args.floors else []
    if unknown := set(wanted) - set(TOOLS) - set(FLOORS):
        parser.error(f"unknown tools {sorted(unknown)}")
    if not 0 < args.short < args.long:
        parser.error("need 0 < --short < --long")
    partition_size = args.partition_size or math.gcd(args.short, args.long)
    if args.short % partition_size or args.long % partition_size:
        parser.error("--short and --long must be multiples of --partition-size")
    if args.install_peers:
        install_peers(args.peers)

    start = 0
    if args.node == "replay":
        # beyond the long range by more than mainnet's 64 confirmations (the Dagster run uses them)
        node = start_replay_node(args.long + 1_000)
    else:
        node = start_anvil(args.long, args.txs_per_block)
    setup = Setup(node, args.peers, partition_size)
    try:
        tools = build_tools(setup, wanted)
        header = environment(setup, tools)
        for line in header:
            print(line, flush=True)
        runs: list[Run] = []
        for rnd in range(args.rounds if tools else 0):
            order = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
            for tool in order:
                sizes = (args.short, args.long) if rnd % 2 == 0 else (args.long, args.short)
                sizes = sizes[:1] if tool.floor else sizes
                for n in sizes:
                    run = run_tool(tool, node, start, start + n, args.timeout)
                    runs.append(run)
                    print(f"round {rnd + 1} {tool.name:<10} {n:>6,} blocks: {run.wall_s:7.1f}s "
                          f"{n / run.wall_s:7.0f} blocks/s  CPU {run.cpu_s:7.1f}s  "
                          f"RSS {run.peak_rss / 2**20:6,.0f} MiB  node CPU {run.node_cpu_s:5.1f}s"
                          f"  rows {run.counts}{'' if run.ok else '  FAILED ' + run.note}",
                          flush=True)
        reference = {r.blocks: r.counts for r in runs if r.tool == "bare" and r.ok}
        mismatched = sorted({f"{r.tool} ({r.blocks:,} blocks: {r.counts} vs {reference[r.blocks]})"
                             for r in runs if r.ok and r.blocks in reference
                             and r.tool not in FLOORS and r.counts != reference[r.blocks]})
    finally:
        setup.stop()
        node.stop()

    print()
    for line in header:
        print(line)
    print(f"{args.rounds} round(s), medians; ranges [0, {args.short:,}) and [0, {args.long:,}); "
          f"Dagster partitions of {partition_size:,} blocks; whole-tree CPU by "
          f"{'; '.join(sorted({r.method for r in runs}))}")
    print()
    for line in table(runs, [t for t in tools if not t.floor], args.short, args.long):
        print(line)
    if any(t.floor for t in tools):
        print()
        for line in floors(runs, [t for t in tools if t.floor], args.long):
            print(line)
    for name, why in setup.skipped.items():
        print(f"\nskipped {name}: {why}")
    if mismatched:
        print("\nrow counts differing from the bare reader's: " + "; ".join(mismatched))
    if any(not r.ok for r in runs):
        print("\nfailed runs: " + "; ".join(f"{r.tool} {r.blocks:,} ({r.note})"
                                            for r in runs if not r.ok))


if __name__ == "__main__":
    main()
