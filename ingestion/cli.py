"""The ``chainlake`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
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
    devnet.add_argument("--host", default="127.0.0.1",
                        help="address to bind (0.0.0.0 only inside a container)")
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
    ingest.add_argument("--spark-master", default=None,
                        help=f"default ${settings.ENV_SPARK_MASTER} or {settings.DEFAULT_SPARK_MASTER}")

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
    repair.add_argument("--rpc-url", default=None,
                        help=f"JSON-RPC URL (default ${settings.ENV_RPC_URL} or the devnet)")
    repair.add_argument("--chain-id", type=_non_negative, default=None,
                        help="expected chain id; fail if the node reports another")
    repair.add_argument("--confirmations", type=_non_negative, default=None)
    repair.add_argument("--spark-master", default=None,
                        help=f"default ${settings.ENV_SPARK_MASTER} or {settings.DEFAULT_SPARK_MASTER}")

    return parser


def add_lake_range_arguments(parser: argparse.ArgumentParser) -> None:
    """``--lake``, ``--start-block``, ``--end-block``: a block range of an existing lake."""
    parser.add_argument("--lake", default=None,
                        help=f"lake root URI (default ${settings.ENV_LAKE_URI} or ./lake)")
    parser.add_argument("--start-block", type=_non_negative, default=None,
                        help="first block (default: the lowest stored block)")
    parser.add_argument("--end-block", type=_non_negative, default=None,
                        help="exclusive (default: one past the highest stored block)")


def lake_and_range(args: argparse.Namespace):
    """The lake and ``[start, end)`` named by :func:`add_lake_range_arguments`; ``CliError`` when
    the range is empty or the lake holds no bronze tables. Bounds left out stay ``None``."""
    from ingestion.sink import BronzeLake

    start, end = args.start_block, args.end_block
    if start is not None and end is not None and end <= start:
        raise CliError(f"end-block ({end}) must be greater than start-block ({start})")
    lake = BronzeLake(args.lake or settings.lake_uri_from_env())
    if lake.table("blocks") is None:
        raise CliError(f"no bronze tables at {lake.root} (nothing ingested there yet?)")
    return lake, start, end


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
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return {"devnet": cmd_devnet, "ingest": cmd_ingest, "validate": cmd_validate,
                "repair": cmd_repair}[args.command](args)
    except CliError as err:
        print(f"chainlake {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"chainlake {args.command}: interrupted", file=sys.stderr)
        return 130


def cmd_devnet(args: argparse.Namespace) -> int:
    from ingestion.traffic import run_devnet

    run_devnet(args.port, args.blocks, hardfork=args.hardfork, follow=True, host=args.host)
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


def cmd_validate(args: argparse.Namespace) -> int:
    lake, start, end = lake_and_range(args)
    report = validate_lake(lake, start, end, chain_id=args.chain_id, max_examples=args.max_examples)
    print(report.render(), flush=True)
    return 0 if report.success else EXIT_FAILED


def cmd_repair(args: argparse.Namespace) -> int:
    from ingestion.continuity import NothingToValidate
    from ingestion.ingest import explain_failure
    from ingestion.repair import repair_lake
    from ingestion.spark import get_spark

    lake, start, end = lake_and_range(args)
    opts = _source_options(rpc_url=args.rpc_url or settings.rpc_url_from_env(),
                           chain_id=args.chain_id, confirmations=args.confirmations)
    view = _preflight(opts)
    print(f"chainlake repair: {lake.root} against chain {view.chain_id}", flush=True)
    try:
        result = repair_lake(get_spark(args.spark_master), opts, lake, start, end)
    except NothingToValidate as err:
        raise CliError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - one readable line, whatever Spark wrapped
        print(f"chainlake repair: failed: {explain_failure(err)}", file=sys.stderr)
        return EXIT_FAILED
    if result.reorg is not None:
        print(f"  reorg below the stored tip: depth {result.reorg.depth}, re-ingested blocks "
              f"[{result.reorg.replaced[0]}, {result.reorg.replaced[1]})")
    if result.before.success and not result.reingested:
        print("  the continuity suite already passed: nothing to repair")
    for a, b in result.reingested:
        print(f"  re-ingested blocks [{a}, {b})")
    print(result.after.render(), flush=True)
    return 0 if result.success else EXIT_FAILED


def _preflight(opts):
    """Check the options and the node before Spark starts: a bad URL or chain is a CliError."""
    from ingestion.ingest import preflight
    from ingestion.rpc import RpcError

    try:
        return preflight(opts)
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


def ingest_and_report(opts, lake_uri: str, spark_master: str | None = None) -> int:
    """Preflight, run, print progress and a summary."""
    from ingestion.ingest import explain_failure, run_ingest
    from ingestion.rpc import redact_url
    from ingestion.sink import BronzeLake

    view = _preflight(opts)  # before Spark starts: bad URL, wrong chain, nothing to read
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
