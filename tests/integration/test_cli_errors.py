"""Bad input to the ``chainlake`` command: one line on stderr naming the problem, exit code 2,
no traceback, and a lake ingested beforehand is left exactly as it was.

Every case runs the installed console script as a subprocess (its own process group, killed on
timeout). They all fail before Spark starts, except the ``-v`` run at the end, which ingests a
few blocks for real to show that verbose logging never prints the RPC URL's credentials.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from fault_proxy import FaultProxy

from ingestion.devnet import free_port
from ingestion.rpc import RpcClient
from ingestion.schemas import CORE_TABLES, TABLES
from ingestion.sink import BronzeLake
from ingestion.transform import bundle_batch

CHAINLAKE = str(Path(sys.executable).parent / "chainlake")
BASELINE_RANGES = ((0, 8), (8, 16))  # two commits per table


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120,
        file_size_limit: int | None = None) -> Done:
    """``chainlake ARGS`` in its own process group, without the caller's CHAINLAKE_* defaults."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("CHAINLAKE_RPC_URL", "CHAINLAKE_LAKE_URI")}
    environ.update(env or {})

    def limit() -> None:
        if file_size_limit is not None:  # Python ignores SIGXFSZ: writes fail with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    proc = subprocess.Popen([CHAINLAKE, *args], cwd=cwd, env=environ, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=limit)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Done(proc.returncode, out, err)


def assert_bad_input(done: Done, *fragments: str) -> str:
    """Exit 2, nothing on stdout, exactly one non-empty stderr line containing ``fragments``."""
    assert "Traceback" not in done.out + done.err, done.err[-3000:]
    lines = [line for line in done.err.splitlines() if line.strip()]
    assert done.code == 2, (done.code, done.out[-2000:], done.err[-3000:])
    assert len(lines) == 1, done.err
    assert done.out == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def lake_state(root: Path) -> dict:
    """Every file with its size and mtime, plus each table's Delta version and row count."""
    files = {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
             for p in sorted(root.rglob("*")) if p.is_file()}
    lake = BronzeLake(str(root))
    tables = {}
    for name in TABLES:
        dt = lake.table(name)  # None: a table the baseline did not write (traces)
        tables[name] = None if dt is None else (dt.version(), dt.to_pyarrow_table().num_rows)
    return {"files": files, "tables": tables}


@pytest.fixture(scope="module")
def ingested(devnet, tmp_path_factory) -> Path:
    """A lake holding devnet blocks [0, 16) in two commits, written by the sink the ingest
    driver uses (no Spark needed: every case below stops before Spark would start)."""
    root = tmp_path_factory.mktemp("cli-errors") / "lake"
    lake = BronzeLake(str(root))
    with RpcClient(devnet.url) as client:
        for a, b in BASELINE_RANGES:
            bundle = pa.Table.from_batches([bundle_batch(devnet.chain_id,
                                                         client.fetch_raw_blocks(a, b))])
            lake.write_bundle(bundle, a, b)
    state = lake_state(root)
    assert all(state["tables"][name][0] >= 1 and state["tables"][name][1] > 0
               for name in CORE_TABLES), state
    assert lake.stored_bounds() == (0, BASELINE_RANGES[-1][1] - 1)
    return root


@pytest.fixture()
def unchanged(ingested):
    """The baseline lake, checked to be byte-for-byte as it was after the test."""
    before = lake_state(ingested)
    yield ingested
    assert lake_state(ingested) == before


# --- --requests-per-second ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "NaN"])
def test_requests_per_second_must_be_positive_and_finite(devnet, unchanged, tmp_path, value):
    done = run("ingest", "--rpc-url", devnet.url, "--lake", str(unchanged), "--start-block", "0",
               f"--requests-per-second={value}", cwd=tmp_path)  # "-inf" alone looks like a flag
    line = assert_bad_input(done, "argument --requests-per-second",
                            "must be a positive finite number", repr(value))
    assert line.startswith("chainlake ingest: error: ")


def test_requests_per_second_must_be_a_number(unchanged, tmp_path):
    done = run("ingest", "--lake", str(unchanged), "--start-block", "0",
               "--requests-per-second", "fast", cwd=tmp_path)
    assert_bad_input(done, "argument --requests-per-second: expected a number, got 'fast'")


# --- empty --rpc-url / --lake and blank environment variables -------------------------------

@pytest.mark.parametrize("url", ["", "   "])
def test_an_empty_rpc_url_is_refused_not_replaced_by_the_devnet(unchanged, tmp_path, url):
    done = run("ingest", "--rpc-url", url, "--lake", str(unchanged), "--start-block", "0",
               cwd=tmp_path)
    assert_bad_input(done, "chainlake ingest: error: argument --rpc-url: is empty")
    done = run("repair", "--rpc-url", url, "--lake", str(unchanged), cwd=tmp_path)
    assert_bad_input(done, "chainlake repair: error: argument --rpc-url: is empty")


@pytest.mark.parametrize("command", ["ingest", "validate", "repair"])
def test_an_empty_lake_is_refused_not_replaced_by_the_default(devnet, tmp_path, command):
    extra = ["--start-block", "0", "--rpc-url", devnet.url] if command == "ingest" else []
    done = run(command, "--lake", "", *extra, cwd=tmp_path)
    assert_bad_input(done, f"chainlake {command}: error: argument --lake: is empty")
    assert list(tmp_path.iterdir()) == []  # no ./lake made in the working directory


def test_a_blank_rpc_url_variable_is_refused(unchanged, tmp_path):
    done = run("ingest", "--lake", str(unchanged), "--start-block", "0", cwd=tmp_path,
               env={"CHAINLAKE_RPC_URL": "  "})
    assert_bad_input(done, "$CHAINLAKE_RPC_URL is set but blank")


def test_a_blank_lake_variable_is_refused(devnet, tmp_path):
    done = run("ingest", "--rpc-url", devnet.url, "--start-block", "0", cwd=tmp_path,
               env={"CHAINLAKE_LAKE_URI": " \t"})
    assert_bad_input(done, "$CHAINLAKE_LAKE_URI is set but blank")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_rpc_url_variable_means_unset(unchanged, tmp_path):
    # Unset or empty: the default URL; the run then stops at the next problem, the range.
    done = run("ingest", "--lake", str(unchanged), "--start-block", "5", "--end-block", "3",
               cwd=tmp_path, env={"CHAINLAKE_RPC_URL": ""})
    assert_bad_input(done, "end-block (3) must be greater than start-block (5)")


# --- unusable RPC URLs ------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "fragment"), [
    ("http://", "invalid RPC URL 'http://': no host"),
    ("http://127.0.0.1:99999", "invalid RPC URL 'http://127.0.0.1:99999'"),
    ("ftp://alice:hunter2@node.example/v3/0123456789abcdef0123456789abcdef",
     "must be an http:// or https:// URL, got 'ftp://***@node.example"),
])
def test_an_unusable_rpc_url_is_named_without_its_secrets(unchanged, tmp_path, url, fragment):
    done = run("ingest", "--rpc-url", url, "--lake", str(unchanged), "--start-block", "0",
               cwd=tmp_path)
    line = assert_bad_input(done, fragment)
    assert "hunter2" not in line and "0123456789abcdef0123456789abcdef" not in line


# --- lake paths that cannot hold the tables (found before Spark starts) ----------------------

def ingest_into(devnet, lake: str, tmp_path: Path, **kwargs) -> Done:
    return run("ingest", "--rpc-url", devnet.url, "--lake", lake, "--start-block", "0",
               "--end-block", "4", cwd=tmp_path, **kwargs)


def test_a_regular_file_as_the_lake(devnet, tmp_path):
    lake = tmp_path / "lake"
    lake.write_text("notes\n")
    done = ingest_into(devnet, str(lake), tmp_path)
    assert_bad_input(done, f"lake path {lake} is a regular file, not a directory")
    assert lake.read_text() == "notes\n"


def test_a_lake_under_a_regular_file(devnet, tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("x")
    done = ingest_into(devnet, str(blocker / "lake"), tmp_path)
    assert_bad_input(done, f"cannot create lake directory {blocker / 'lake'}: {blocker} is a "
                           f"regular file, not a directory")


def test_a_regular_file_in_place_of_bronze(devnet, tmp_path):
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "bronze").write_text("x")
    done = ingest_into(devnet, str(lake), tmp_path)
    assert_bad_input(done, f"lake path {lake / 'bronze'} is a regular file, not a directory")
    assert sorted(p.name for p in lake.iterdir()) == ["bronze"]


@pytest.mark.parametrize(("lake", "fragment"), [
    ("/dev/full", "lake path /dev/full is a device, not a directory"),
    ("/dev/full/lake", "cannot create lake directory /dev/full/lake: /dev/full is a device"),
    ("/proc/chainlake-lake", "cannot create lake directory /proc/chainlake-lake: "),
    ("/sys/chainlake-lake", "cannot create lake directory /sys/chainlake-lake: "),
    ("/sys/kernel", "lake directory /sys/kernel is not writable: "),
])
def test_system_paths_as_the_lake(devnet, tmp_path, lake, fragment):
    assert_bad_input(ingest_into(devnet, lake, tmp_path), fragment)


def test_a_lake_that_cannot_take_a_byte_is_refused_and_left_alone(devnet, unchanged, tmp_path):
    # RLIMIT_FSIZE 0 makes every write fail with EFBIG, as a full disk fails with ENOSPC: the
    # probe finds it before Spark starts (the run used to fail 30-60 s later naming no path).
    done = ingest_into(devnet, str(unchanged), tmp_path, file_size_limit=0)
    assert_bad_input(done, f"lake directory {unchanged} is not writable: File too large (EFBIG)")
    done = run("repair", "--rpc-url", devnet.url, "--lake", str(unchanged), cwd=tmp_path,
               file_size_limit=0)
    assert_bad_input(done, "chainlake repair: error: ",
                     f"lake directory {unchanged} is not writable: File too large (EFBIG)")


# --- devnet ports -----------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["0", "70000", "-5", "http"])
def test_devnet_port_out_of_range(tmp_path, port):
    done = run("devnet", "--port", port, cwd=tmp_path, timeout=60)
    assert_bad_input(done, "chainlake devnet: error: argument --port")


def test_devnet_port_already_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("devnet", "--port", str(port), "--blocks", "1", cwd=tmp_path, timeout=60)
    assert_bad_input(done, f"chainlake devnet: error: port {port} on 127.0.0.1 is already in use")


def test_devnet_address_not_on_this_machine(tmp_path):
    port = free_port()
    done = run("devnet", "--host", "203.0.113.7", "--port", str(port), "--blocks", "1",
               cwd=tmp_path, timeout=60)
    assert_bad_input(done, f"cannot listen on 203.0.113.7 port {port}: ")


# --- usage errors are one line too -----------------------------------------------------------

def test_a_missing_argument_is_one_line(tmp_path):
    done = run("ingest", cwd=tmp_path)
    assert_bad_input(done, "chainlake ingest: error: the following arguments are required: "
                           "--start-block")


# --- -v: chainlake's DEBUG, never the credentials (real Spark run) ---------------------------

@pytest.mark.slow
def test_verbose_ingest_never_prints_the_url_credentials(devnet, tmp_path):
    key = "abcdef0123456789abcdef0123456789"
    lake = tmp_path / "lake"
    # anvil answers only on "/": a transparent proxy takes the provider-style path to it.
    with FaultProxy(devnet.url) as proxy:
        url = f"http://chainuser:s3cretpw@127.0.0.1:{proxy.port}/v3/{key}?apikey=TOPSECRETKEY"
        done = run("-v", "ingest", "--rpc-url", url, "--lake", str(lake), "--start-block", "0",
                   "--end-block", "3", "--spark-master", "local[1,2]", cwd=tmp_path, timeout=600)
        # The credentials did reach the node: path, query and basic auth on every request.
        assert {seen.path for seen in proxy.seen} == {f"/v3/{key}?apikey=TOPSECRETKEY"}
        assert all(seen.authorization and seen.authorization.startswith("Basic ")
                   for seen in proxy.seen)
    text = done.out + done.err
    assert done.code == 0, text[-4000:]
    assert "done" in done.out
    for secret in ("chainuser", "s3cretpw", key, "TOPSECRETKEY"):
        assert secret not in text, (secret, [line for line in text.splitlines() if secret in line])
    # chainlake's own loggers do speak at DEBUG/INFO; third-party ones (py4j) stay quiet.
    assert re.search(r" (DEBUG|INFO) chainlake\.", done.err), done.err[-4000:]
    assert not re.search(r" (DEBUG|INFO) (py4j|urllib3|httpx|httpcore|asyncio)", done.err)
    assert sorted(BronzeLake(str(lake)).read("blocks").column("block_number").to_pylist()) \
        == [0, 1, 2]
