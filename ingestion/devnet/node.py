"""The embedded local chain: an anvil process (npm ``@foundry-rs/anvil``) on 127.0.0.1.

This module only owns the process: find the binary, start it in its own process group, wait
until it answers JSON-RPC, and stop it by process group. Traffic is made by
``ingestion.devnet.traffic``.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from ingestion.processes import stop_group
from ingestion.settings import DEFAULT_HOST, DEFAULT_PORT, DEVNET_CHAIN_ID

REPO_ROOT = Path(__file__).resolve().parents[2]
# prague for EIP-7702 coverage; large benchmark chains use cancun (prague mining slows per block
# in anvil 1.7.1, see DESIGN.md).
DEFAULT_HARDFORK = "prague"


class DevnetError(RuntimeError):
    """The devnet could not be started or did not answer."""


def find_anvil() -> str:
    """Path of the anvil binary: $CHAINLAKE_ANVIL, the repo's node_modules, then $PATH."""
    explicit = os.environ.get("CHAINLAKE_ANVIL")
    if explicit:
        return explicit
    local = REPO_ROOT / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    if found:
        return found
    raise DevnetError(
        "anvil not found: run `make setup` (installs npm @foundry-rs/anvil into node_modules) "
        "or set CHAINLAKE_ANVIL to the binary"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind((DEFAULT_HOST, 0))
        return s.getsockname()[1]


def rpc_call(url: str, method: str, params: list | None = None, timeout: float = 10.0):
    """One plain JSON-RPC call (devnet control and tests; bulk reads use ``ingestion.rpc``)."""
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    reply = httpx.post(url, content=body, headers={"content-type": "application/json"},
                       timeout=timeout)
    reply.raise_for_status()
    data = orjson.loads(reply.content)
    if data.get("error"):
        raise DevnetError(f"{method} failed: {data['error']}")
    return data["result"]


@dataclass
class Devnet:
    """A running anvil. Use as a context manager, or call ``start()`` / ``stop()``.

    anvil always runs with ``--max-persisted-states 0``: by default it keeps every old state
    under ~/.foundry/anvil/tmp and never deletes them.
    """

    port: int = DEFAULT_PORT
    # 0.0.0.0 only inside a container (docker/compose.yaml); clients always use loopback here.
    host: str = DEFAULT_HOST
    hardfork: str = DEFAULT_HARDFORK
    chain_id: int = DEVNET_CHAIN_ID
    block_time: float | None = None  # None: mine on demand (automine)
    extra_args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{DEFAULT_HOST}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            find_anvil(),
            "--host", self.host,
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--hardfork", self.hardfork,
            "--max-persisted-states", "0",
            "--silent",
        ]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        return cmd + self.extra_args

    def start(self, timeout: float = 30.0) -> Devnet:
        if self.process is not None:
            raise DevnetError("devnet already started")
        check_port_free(self.port, self.host)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        # Own session: reset inherited ignored signals and stop the whole group later.
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_default_signals,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevnetError(f"anvil exited with code {self.process.returncode} at start")
            try:
                if int(rpc_call(self.url, "eth_chainId", timeout=2), 16) == self.chain_id:
                    return self
            except (httpx.HTTPError, DevnetError):
                time.sleep(0.1)
        self.stop()
        raise DevnetError(f"anvil did not answer on {self.url} within {timeout:.0f}s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        stop_group(proc, timeout=10)

    def __enter__(self) -> Devnet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, method: str, params: list | None = None):
        return rpc_call(self.url, method, params)

    def head(self) -> int:
        return int(self.call("eth_blockNumber"), 16)


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def check_port_free(port: int, host: str = DEFAULT_HOST) -> None:
    """Raise ``DevnetError`` (one line) unless anvil could listen on ``host:port``: the port is
    1..65535, nothing answers on it at 127.0.0.1, and it can be bound on ``host``."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise DevnetError(f"port {port!r} is not a TCP port (1..65535)")
    if _port_open(port):
        raise DevnetError(f"port {port} on {DEFAULT_HOST} is already in use "
                          f"(another devnet or node?); choose another with --port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            # As anvil does: a port left in TIME_WAIT is free, one with a listener is not.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno == errno.EADDRINUSE:
            raise DevnetError(f"port {port} on {host} is already in use; choose another with "
                              f"--port") from None
        raise DevnetError(f"cannot listen on {host} port {port}: {reason}") from None


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((DEFAULT_HOST, port)) == 0
