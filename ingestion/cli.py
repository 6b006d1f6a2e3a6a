"""The ``chainlake`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from ingestion import settings

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chainlake", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    devnet = sub.add_parser("devnet", help="run the local devnet with traffic, in the foreground")
    devnet.add_argument("--port", type=_positive, default=8545)
    devnet.add_argument("--blocks", type=_non_negative, default=200,
                        help="blocks to mine before following (default 200)")
    devnet.add_argument("--hardfork", default="prague")

    ingest = sub.add_parser("ingest", help="one availableNow run into the bronze tables")
    ingest.add_argument("--rpc-url", default=None,
                        help=f"JSON-RPC URL (default ${settings.ENV_RPC_URL} or the devnet)")
    ingest.add_argument("--lake", default=None,
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
    ingest.add_argument("--requests-per-second", type=float, default=None,
                        help="cap on JSON-RPC requests per second per task")
    ingest.add_argument("--spark-master", default=None, help="default local[2,3]")

    demo = sub.add_parser("demo", help="devnet + traffic + ingest + summary, then stop")
    demo.add_argument("--blocks", type=_positive, default=120)
    demo.add_argument("--lake", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return {"devnet": cmd_devnet, "ingest": cmd_ingest, "demo": cmd_demo}[args.command](args)
    except CliError as err:
        print(f"chainlake {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"chainlake {args.command}: interrupted", file=sys.stderr)
        return 130


def cmd_devnet(args: argparse.Namespace) -> int:
    from ingestion.traffic import run_devnet

    run_devnet(args.port, args.blocks, hardfork=args.hardfork, follow=True)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    opts = _source_options(
        rpc_url=args.rpc_url or settings.rpc_url_from_env(),
        start_block=args.start_block, end_block=args.end_block,
        confirmations=args.confirmations, chain_id=args.chain_id,
        max_blocks_per_trigger=args.max_blocks_per_trigger,
        blocks_per_partition=args.blocks_per_partition,
        rpc_requests_per_second=args.requests_per_second,
    )
    return ingest_and_report(opts, args.lake or settings.lake_uri_from_env(), args.spark_master)


def _source_options(**values):
    from ingestion.source import SourceOptionError, SourceOptions

    try:
        opts = SourceOptions(**values)
        opts.validate()
    except SourceOptionError as err:
        raise CliError(str(err).replace("_block", "-block")) from None
    return opts


def ingest_and_report(opts, lake_uri: str, spark_master: str | None = None) -> int:
    """Preflight, run, print progress and a summary. Shared by ``ingest`` and ``demo``."""
    from ingestion.ingest import explain_failure, preflight, run_ingest
    from ingestion.rpc import RpcError, redact_url
    from ingestion.sink import BronzeLake

    try:
        view = preflight(opts)  # before Spark starts: bad URL, wrong chain, nothing to read
    except RpcError as err:
        raise CliError(str(err)) from None
    target = view.safe_end if opts.end_block is None else min(view.safe_end, opts.end_block)
    if target <= opts.start_block:
        raise CliError(
            f"nothing to ingest: start block {opts.start_block} is beyond the safe head "
            f"(head {view.head}, {view.confirmations} confirmations)")
    lake = BronzeLake(lake_uri)
    print(f"chainlake ingest: chain {view.chain_id} at {redact_url(opts.rpc_url)}, head "
          f"{view.head}; blocks [{opts.start_block}, {target}) into {lake.root}", flush=True)

    def on_batch(p) -> None:
        rate = (p.end - opts.start_block) / p.seconds if p.seconds else 0.0
        print(f"  batch {p.batch_id}: blocks [{p.start}, {p.end}) "
              f"{p.rows['transactions']:,} txs {p.rows['logs']:,} logs — "
              f"{p.end - opts.start_block:,}/{target - opts.start_block:,} blocks, "
              f"{rate:,.0f} blocks/s", flush=True)

    from ingestion.spark import get_spark

    spark = get_spark(spark_master)
    try:
        result = run_ingest(spark, opts, lake, on_batch=on_batch)
    except Exception as err:  # noqa: BLE001 - one readable line, whatever Spark wrapped
        print(f"chainlake ingest: failed: {explain_failure(err)}", file=sys.stderr)
        print("  already committed ranges are kept; rerun the same command to resume.",
              file=sys.stderr)
        return EXIT_FAILED
    if not result.batches:
        print(f"chainlake ingest: up to date, nothing new before block {result.target_end}")
        return 0
    print(f"chainlake ingest: done — {result.blocks:,} blocks, "
          f"{result.rows('transactions'):,} transactions, {result.rows('logs'):,} logs in "
          f"{result.seconds:.1f}s ({result.blocks_per_second:,.0f} blocks/s, "
          f"{len(result.batches)} micro-batches); next block {result.next_block}")
    for name, version in result.versions().items():
        print(f"  {lake.table_uri(name)}  (Delta version {version})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default end to end: devnet, traffic, ingest, summary; stops what it started."""
    from ingestion.devnet import Devnet, free_port
    from ingestion.traffic import generate_coverage, generate_load

    lake_uri = args.lake or settings.lake_uri_from_env()
    with Devnet(port=free_port(), log_path=None) as devnet:
        print(f"chainlake demo: devnet at {devnet.url}", flush=True)
        report = generate_coverage(devnet.url)
        remaining = max(0, args.blocks - devnet.head())
        if remaining:
            generate_load(devnet.url, blocks=remaining, txs_per_block=10)
        print(f"chainlake demo: chain has {devnet.head() + 1} blocks "
              f"({report.transactions} coverage transactions of every type)", flush=True)
        opts = _source_options(rpc_url=devnet.url, start_block=0, end_block=devnet.head() + 1,
                               max_blocks_per_trigger=50)
        started = time.monotonic()
        code = ingest_and_report(opts, lake_uri)
    if code == 0:
        _print_query_hint(lake_uri, time.monotonic() - started)
    return code


def _print_query_hint(lake_uri: str, seconds: float) -> None:
    from ingestion.sink import BronzeLake

    lake = BronzeLake(lake_uri)
    counts = {name: lake.read(name).num_rows for name in ("blocks", "transactions", "logs")}
    print(f"chainlake demo: bronze tables hold {counts['blocks']:,} blocks, "
          f"{counts['transactions']:,} transactions, {counts['logs']:,} logs ({seconds:.0f}s)")
    print("Query them, e.g. with Polars:\n"
          f"  .venv/bin/python -c \"import polars as pl; "
          f"print(pl.read_delta('{lake.table_uri('transactions')}')"
          f".group_by('transaction_type').len())\"")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
