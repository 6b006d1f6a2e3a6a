"""Misconfiguration in Dagster: the head sensor and the catch-up schedule skip with a reason that
names the problem (URL redacted) instead of raising; a bronze run on a lake path that cannot hold
the tables fails at once naming the path, before any Spark session starts."""

import dagster as dg
import pytest

from assets.bronze import bronze_ingest
from assets.partitions import BLOCK_RANGES
from assets.resources import LakeResource, RpcResource, SparkResource
from ingestion.ranges import span_of
from sensors import catch_up_schedule, chain_head_sensor

SIZE = 16
KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def small_partitions(monkeypatch):
    monkeypatch.setenv("CHAINLAKE_PARTITION_SIZE", str(SIZE))
    monkeypatch.delenv("CHAINLAKE_START_BLOCK", raising=False)



BAD_RPC = [
    (dict(url=f"ftp://alice:hunter2@node.example/v3/{KEY}"),
     "must be an http:// or https:// URL"),
    (dict(url="not a url at all"), "must be an http:// or https:// URL"),
    (dict(url=f"https://alice:hunter2@/v3/{KEY}"), "no host"),
    (dict(url="http://127.0.0.1:99999"), "invalid RPC URL"),
    (dict(url="http://127.0.0.1:8545", requests_per_second=0.0),
     "rpc_requests_per_second must be a positive finite number"),
    (dict(url="http://127.0.0.1:8545", requests_per_second=float("nan")),
     "rpc_requests_per_second must be a positive finite number"),
]


def assert_names_the_problem(skip: dg.SkipReason, fragment: str) -> None:
    assert isinstance(skip, dg.SkipReason), skip
    message = skip.skip_message
    assert message.startswith("invalid rpc resource"), message
    assert fragment in message, message
    assert "hunter2" not in message and KEY not in message, message


@pytest.mark.parametrize(("config", "fragment"), BAD_RPC)
def test_sensor_skips_naming_an_invalid_rpc_configuration(instance, config, fragment):
    with dg.build_sensor_context(instance=instance,
                                 resources={"rpc": RpcResource(**config)}) as context:
        assert_names_the_problem(chain_head_sensor(context), fragment)
    assert instance.get_dynamic_partitions(BLOCK_RANGES.name) == []


@pytest.mark.parametrize(("config", "fragment"), BAD_RPC[:2])
def test_schedule_skips_naming_an_invalid_rpc_configuration(instance, tmp_path, config,
                                                            fragment):
    with dg.build_schedule_context(
            instance=instance,
            resources={"rpc": RpcResource(**config),
                       "lake": LakeResource(uri=str(tmp_path / "lake"))}) as context:
        assert_names_the_problem(catch_up_schedule(context), fragment)
    assert not (tmp_path / "lake").exists()


def test_a_bronze_run_on_a_file_fails_naming_the_path_before_spark(instance, tmp_path,
                                                                  monkeypatch):
    def no_spark(self):
        raise AssertionError("Spark must not start for a lake path that cannot be written")

    monkeypatch.setattr(SparkResource, "session", no_spark)
    lake = tmp_path / "lake"
    lake.write_text("a file, not a lake\n")
    key = span_of(0, SIZE).key
    instance.add_dynamic_partitions(BLOCK_RANGES.name, [key])
    result = dg.materialize(
        [bronze_ingest], partition_key=key, instance=instance, raise_on_error=False,
        resources={"rpc": RpcResource(url="http://127.0.0.1:1"), "spark": SparkResource(),
                   "lake": LakeResource(uri=str(lake))})
    assert not result.success
    failure = result.failure_data_for_node("bronze_ingest")
    assert failure is not None
    cause = failure.error.cause  # Dagster wraps the op's exception in a step execution error
    assert cause is not None and cause.cls_name == "LakePathError", failure.error
    assert f"lake path {lake} is a regular file, not a directory" in cause.message
    assert lake.read_text() == "a file, not a lake\n"
