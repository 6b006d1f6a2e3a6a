"""Traces on the devnet beside a bare debug_traceBlockByNumber reader.

    .venv/bin/python benchmarks/traces.py [--blocks 400] [--rounds 2] [--apis geth,parity]
        [--txs-per-block 20] [--lab-calls-per-block 14] [--per-request 8]

The chain (built once, on a devnet this script starts and stops: ingestion.devnet.Devnet with
--hardfork cancun, like every benchmark chain; anvil with --max-persisted-states 0):
  * the first half of --blocks: ingestion.devnet.traffic.generate_load, --txs-per-block ETH and
    ERC-20 transfers per block from impersonated senders (one call frame per transaction);
  * then a block deploying TraceLab and a TraceChild (ingestion.devnet.contracts, the contracts
    of generate_coverage's call-trace shapes), and blocks of --lab-calls-per-block TraceLab calls
    from anvil's unlocked dev accounts, cycling through generate_coverage's TRACE_SHAPES: calls
    nested four deep carrying value with a DELEGATECALL and a STATICCALL at the bottom, CREATE and
    CREATE2 from a contract, an inner revert caught, a top-level revert after nested calls,
    SELFDESTRUCT of a new and of an older contract. (generate_coverage itself needs prague,
    EIP-7702, and so cannot run on the cancun benchmark chain; its shapes are mined the same way,
    from unlocked senders instead of signed transactions.)
Every block [1, head] is measured (block 0 is the empty genesis).

The readers, each a separate process tree over the same blocks, for each API of --apis
(geth: debug_traceBlockByNumber(n, {"tracer": "callTracer"}); parity: trace_block(n)):
  bare       `python benchmarks/traces.py bare API URL START END`: batched trace requests of
             --per-request blocks (8, as fetch_traces) over one keep-alive httpx connection,
             orjson parse, count the frames, discard: the floor.
  pure       `python benchmarks/traces.py pure API URL START END`: chainlake's path without Spark,
             what a Spark task does per round trip: RpcClient.get_blocks(n, False) for the headers
             (25 blocks a round trip, as the source), fetch_traces, then traces_from_geth /
             traces_from_parity into Arrow rows (checked against the headers), discarded.
  chainlake  `.venv/bin/chainlake ingest --datasets traces --trace-api API --confirmations 0`
             into a fresh lake: Spark start, the availableNow stream, Delta writes of
             bronze/blocks and bronze/traces, Spark stop.
Rounds are interleaved (--rounds, default 2): every reader once per round, the order rotating.

Figures, medians over the rounds:
  blocks/s, traces/s  the range's blocks (and the reader's trace rows) / wall time of the whole
                      run, interpreter and Spark start-up included.
  after start-up      blocks / seconds of the reading itself: the loop for bare and pure, the
                      streaming query (chainlake's own "done ... in Ns") for chainlake.
  CPU-s/1k blocks     CPU seconds (user + system) of the reader's whole process tree per 1,000
                      blocks, start-up included: a fresh cpuacct cgroup joined before the first
                      instruction (benchmarks/measure.py MeasuredTree), /proc without one (noted).
  ×bare               that CPU / the bare reader's of the same API.
  CPU-s/run           the same, per run: at a few hundred blocks, mostly start-up (Python
                      imports; for chainlake the JVM, the Spark session and Python workers).
  loop CPU-s/1k       bare and pure only: CPU of the reading loop alone (time.process_time of
                      the one process), start-up excluded: what each more block costs.
  peak RSS            largest sum of the RSS of the tree's processes (sampled every 50 ms; the
                      largest over the rounds).
  node CPU-s/1k       CPU of anvil during the run per 1,000 blocks. On anvil 1.7.1 debug_trace-
                      BlockByNumber costs ~9 CPU-s per 1,000 of these blocks (it re-executes
                      them; the geth runs are node-bound), trace_block ~0.2 (apparently served
                      from traces kept when mining).
Trace counts are checked across readers of the same API (bare frames = pure rows = lake rows).
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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from measure import MeasuredTree, tree_cpu  # noqa: E402

BIN = Path(sys.executable).parent
APIS = ("geth", "parity")
READERS = ("bare", "pure", "chainlake")
METHOD = {"geth": "debug_traceBlockByNumber", "parity": "trace_block"}
CALL_TRACER = {"tracer": "callTracer"}
SOURCE_BLOCKS_PER_REQUEST = 25  # ingestion.settings.DEFAULT_RPC_BLOCKS_PER_REQUEST


def _params(api: str, number: int) -> list:
    return [hex(number), CALL_TRACER] if api == "geth" else [hex(number)]


# ---------------------------------------------------------------------------------------------
# The two readers without Spark (each runs as `traces.py bare|pure ...`, a process of its own)


def bare_traces(api: str, url: str, start: int, end: int, per_request: int) -> tuple[int, int]:
    """Blocks ``[start, end)`` traced with ``api``, ``per_request`` blocks per HTTP request, parsed
    with orjson and thrown away. Returns (blocks, traces): call frames (geth) or trace items
    (parity), what becomes one row each."""
    import httpx
    import orjson

    method = METHOD[api]
    blocks = traces = 0
    with httpx.Client(timeout=300.0, headers={"content-type": "application/json"}) as http:
        for a in range(start, end, per_request):
            body = orjson.dumps([{"jsonrpc": "2.0", "id": i, "method": method,
                                  "params": _params(api, n)}
                                 for i, n in enumerate(range(a, min(a + per_request, end)))])
            reply = orjson.loads(http.post(url, content=body).content)
            for item in reply:
                result = item["result"]  # a KeyError on an error reply: the run fails
                blocks += 1
                if api == "parity":
                    traces += len(result)
                    continue
                stack = [tx["result"] for tx in result]
                while stack:
                    frame = stack.pop()
                    traces += 1
                    stack.extend(frame.get("calls") or ())
    return blocks, traces


def pure_traces(api: str, url: str, start: int, end: int) -> tuple[int, int]:
    """chainlake's trace path without Spark, as ``ingestion.source.read_range`` runs it for the
    traces dataset (headers, traces, Arrow rows), rows discarded. Returns (blocks, rows)."""
    from ingestion.datasets.traces import fetch_traces, traces_from_geth, traces_from_parity
    from ingestion.rpc import RpcClient

    build = traces_from_geth if api == "geth" else traces_from_parity
    blocks = rows = 0
    with RpcClient(url) as client:
        chain_id = client.chain_id()
        for a in range(start, end, SOURCE_BLOCKS_PER_REQUEST):
            numbers = range(a, min(a + SOURCE_BLOCKS_PER_REQUEST, end))
            headers = client.get_blocks(numbers, False)
            replies = fetch_traces(client, numbers, api)
            batch = build(chain_id, headers, replies)
            blocks += len(headers)
            rows += batch.num_rows
    return blocks, rows


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="traces.py bare|pure")
    parser.add_argument("reader", choices=("bare", "pure"))
    parser.add_argument("api", choices=APIS)
    parser.add_argument("url")
    parser.add_argument("start", type=int)
    parser.add_argument("end", type=int)
    parser.add_argument("--per-request", type=int, default=8)
    args = parser.parse_args(argv)
    began, cpu_began = time.monotonic(), time.process_time()
    if args.reader == "bare":
        blocks, traces = bare_traces(args.api, args.url, args.start, args.end, args.per_request)
    else:
        blocks, traces = pure_traces(args.api, args.url, args.start, args.end)
    print(f"{args.reader} {args.api}: {blocks} blocks, {traces} traces, "
          f"loop {time.monotonic() - began:.3f}s, CPU {time.process_time() - cpu_began:.3f}s",
          flush=True)


# ---------------------------------------------------------------------------------------------
# The chain

TRACE_CALL_GAS = 500_000  # as generate_coverage (each TraceLab call uses under 100k)
DEPLOY_GAS = 1_500_000
CHECK_EVERY = 50  # blocks between checks that the pool drained


def _word(value: int) -> str:
    return f"{value:064x}"


def _address_word(address: str) -> str:
    return "0" * 24 + address.lower().removeprefix("0x")


class _Rpc:
    """Plain JSON-RPC with arrays (results in call order; any error raises)."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.http = httpx.Client(timeout=120.0, headers={"content-type": "application/json"})

    def batch(self, calls: list[tuple[str, list]]) -> list:
        import orjson

        if not calls:
            return []
        body = orjson.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                             for i, (m, p) in enumerate(calls)])
        reply = self.http.post(self.url, content=body)
        reply.raise_for_status()
        answers = sorted(orjson.loads(reply.content), key=lambda a: a["id"])
        for answer in answers:
            if answer.get("error"):
                raise RuntimeError(f"{calls[answer['id']][0]} failed: {answer['error']}")
        return [answer["result"] for answer in answers]

    def call(self, method: str, *params):
        return self.batch([(method, list(params))])[0]

    def close(self) -> None:
        self.http.close()


@dataclass
class LabChain:
    blocks: int
    transactions: int
    shapes: dict[str, int]


def mine_lab_blocks(url: str, blocks: int, calls_per_block: int) -> LabChain:
    """One block deploying TraceLab and a TraceChild ("elder"), then ``blocks - 1`` blocks of
    ``calls_per_block`` calls making generate_coverage's call-trace shapes in turn, from anvil's
    unlocked dev accounts with explicit nonces. The first shape block's receipts are checked
    (only top_level_revert fails), and every CHECK_EVERY blocks that the pool drained."""
    from ingestion.devnet import contracts
    from ingestion.devnet.traffic import (
        MAX_FEE_PER_GAS,
        MAX_PRIORITY_FEE_PER_GAS,
        TRACE_SHAPES,
        TRACE_VALUE,
    )

    rpc = _Rpc(url)
    try:
        senders = rpc.call("eth_accounts")[:10]
        payee = senders[-1]
        nonces = dict(zip(senders, (int(n, 16) for n in rpc.batch(
            [("eth_getTransactionCount", [s, "pending"]) for s in senders])), strict=True))
        fees = {"maxFeePerGas": hex(MAX_FEE_PER_GAS),
                "maxPriorityFeePerGas": hex(MAX_PRIORITY_FEE_PER_GAS)}

        def tx(sender: str, to: str | None, data: str, gas: int, value: int) -> tuple[str, list]:
            nonce = nonces[sender]
            nonces[sender] = nonce + 1
            body = {"from": sender, "nonce": hex(nonce), "gas": hex(gas), "value": hex(value),
                    "data": data, **fees}
            if to is not None:
                body["to"] = to
            return "eth_sendTransaction", [body]

        def mine(calls: list[tuple[str, list]]) -> list[str]:
            # evm_mine apart: anvil runs an array's members concurrently
            hashes = rpc.batch(calls)
            rpc.call("evm_mine")
            return hashes

        rpc.call("evm_setAutomine", False)
        try:
            deployer = senders[0]
            hashes = mine([tx(deployer, None, contracts.TRACE_LAB_BYTECODE, DEPLOY_GAS, 0),
                           tx(deployer, None, contracts.TRACE_CHILD_BYTECODE, DEPLOY_GAS,
                              TRACE_VALUE)])
            lab, elder = (r["contractAddress"] for r in rpc.batch(
                [("eth_getTransactionReceipt", [h]) for h in hashes]))
            shape_data = {
                "nested_calls": (lab, lambda _: contracts.SELECTOR_NEST + _word(3)
                                 + _address_word(payee)),
                "create_from_contract": (lab, lambda _: contracts.SELECTOR_CREATE_CHILD),
                "create2_from_contract": (lab, lambda k: contracts.SELECTOR_CREATE2_CHILD
                                          + _word(k)),  # a fresh salt each time
                "inner_revert": (lab, lambda _: contracts.SELECTOR_TRY_FAIL),
                "top_level_revert": (lab, lambda _: contracts.SELECTOR_BOOM
                                     + _address_word(payee)),
                "selfdestruct_new": (lab, lambda _: contracts.SELECTOR_CREATE_AND_DESTROY
                                     + _address_word(payee)),
                "selfdestruct_old": (elder, lambda _: contracts.SELECTOR_DESTROY
                                     + _address_word(payee)),
            }
            assert set(shape_data) == set(TRACE_SHAPES)
            shapes = {"create": 2}
            k = 0
            for done in range(1, blocks):
                calls, planned = [], []
                for _ in range(calls_per_block):
                    shape = TRACE_SHAPES[k % len(TRACE_SHAPES)]
                    to, data = shape_data[shape]
                    calls.append(tx(senders[k % len(senders)], to, data(k), TRACE_CALL_GAS,
                                    TRACE_VALUE))
                    planned.append(shape)
                    shapes[shape] = shapes.get(shape, 0) + 1
                    k += 1
                hashes = mine(calls)
                if done == 1:
                    receipts = rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
                    for shape, receipt in zip(planned, receipts, strict=True):
                        expected = 0 if shape == "top_level_revert" else 1
                        if int(receipt["status"], 16) != expected:
                            raise RuntimeError(f"{shape} transaction {receipt['transactionHash']} "
                                               f"has status {int(receipt['status'], 16)}")
                if done % CHECK_EVERY == 0 or done == blocks - 1:
                    status = rpc.call("txpool_status")
                    mined = int(rpc.call("eth_getBlockTransactionCountByNumber", "latest"), 16)
                    if int(status["pending"], 16) or int(status["queued"], 16) \
                            or mined != calls_per_block:
                        raise RuntimeError(f"pool {status}, last block holds {mined} "
                                           f"transactions, expected {calls_per_block}")
        finally:
            rpc.call("evm_setAutomine", True)
    finally:
        rpc.close()
    return LabChain(blocks, 2 + (blocks - 1) * calls_per_block, shapes)


@dataclass
class Chain:
    url: str
    chain_id: int
    pid: int
    head: int
    description: str
    anvil: str


def build_chain(devnet, blocks: int, txs_per_block: int, lab_calls: int) -> Chain:
    from ingestion.devnet import find_anvil
    from ingestion.devnet.traffic import generate_load

    load_blocks = blocks // 2
    began = time.monotonic()
    load = generate_load(devnet.url, blocks=load_blocks, txs_per_block=txs_per_block)
    lab = mine_lab_blocks(devnet.url, blocks - load_blocks, lab_calls)
    head = devnet.head()
    shapes = ", ".join(f"{n:,} {s}" for s, n in sorted(lab.shapes.items()))
    description = (f"anvil --hardfork cancun, blocks 1..{head:,}: {load_blocks:,} blocks × "
                   f"{txs_per_block} transfers (generate_load, {load.transactions:,} txs), then "
                   f"{lab.blocks:,} TraceLab blocks ({lab.transactions:,} txs: {shapes})")
    print(f"chain built in {time.monotonic() - began:.0f}s: {description}", flush=True)
    return Chain(devnet.url, devnet.chain_id, devnet.process.pid, head, description,
                 _first_line([find_anvil(), "--version"]))


# ---------------------------------------------------------------------------------------------
# Measured runs


@dataclass
class Run:
    reader: str
    api: str
    blocks: int
    wall_s: float
    cpu_s: float
    peak_rss: int
    node_cpu_s: float
    traces: int | None
    work_s: float | None  # the reading itself, start-up excluded
    loop_cpu_s: float | None  # CPU of the reading loop (bare and pure: one process)
    ok: bool
    method: str
    note: str = ""


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"? ({err})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _lake_rows(lake: Path) -> tuple[int, int] | None:
    from deltalake import DeltaTable

    try:
        return tuple(DeltaTable(str(lake / "bronze" / name)).to_pyarrow_dataset().count_rows()
                     for name in ("blocks", "traces"))  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - a failed run may have left no table
        return None


def run_reader(reader: str, api: str, chain: Chain, start: int, end: int, per_request: int,
               timeout: float) -> Run:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with tempfile.TemporaryDirectory(prefix=f"traces-{reader}-") as scratch:
        lake = Path(scratch) / "lake"
        if reader == "chainlake":
            cmd = [str(BIN / "chainlake"), "ingest", "--rpc-url", chain.url, "--lake", str(lake),
                   "--start-block", str(start), "--end-block", str(end), "--chain-id",
                   str(chain.chain_id), "--confirmations", "0", "--datasets", "traces",
                   "--trace-api", api]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), reader, api, chain.url,
                   str(start), str(end), "--per-request", str(per_request)]
        node_before = tree_cpu(chain.pid)
        m = MeasuredTree(cmd, env=env, cwd=scratch, timeout=timeout).run()
        node_cpu = tree_cpu(chain.pid) - node_before
        blocks = traces = work_s = loop_cpu = None
        if reader == "chainlake":
            if (rows := _lake_rows(lake)) is not None:
                blocks, traces = rows
            if found := re.search(r"chainlake ingest: done .* in ([\d.]+)s \(", m.output):
                work_s = float(found.group(1))
            for line in m.output.splitlines():  # per micro-batch: rows, task seconds by stage
                if line.startswith("  batch "):
                    print(f"    chainlake {api}{line}", flush=True)
        elif found := re.search(r": (\d+) blocks, (\d+) traces, loop ([\d.]+)s, CPU ([\d.]+)s",
                                m.output):
            blocks, traces = int(found.group(1)), int(found.group(2))
            work_s, loop_cpu = float(found.group(3)), float(found.group(4))
    ok = m.returncode == 0 and not m.timed_out and blocks == end - start
    note = "" if ok else ("timed out" if m.timed_out else f"exit {m.returncode}, blocks {blocks}")
    if not ok:
        tail = "\n    ".join(m.output.strip().splitlines()[-15:])
        print(f"  !! {reader} {api} failed ({note}):\n    {tail}", flush=True)
    method = m.method.split(" (")[0] if m.method.startswith("cgroup") else m.method
    return Run(reader, api, end - start, m.wall_s, m.cpu_s, m.peak_rss, node_cpu, traces, work_s,
               loop_cpu, ok, method, note)


# ---------------------------------------------------------------------------------------------
# Report

LABELS = {"bare": "bare httpx + orjson reader (parse, count, discard)",
          "pure": "chainlake without Spark (fetch_traces + traces_from_{api})",
          "chainlake": "`chainlake ingest --datasets traces --trace-api {api}`"}


def environment(chain: Chain) -> list[str]:
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    libs = ", ".join(f"{name} {md.version(name)}"
                     for name in ("chainlake", "pyspark", "deltalake", "pyarrow", "httpx", "orjson"))
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; memory {mem}; "
        f"load average at start {load}",
        f"Python {platform.python_version()}, {libs}, {_first_line(['java', '-version'])}, "
        f"{chain.anvil}",
        f"node: {chain.description}",
    ]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _fmt(v: float, digits: int = 1) -> str:
    return "–" if math.isnan(v) else f"{v:,.{digits}f}"


def table(runs: list[Run], apis: list[str], readers: list[str], blocks: int) -> list[str]:
    lines = [
        f"| reader ({blocks:,} blocks) | blocks/s | traces/s | blocks/s after start-up | "
        f"CPU-s/1k blocks | ×bare CPU | CPU-s/run | loop CPU-s/1k blocks | peak RSS | "
        f"node CPU-s/1k blocks | traces |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for api in apis:
        bare_cpu = math.nan
        for reader in (r for r in READERS if r in readers):
            mine = [r for r in runs if r.reader == reader and r.api == api and r.ok]
            wall = _median([r.wall_s for r in mine])
            cpu = _median([r.cpu_s for r in mine])
            traces = _median([r.traces for r in mine if r.traces is not None])
            work = _median([r.work_s for r in mine if r.work_s])
            loop_cpu = _median([r.loop_cpu_s for r in mine if r.loop_cpu_s is not None])
            if reader == "bare":
                bare_cpu = cpu
            rss = max((r.peak_rss for r in mine), default=0) / 2**20
            label = LABELS[reader].format(api=api) + f" [{api}]" + ("" if mine else " (failed)")
            lines.append(
                f"| {label} | {_fmt(blocks / wall, 0)} | {_fmt(traces / wall, 0)} | "
                f"{_fmt(blocks / work, 0)} | {_fmt(cpu / blocks * 1000)} | "
                f"{_fmt(cpu / bare_cpu, 1)} | {_fmt(cpu)} | {_fmt(loop_cpu / blocks * 1000, 2)} | "
                f"{_fmt(rss, 0)} MiB | "
                f"{_fmt(_median([r.node_cpu_s for r in mine]) / blocks * 1000)} | "
                f"{_fmt(traces, 0)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=400,
                        help="blocks of traffic (half transfers, half TraceLab shapes)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--apis", default=",".join(APIS), help="geth,parity or one of them")
    parser.add_argument("--readers", default=",".join(READERS),
                        help=f"comma-separated subset of {','.join(READERS)}")
    parser.add_argument("--txs-per-block", type=int, default=20, help="transfer blocks")
    parser.add_argument("--lab-calls-per-block", type=int, default=14, help="TraceLab blocks")
    parser.add_argument("--per-request", type=int, default=8,
                        help="blocks per HTTP request of the bare reader (fetch_traces uses 8)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    args = parser.parse_args()
    apis = [a.strip() for a in args.apis.split(",") if a.strip()]
    readers = [r.strip() for r in args.readers.split(",") if r.strip()]
    if not apis or set(apis) - set(APIS):
        parser.error(f"--apis: a comma-separated subset of {','.join(APIS)}")
    if not readers or set(readers) - set(READERS):
        parser.error(f"--readers: a comma-separated subset of {','.join(READERS)}")
    if args.blocks < 4 or args.txs_per_block < 2 or args.lab_calls_per_block < 1:
        parser.error("need --blocks >= 4, --txs-per-block >= 2, --lab-calls-per-block >= 1")

    from ingestion.devnet import Devnet, free_port

    devnet = Devnet(port=free_port(), hardfork="cancun")
    devnet.start()
    try:
        chain = build_chain(devnet, args.blocks, args.txs_per_block, args.lab_calls_per_block)
        header = environment(chain)
        for line in header:
            print(line, flush=True)
        start, end = 1, chain.head + 1
        order = [(reader, api) for api in apis for reader in READERS if reader in readers]
        runs: list[Run] = []
        for rnd in range(args.rounds):
            shift = rnd % len(order)
            for reader, api in order[shift:] + order[:shift]:
                run = run_reader(reader, api, chain, start, end, args.per_request, args.timeout)
                runs.append(run)
                print(f"round {rnd + 1} {reader:<9} {api:<6} {run.blocks:,} blocks: "
                      f"{run.wall_s:6.1f}s {run.blocks / run.wall_s:6.0f} blocks/s  "
                      f"CPU {run.cpu_s:6.1f}s  RSS {run.peak_rss / 2**20:6,.0f} MiB  "
                      f"node CPU {run.node_cpu_s:5.1f}s  traces {run.traces}"
                      f"{'' if run.ok else '  FAILED ' + run.note}", flush=True)
    finally:
        devnet.stop()

    counts = {api: sorted({r.traces for r in runs if r.api == api and r.ok}) for api in apis}
    print()
    for line in header:
        print(line)
    print(f"blocks [{start:,}, {end:,}); {args.rounds} interleaved round(s), medians; whole-tree "
          f"CPU by {'; '.join(sorted({r.method for r in runs}))}; load average at the end "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} (whatever else runs on the machine "
          f"makes the wall-clock figures noisy, CPU seconds much less)")
    print()
    for line in table(runs, apis, readers, end - start):
        print(line)
    if differing := {api: c for api, c in counts.items() if len(c) > 1}:
        print("\ntrace counts differ between readers: " + "; ".join(
            f"{api}: {c}" for api, c in differing.items()))
    if any(not r.ok for r in runs):
        print("\nfailed runs: " + "; ".join(f"{r.reader} {r.api} ({r.note})"
                                            for r in runs if not r.ok))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("bare", "pure"):
        child_main(sys.argv[1:])
    else:
        main()
