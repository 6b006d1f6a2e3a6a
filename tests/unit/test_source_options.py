"""SourceOptions.validate: every entry point (CLI, Dagster resource, Spark options) refuses
settings the RPC client could not use, before any task or connection, naming the option."""

from __future__ import annotations

import pytest

from ingestion.source import SourceOptionError, SourceOptions

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
