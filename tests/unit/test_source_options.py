"""SourceOptions.validate: every entry point (CLI, Dagster resource, Spark options) refuses
settings the RPC client could not use, before any task or connection, naming the option."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ingestion.source import EvmDataSource, SourceOptionError, SourceOptions

URL = "http://127.0.0.1:8545"


@pytest.mark.parametrize("field", ["rpc_requests_per_second", "rpc_timeout_s"])
@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, float("nan"), float("inf"), float("-inf")])
def test_rates_and_timeouts_must_be_positive_and_finite(field, value):
    with pytest.raises(SourceOptionError, match=f"^{field} must be a positive finite number"):
        SourceOptions(rpc_url=URL, **{field: value}).validate()


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "NaN", "-inf"])
def test_spark_string_options_are_checked_too(raw):
    with pytest.raises(SourceOptionError, match="^rpc_requests_per_second must be a positive"):
        SourceOptions.parse({"rpc_url": URL, "rpc_requests_per_second": raw})
    with pytest.raises(SourceOptionError, match="^rpc_timeout_s must be a positive"):
        SourceOptions.parse({"rpc_url": URL, "rpc_timeout_s": raw})


def test_good_values_pass():
    SourceOptions(rpc_url=URL, rpc_requests_per_second=0.5, rpc_timeout_s=3).validate()
    SourceOptions(rpc_url=URL, rpc_requests_per_second=None).validate()


@pytest.mark.parametrize(("url", "message"), [
    ("http://", "invalid RPC URL 'http://': no host"),
    ("https://alice:hunter2@:8545/v3/0123456789abcdef0123456789abcdef", "no host"),
    ("http://127.0.0.1:99999", "invalid RPC URL"),
    ("ftp://alice:hunter2@host/x?apikey=SECRET42",
     "must be an http:// or https:// URL, got 'ftp://"),
    ("not a url", "must be an http:// or https:// URL"),
    ("", "must be an http:// or https:// URL"),
])
def test_unusable_urls_are_refused_without_their_secrets(url, message):
    with pytest.raises(SourceOptionError) as err:
        SourceOptions(rpc_url=url).validate()
    assert message in str(err.value)
    for secret in ("hunter2", "SECRET42", "0123456789abcdef0123456789abcdef"):
        assert secret not in str(err.value)


@pytest.mark.parametrize("field", ["timeout_s", "requests_per_second"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_the_rpc_client_settings_agree(field, value):
    from ingestion.rpc import RpcSettings

    with pytest.raises(ValueError, match=f"^{field} must be > 0"):
        RpcSettings(URL, **{field: value})


def test_options_survive_the_trip_through_spark_strings():
    """foreachBatch gets the run's options as Spark strings (``CommitMicroBatch``)."""
    opts = SourceOptions(rpc_url=URL, start_block=7, end_block=1_500, dataset="files",
                         lake="/tmp/lake", datasets="blocks,logs", trace_api="geth",
                         confirmations=0, chain_id=31337, max_blocks_per_trigger=300,
                         blocks_per_partition=150, rpc_blocks_per_request=10,
                         rpc_requests_in_flight=3, rpc_timeout_s=2.5, rpc_max_retries=1,
                         rpc_max_batch_size=40, rpc_requests_per_second=12.5)
    assert SourceOptions.parse(opts.as_spark_options()) == opts
    assert SourceOptions.parse(SourceOptions(rpc_url=URL).as_spark_options()) == \
        SourceOptions(rpc_url=URL)


@pytest.mark.parametrize("value", ["0", "-2"])
def test_requests_in_flight_must_be_at_least_one(value):
    with pytest.raises(SourceOptionError, match="^rpc_requests_in_flight must be >= 1"):
        SourceOptions.parse({"rpc_url": URL, "rpc_requests_in_flight": value})


def test_the_foreach_batch_function_ships_as_plain_values():
    """A Spark Connect server's worker unpickles it before the query starts: nothing in it may
    make that worker import more than ``ingestion.foreach_batch`` (which imports nothing)."""
    import pickle
    import pickletools

    from ingestion.foreach_batch import CommitMicroBatch

    function = CommitMicroBatch(SourceOptions(rpc_url=URL).as_spark_options(), "/tmp/lake",
                                "/tmp/lake/_checkpoints/ingest")
    data = pickle.dumps(function)
    modules = {arg.split()[0] if isinstance(arg, str) and " " in arg else arg
               for op, arg, _ in pickletools.genops(data)
               if op.name in ("GLOBAL", "STACK_GLOBAL", "SHORT_BINUNICODE", "BINUNICODE")
               and isinstance(arg, str) and arg.startswith(("ingestion", "pyspark", "deltalake"))}
    assert modules == {"ingestion.foreach_batch"}
    copy = pickle.loads(data)
    copy._importing.join(60)  # it imports ingestion.ingest in a thread meanwhile
    assert (copy.options, copy.lake_root, copy.checkpoint) == \
        (function.options, function.lake_root, function.checkpoint)


def test_what_planning_workers_run_imports_neither_the_http_client_nor_arrow():
    # Spark runs the data source's creation and read planning in fresh Python workers, one after
    # the other, before any task: each import there is start-up every run pays (httpx ~0.1 s,
    # pyarrow with the table declarations and transforms 0.1-0.2 CPU-s per worker).
    heavy = ("httpx", "ingestion.rpc.transport", "pyarrow", "ingestion.schemas",
             "ingestion.transform")
    code = ("import sys\n"
            "from ingestion.source import EvmDataSource\n"
            "source = EvmDataSource({'rpc_url': 'http://127.0.0.1:8545', 'dataset': 'files',\n"
            "                        'lake': '/tmp/lake', 'datasets': 'logs,traces',\n"
            "                        'trace_api': 'geth'})\n"
            "source.schema(); source.streamReader(source.schema()).initialOffset()\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_files_rows_spark_schema_is_the_arrow_one():
    # Declared once (ingestion.dataset_names); the planning workers build Spark's form without
    # Arrow, the tasks build Arrow batches: the two must agree field for field.
    from ingestion.dataset_names import files_spark_schema
    from ingestion.schemas import FILES_SCHEMA, spark_schema

    assert files_spark_schema() == spark_schema(FILES_SCHEMA)
    assert EvmDataSource({"rpc_url": "http://127.0.0.1:8545", "dataset": "files",
                          "lake": "/tmp/lake"}).schema() == spark_schema(FILES_SCHEMA)
