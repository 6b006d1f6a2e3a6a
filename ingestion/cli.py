"""The ``chainlake`` command line."""

from __future__ import annotations

import argparse
import atexit
import logging
import math
import os
import sys
from collections.abc import Sequence

from ingestion import settings
from ingestion.errors import RefusedError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
# How often `chainlake spark-server` looks for idle PySpark daemons: every query starts a
# read-planning daemon, a run every few seconds on a fast chain (spark_server.IdleDaemonReaper).
DAEMON_SWEEP_S = 2.0


class CliError(Exception):
    """A problem with the user's input or environment: printed as one line, exit code 2."""


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _positive_number(text: str) -> float:
    """A positive finite number (``0``, ``-1``, ``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _non_negative(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1..65535, got {value}")
    return value


def _rpc_url(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"is empty: give an http(s):// JSON-RPC URL, or leave the option out to use "
            f"${settings.ENV_RPC_URL} or the devnet")
    return text.strip()


def _lake_uri(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"is empty: give a directory or a URI, or leave the option out to use "
            f"${settings.ENV_LAKE_URI} or ./lake")
    return text.strip()


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit code 2), like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chainlake", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    devnet = sub.add_parser("devnet", help="run the local devnet with traffic, in the foreground")
    devnet.add_argument("--port", type=_port, default=8545)
    devnet.add_argument("--host", default="127.0.0.1",
                        help="address to bind (0.0.0.0 only inside a container)")
    devnet.add_argument("--blocks", type=_non_negative, default=200,
                        help="blocks to mine before following (default 200)")
    devnet.add_argument("--hardfork", default="prague")

    server = sub.add_parser(
        "spark-server", help="run a Spark Connect server (warm Spark for runs), in the foreground",
        description="Start Spark once and keep it: runs with CHAINLAKE_SPARK_REMOTE=sc://127.0.0.1:"
                    "PORT (or --spark-remote) connect in about a second instead of starting a JVM.")
    server.add_argument("--port", type=_port, default=settings.DEFAULT_SPARK_SERVER_PORT)
    server.add_argument("--spark-master", default=None,
                        help=f"default ${settings.ENV_SPARK_MASTER} or {settings.DEFAULT_SPARK_MASTER}")

    ingest = sub.add_parser("ingest", help="one availableNow run into the bronze tables")
    ingest.add_argument("--rpc-url", type=_rpc_url, default=None,
                        help=f"JSON-RPC URL (default ${settings.ENV_RPC_URL} or the devnet)")
    ingest.add_argument("--lake", type=_lake_uri, default=None,
                        help=f"lake root URI (default ${settings.ENV_LAKE_URI} or ./lake)")
    ingest.add_argument("--start-block", type=_non_negative, required=True)
    ingest.add_argument("--end-block", type=_non_negative, default=None,
                        help="exclusive; default: the safe head when the run starts")
    ingest.add_argument("--confirmations", type=_non_negative, default=None,
                        help="blocks kept back from the head (default per chain: 64 mainnet)")
    ingest.add_argument("--max-blocks-per-trigger", type=_positive,
                        default=settings.DEFAULT_MAX_BLOCKS_PER_TRIGGER)
    ingest.add_argument("--blocks-per-partition", type=_positive,
                        default=settings.DEFAULT_BLOCKS_PER_PARTITION)
    ingest.add_argument("--chain-id", type=_non_negative, default=None,
                        help="expected chain id; fail if the node reports another")
    ingest.add_argument("--requests-per-second", type=_positive_number, default=None,
                        help="cap on JSON-RPC requests per second per task")
    ingest.add_argument("--datasets", default=None,
                        help="tables to write, comma-separated: blocks,transactions,logs,traces "
                             "(default: the first three, plus traces when the node serves a "
                             "tracing API; blocks are always written: they carry the links)")
    ingest.add_argument("--trace-api", choices=("parity", "geth"), default=None,
                        help="parity: trace_block; geth: debug_traceBlockByNumber with "
                             "callTracer (default: asked of the node, parity first)")
    ingest.add_argument("--max-reorg-depth", type=_positive, default=None,
                        help="deepest divergence from the node repaired as a reorg; deeper is "
                             "refused (default per chain: 128 on mainnet)")
    ingest.add_argument("--spark-master", default=None,
                        help=f"default ${settings.ENV_SPARK_MASTER} or {settings.DEFAULT_SPARK_MASTER}")
    ingest.add_argument("--follow", type=_non_negative, default=0, metavar="SECONDS",
                        help="then keep following the head for SECONDS: each new safe block is "
                             "ingested as it comes, by one query on the same checkpoint "
                             "(without --end-block)")

    validate = sub.add_parser(
        "validate", help="check block continuity of the bronze tables (great-expectations)",
        description="Run the continuity suite over blocks [A, B) and the block before A: exit 0 "
                    "when every expectation holds, 1 naming the offending blocks otherwise.")
    add_lake_range_arguments(validate)
    validate.add_argument("--chain-id", type=_non_negative, default=None,
                          help="chain id every row must carry (default: that of most blocks)")
    validate.add_argument("--max-examples", type=_positive, default=20,
                          help="offending block numbers named per expectation (default 20)")

    repair = sub.add_parser(
        "repair", help="re-ingest what the continuity suite rejects, until it passes",
        description="Check the stored tip against the node (reorgs), run the continuity suite "
                    "over [A, B), re-ingest every offending block with its parent by "
                    "range-replace, and validate again. Exit 0 when the suite passes.")
    add_lake_range_arguments(repair)
    repair.add_argument("--rpc-url", type=_rpc_url, default=None,
                        help=f"JSON-RPC URL (default ${settings.ENV_RPC_URL} or the devnet)")
    repair.add_argument("--chain-id", type=_non_negative, default=None,
                        help="expected chain id; fail if the node reports another")
    repair.add_argument("--confirmations", type=_non_negative, default=None)
    repair.add_argument("--spark-master", default=None,
                        help=f"default ${settings.ENV_SPARK_MASTER} or {settings.DEFAULT_SPARK_MASTER}")
    repair.add_argument("--rewrite-history", action="store_true",
                        help="replace stored blocks that diverge from the node deeper than the "
                             "maximum reorg depth (refused otherwise); says how many first")

    maintain = sub.add_parser(
        "maintain", help="compact closed block ranges, vacuum, checkpoint the Delta log, drop "
                         "finished Spark checkpoints",
        description="Rewrite the small files of closed block ranges (below --closed-before) into "
                    "few sorted files without changing a row, vacuum files removed more than "
                    "--retention-hours ago, write a Delta log checkpoint and delete expired log "
                    "entries, and delete the Spark checkpoints of scopes the lake holds "
                    "completely. Safe while ingestion runs.")
    maintain.add_argument("--lake", type=_lake_uri, default=None,
                          help=f"lake root URI (default ${settings.ENV_LAKE_URI} or ./lake)")
    maintain.add_argument("--closed-before", type=_non_negative, default=None,
                          help="blocks below this are final and may be compacted (default: the "
                               "start of the partition holding the stored tip)")
    maintain.add_argument("--partition-size", type=_positive, default=None,
                          help="compaction never merges files across these aligned ranges "
                               f"(default ${settings.ENV_PARTITION_SIZE} or the deployment's)")
    maintain.add_argument("--retention-hours", type=_non_negative_number,
                          default=settings.DEFAULT_RETENTION_HOURS,
                          help="delete removed files and unreadable checkpoints older than this "
                               f"(default {settings.DEFAULT_RETENTION_HOURS:g}, Delta's 7 days)")
    maintain.add_argument("--allow-short-retention", action="store_true",
                          help="accept a retention below 7 days: readers of older versions and "
                               "writes in flight may lose files")

    return parser


def _non_negative_number(text: str) -> float:
    """A finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def add_lake_range_arguments(parser: argparse.ArgumentParser) -> None:
    """``--lake``, ``--start-block``, ``--end-block``: a block range of an existing lake."""
    parser.add_argument("--lake", type=_lake_uri, default=None,
                        help=f"lake root URI (default ${settings.ENV_LAKE_URI} or ./lake)")
    parser.add_argument("--start-block", type=_non_negative, default=None,
                        help="first block (default: the lowest stored block)")
    parser.add_argument("--end-block", type=_non_negative, default=None,
                        help="exclusive (default: one past the highest stored block)")


def lake_and_range(args: argparse.Namespace, any_table: bool = False):
    """The lake and ``[start, end)`` named by :func:`add_lake_range_arguments`; ``CliError`` when
    the range is empty or the lake has no ``blocks`` table (``any_table``: no bronze table at
    all, as repair recreates deleted ones). Bounds left out stay ``None``."""
    from ingestion.sink import BronzeLake

    start, end = args.start_block, args.end_block
    if start is not None and end is not None and end <= start:
        raise CliError(f"end-block ({end}) must be greater than start-block ({start})")
    lake = BronzeLake(lake_uri_of(args))
    if not (lake.exists() if any_table else lake.table("blocks") is not None):
        raise CliError(f"no bronze tables at {lake.root} (nothing ingested there yet?)")
    return lake, start, end


def rpc_url_of(args: argparse.Namespace) -> str:
    """``--rpc-url``, else ``$CHAINLAKE_RPC_URL`` (unset or empty: the devnet). A variable set to
    nothing but blanks is a ``CliError``, not a silent fallback to the devnet."""
    if args.rpc_url is not None:
        return args.rpc_url
    _refuse_blank_env(settings.ENV_RPC_URL)
    return settings.rpc_url_from_env()


def lake_uri_of(args: argparse.Namespace) -> str:
    """``--lake``, else ``$CHAINLAKE_LAKE_URI`` (unset or empty: ``./lake``); blanks: ``CliError``."""
    if args.lake is not None:
        return args.lake
    _refuse_blank_env(settings.ENV_LAKE_URI)
    return settings.lake_uri_from_env()


def _refuse_blank_env(name: str) -> None:
    value = os.environ.get(name)
    if value and not value.strip():
        raise CliError(f"${name} is set but blank; unset it or give a value")


def check_lake(root: str) -> None:
    """``ingestion.lake_path.check_lake_writable`` as a ``CliError``: before Spark starts."""
    from ingestion.lake_path import LakePathError, check_lake_writable

    try:
        check_lake_writable(root)
    except LakePathError as err:
        raise CliError(str(err)) from None


def validate_lake(lake, start: int | None, end: int | None, *, chain_id: int | None = None,
                  max_examples: int = 20):
    """Run the continuity suite; a range with nothing stored is a ``CliError``. Returns the
    :class:`ingestion.continuity.ContinuityReport` (``.offending_blocks`` lists what failed)."""
    from ingestion.continuity import validate_range

    try:
        return validate_range(lake, start, end, chain_id=chain_id, max_examples=max_examples)
    except ValueError as err:  # NothingToValidate, or a range that ends before it starts
        raise CliError(str(err)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # -v is chainlake's own DEBUG (every project logger is ``chainlake.*``); third-party loggers
    # stay at WARNING: py4j's DEBUG, for one, prints every Spark option, the RPC URL in clear.
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("chainlake").setLevel(logging.DEBUG if args.verbose else logging.NOTSET)
    try:
        return {"devnet": cmd_devnet, "ingest": cmd_ingest, "validate": cmd_validate,
                "repair": cmd_repair, "maintain": cmd_maintain,
                "spark-server": cmd_spark_server}[args.command](args)
    except CliError as err:
        print(f"chainlake {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RefusedError as err:  # another chain, a deep divergence, an unusable table
        print(f"chainlake {args.command}: refused: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"chainlake {args.command}: interrupted", file=sys.stderr)
        return 130


def cmd_devnet(args: argparse.Namespace) -> int:
    from ingestion.devnet import DevnetError, check_port_free
    from ingestion.devnet.traffic import run_devnet

    try:
        check_port_free(args.port, args.host)  # before anvil starts and traffic is generated
        run_devnet(args.port, args.blocks, hardfork=args.hardfork, follow=True, host=args.host)
    except DevnetError as err:  # port in use, anvil missing or not starting: one line
        raise CliError(str(err)) from None
    return 0


def cmd_spark_server(args: argparse.Namespace) -> int:
    import signal
    import threading

    from ingestion.spark_server import IdleDaemonReaper, SparkConnectServer, SparkServerError

    server = SparkConnectServer(port=args.port,
                                master=args.spark_master or settings.spark_master_from_env())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server.start()
    except SparkServerError as err:
        raise CliError(str(err)) from None
    print(f"chainlake spark-server: listening at {server.url} (set {settings.ENV_SPARK_REMOTE}="
          f"{server.url}); Ctrl-C stops it", flush=True)
    reaper = IdleDaemonReaper(server.process.pid)
    try:
        while not stop.wait(DAEMON_SWEEP_S):
            if server.process is None or server.process.poll() is not None:
                print("chainlake spark-server: the server exited", file=sys.stderr)
                return EXIT_FAILED
            for pid in reaper.sweep():
                if pid not in reaper.replaced:  # not a line per query for the planning daemons
                    print(f"chainlake spark-server: stopped PySpark daemon {pid}, idle for "
                          f"{reaper.idle_s:.0f}s", flush=True)
    finally:
        server.stop()
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    opts = _source_options(
        rpc_url=rpc_url_of(args),
        start_block=args.start_block, end_block=args.end_block,
        confirmations=args.confirmations, chain_id=args.chain_id,
        max_blocks_per_trigger=args.max_blocks_per_trigger,
        blocks_per_partition=args.blocks_per_partition,
        rpc_requests_per_second=args.requests_per_second,
        datasets=args.datasets, trace_api=args.trace_api,
    )
    if args.follow and args.end_block is not None:
        raise CliError("--follow follows the head: it takes no --end-block")
    return ingest_and_report(opts, lake_uri_of(args), args.spark_master, args.max_reorg_depth,
                             follow_s=args.follow)


def cmd_validate(args: argparse.Namespace) -> int:
    lake, start, end = lake_and_range(args)
    report = validate_lake(lake, start, end, chain_id=args.chain_id, max_examples=args.max_examples)
    print(report.render(), flush=True)
    return 0 if report.success else EXIT_FAILED


def cmd_repair(args: argparse.Namespace) -> int:
    from ingestion.continuity import NothingToValidate
    from ingestion.ingest import check_chain_identity, explain_failure
    from ingestion.repair import repair_lake
    from ingestion.spark import get_spark

    lake, start, end = lake_and_range(args, any_table=True)
    check_lake(lake.root)  # writable, before Spark starts
    opts = _source_options(rpc_url=rpc_url_of(args),
                           chain_id=args.chain_id, confirmations=args.confirmations)
    view = _preflight(opts)
    check_chain_identity(lake, opts, view)  # another chain than the lake's: refused before Spark
    print(f"chainlake repair: {lake.root} against chain {view.chain_id}", flush=True)
    try:
        result = repair_lake(get_spark(args.spark_master), opts, lake, start, end,
                             on_plan=_print_repair_plan, on_batch=_print_repair_chunk,
                             rewrite_history=args.rewrite_history,
                             on_divergence=_print_rewrite(lake) if args.rewrite_history else None)
    except NothingToValidate as err:
        raise CliError(str(err)) from None
    except RefusedError:
        raise  # main(): one line, exit 2
    except Exception as err:  # noqa: BLE001 - one readable line, whatever Spark wrapped
        print(f"chainlake repair: failed: {explain_failure(err)}", file=sys.stderr)
        return EXIT_FAILED
    return _print_repair_summary(result)


def cmd_maintain(args: argparse.Namespace) -> int:
    from ingestion.maintenance import closed_before_of, maintain_lake
    from ingestion.sink import BronzeLake

    lake = BronzeLake(lake_uri_of(args))
    if not lake.exists():
        raise CliError(f"no bronze tables at {lake.root} (nothing ingested there yet?)")
    if args.retention_hours < settings.DEFAULT_RETENTION_HOURS and not args.allow_short_retention:
        raise CliError(f"--retention-hours {args.retention_hours:g} is below Delta's "
                       f"{settings.DEFAULT_RETENTION_HOURS:g} h: readers of older versions and "
                       "writes in flight could lose files; add --allow-short-retention to insist")
    try:
        size = args.partition_size or settings.partition_size_from_env()
    except ValueError as err:  # a bad $CHAINLAKE_PARTITION_SIZE
        raise CliError(str(err)) from None
    closed_before = (closed_before_of(lake, size) if args.closed_before is None
                     else args.closed_before)
    report = maintain_lake(lake, closed_before=closed_before, partition_size=size,
                           retention_hours=args.retention_hours,
                           enforce_retention_duration=not args.allow_short_retention,
                           first_block=settings.start_block_from_env(),
                           progress=lambda line: print(f"  {line}", flush=True))
    print(report.render(), flush=True)
    return 0


def _print_rewrite(lake):
    """Says how many stored blocks ``--rewrite-history`` replaces, before it replaces them."""

    def announce(divergence) -> None:
        first, tip = divergence.first_replaced, divergence.stored_tip
        stored = len(lake.block_hashes(first, tip + 1))
        print(f"  rewriting history: {stored:,} stored blocks ({first}..{tip}) are not on the "
              f"node's chain and will be replaced by its blocks", flush=True)

    return announce


def _print_repair_plan(result, ranges: list[tuple[int, int]]) -> None:
    """What one repair pass found and is about to re-ingest (before any Spark job)."""
    from ingestion.continuity import ranges_text

    if result.reorg is not None:
        print(f"  reorg below the stored tip: depth {result.reorg.depth}, re-ingested blocks "
              f"[{result.reorg.replaced[0]}, {result.reorg.replaced[1]})", flush=True)
    if result.before is None:
        print("  no blocks table: every block of the range is re-ingested")
    elif result.before.success:
        print("  the continuity suite already passed: nothing to repair", flush=True)
        return
    else:
        print(result.before.render())
    blocks = sum(b - a for a, b in result.offending)
    print(f"  offending blocks (all of them): {ranges_text(result.offending)} ({blocks:,} blocks)")
    if result.beyond_safe_head:
        print(f"  beyond the node's safe head, not re-ingested: "
              f"{ranges_text(result.beyond_safe_head)}")
    total = sum(b - a for a, b in ranges)
    print(f"  re-ingesting {total:,} blocks in {len(ranges)} range(s) (each offending block with "
          "its parent)", flush=True)


def _print_repair_chunk(p) -> None:
    print(f"  re-ingested blocks [{p.start}, {p.end}) {p.rows.get('transactions', 0):,} txs "
          f"{p.rows.get('logs', 0):,} logs — {p.done:,}/{p.total:,} blocks, "
          f"{p.blocks_per_second:,.0f} blocks/s", flush=True)


def _print_repair_summary(result) -> int:
    if result.reingested:
        print(f"chainlake repair: re-ingested {result.blocks_reingested:,} blocks in "
              f"{len(result.reingested)} range(s), {result.seconds:.1f}s in all; the suite again:")
    if result.after is None:
        print("chainlake repair: FAILED: nothing could be re-ingested", flush=True)
        return EXIT_FAILED
    print(result.after.render(), flush=True)
    if not result.success:
        print("chainlake repair: the suite still fails after one repair pass (blocks beyond the "
              "node's safe head, or the node serves them as they are); not retrying",
              file=sys.stderr)
    return 0 if result.success else EXIT_FAILED


def _preflight(opts):
    """Check the options and the node before Spark starts: a bad URL or chain is a CliError."""
    from ingestion.rpc import RpcError
    from ingestion.source import observe_chain

    try:
        opts.validate()
        return observe_chain(opts)
    except RpcError as err:
        raise CliError(str(err)) from None


def _source_options(**values):
    from ingestion.source import SourceOptionError, SourceOptions

    try:
        opts = SourceOptions(**values)
        opts.validate()
    except SourceOptionError as err:
        raise CliError(str(err).replace("_block", "-block")) from None
    return opts


def _rows_text(rows: dict[str, int]) -> str:
    """``1,234 transactions, 2,345 logs, 3,456 traces`` (blocks are counted apart)."""
    return ", ".join(f"{n:,} {name}" for name, n in rows.items() if name != "blocks") or "no rows"


def ingest_and_report(opts, lake_uri: str, spark_master: str | None = None,
                      max_reorg_depth: int | None = None, follow_s: float = 0) -> int:
    """Preflight, run, print progress and a summary."""
    view = _preflight(opts)  # bad URL, wrong chain, nothing to read: refused before any work
    target = view.safe_end if opts.end_block is None else min(view.safe_end, opts.end_block)
    if target <= opts.start_block:
        raise CliError(
            f"nothing to ingest: start block {opts.start_block} is beyond the safe head "
            f"(head {view.head}, {view.confirmations} confirmations)")
    check_lake(lake_uri)  # a file, a read-only or full file system: now, not in a task
    from ingestion.ingest import (
        bind_lake_to_chain,
        explain_failure,
        follow_head,
        resolve_datasets,
        run_ingest,
    )
    from ingestion.rpc import redact_url
    from ingestion.sink import BronzeLake

    lake = BronzeLake(lake_uri)
    bind_lake_to_chain(lake, opts, view)  # another chain than the lake's: refused before Spark
    opts = resolve_datasets(opts)  # traces asked of a node without a tracing API: refused now
    from ingestion.spark import SparkOnDemand

    # The JVM boots while the run checks the node and the lake again (a run always does) and
    # its head start fetches.
    spark = SparkOnDemand(spark_master).start_in_background()
    print(f"chainlake ingest: chain {view.chain_id} at {redact_url(opts.rpc_url)}, head "
          f"{view.head}; blocks [{opts.start_block}, {target}) into {lake.root} "
          f"({opts.datasets.replace(',', ', ')}"
          f"{f'; traces by {opts.trace_api}' if opts.trace_api else ''})", flush=True)

    def on_batch(p) -> None:
        rate = (p.end - opts.start_block) / p.seconds if p.seconds else 0.0
        print(f"  batch {p.batch_id}: blocks [{p.start}, {p.end}) {_rows_text(p.rows)} — "
              f"{p.end - opts.start_block:,}/{max(target, p.end) - opts.start_block:,} blocks, "
              f"{rate:,.0f} blocks/s; {p.json_bytes / 1e6:,.1f} MB of JSON; task seconds: "
              f"{p.describe_stages()}", flush=True)

    try:
        result = run_ingest(spark, opts, lake, on_batch=on_batch, max_reorg_depth=max_reorg_depth)
        if follow_s:
            print(f"  following the head for {follow_s:g} s", flush=True)
            result = follow_head(spark, opts, lake, result, seconds=follow_s, on_batch=on_batch,
                                 max_reorg_depth=max_reorg_depth)
    except RefusedError:
        raise  # main(): one line, exit 2
    except Exception as err:  # noqa: BLE001 - one readable line, whatever Spark wrapped
        print(f"chainlake ingest: failed: {explain_failure(err)}", file=sys.stderr)
        print("  already committed ranges are kept; rerun the same command to resume.",
              file=sys.stderr)
        return EXIT_FAILED
    if not result.batches:
        print(f"chainlake ingest: up to date, nothing new before block {result.target_end}")
        return 0
    rows = {name: result.rows(name) for name in result.versions()}
    print(f"chainlake ingest: done — {result.blocks:,} blocks, {_rows_text(rows)} in "
          f"{result.seconds:.1f}s ({result.blocks_per_second:,.0f} blocks/s, "
          f"{len(result.batches)} micro-batches); next block {result.next_block}")
    if result.head_start_blocks:
        print(f"  {result.head_start_blocks:,} of them fetched while Spark started (head start)")
    for name, version in result.versions().items():
        print(f"  {lake.table_uri(name)}  (Delta version {version})")
    return 0


def run() -> None:
    """The ``chainlake`` program: ``main``, the exit handlers (PySpark's, which stop a local JVM;
    logging's), then the process ends without the interpreter's teardown.

    Why: native threads of the libraries a command imports (gRPC's, under great_expectations'
    Spark Connect import; Arrow's; delta-rs's runtime) may still run while C++ destructors run
    at exit: about one ``chainlake validate`` in 60 then died of ``terminate called without an
    active exception`` (SIGABRT) after printing its answer. Skipping the teardown also saves its
    ~0.1 s of collecting every object the run imported; the process frees them at once.
    """
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
