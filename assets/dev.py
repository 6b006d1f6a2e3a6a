"""``make dev``: the devnet (following the head), a warm Spark and ``dagster dev``, for the UI.

The Spark Connect server (``chainlake spark-server``) keeps Spark running, so every run the
head sensor launches connects in about a second instead of starting a JVM. All three run in
their own process groups and are stopped together on Ctrl-C or SIGTERM.

Where things go: ``DAGSTER_HOME`` (default ``.dagster_home`` in the repository) and
``CHAINLAKE_LAKE_URI`` (default ``lake`` in the repository), or ``--dagster-home`` / ``--lake``.
A DAGSTER_HOME without a dagster.yaml gets ``config/dagster.yaml``; one that has its own keeps it
(the repository's default home is always refreshed). Several stacks run side by side when each
has its own ports, home and lake, e.g.::

    DAGSTER_HOME=/tmp/b CHAINLAKE_LAKE_URI=/tmp/b/lake \\
        make dev ARGS="--devnet-port 8602 --ui-port 3002 --block-time 12"
"""

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from assets.demo import BIN, DAGSTER_HOME, QUIET_DAGSTER_CLI, REPO
from ingestion import settings
from ingestion.devnet import DEFAULT_PORT, rpc_call

DEFAULT_UI_PORT = 3000
DEFAULT_BLOCK_TIME_S = 2.0
DEFAULT_BLOCKS = 2_500


@dataclass(frozen=True)
class DevStack:
    """What ``make dev`` starts, with which settings (nothing is started by building it)."""

    devnet_port: int
    ui_port: int
    block_time: float
    blocks: int
    dagster_home: Path
    lake: str
    copy_config: bool  # install config/dagster.yaml into dagster_home
    env: dict[str, str] = field(repr=False)
    spark_port: int | None = settings.DEFAULT_SPARK_SERVER_PORT  # None: runs start their own Spark

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.devnet_port}"

    def devnet_command(self) -> list[str]:
        return [sys.executable, "-m", "assets.dev", "--serve-devnet",
                "--devnet-port", str(self.devnet_port), "--blocks", str(self.blocks),
                "--block-time", f"{self.block_time:g}"]

    def spark_command(self) -> list[str]:
        return [str(BIN / "chainlake"), "spark-server", "--port", str(self.spark_port)]

    def dagster_command(self) -> list[str]:
        return [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
                "-p", str(self.ui_port)]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {text!r}")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < 3600):  # also false for nan
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m assets.dev", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devnet-port", type=_port, default=DEFAULT_PORT,
                        help=f"the devnet's JSON-RPC port on 127.0.0.1 (default {DEFAULT_PORT})")
    parser.add_argument("--ui-port", type=_port, default=DEFAULT_UI_PORT,
                        help=f"the Dagster UI's port on 127.0.0.1 (default {DEFAULT_UI_PORT})")
    parser.add_argument("--block-time", type=_seconds, default=DEFAULT_BLOCK_TIME_S,
                        help="seconds between the devnet's blocks once it follows "
                             f"(default {DEFAULT_BLOCK_TIME_S:g})")
    parser.add_argument("--blocks", type=_count, default=DEFAULT_BLOCKS,
                        help=f"blocks mined before following (default {DEFAULT_BLOCKS})")
    parser.add_argument("--dagster-home", default=None,
                        help="Dagster instance directory (default $DAGSTER_HOME, else "
                             ".dagster_home in the repository)")
    parser.add_argument("--lake", default=None,
                        help=f"lake root (default ${settings.ENV_LAKE_URI}, else lake/ in the "
                             "repository)")
    parser.add_argument("--spark-port", type=_port, default=settings.DEFAULT_SPARK_SERVER_PORT,
                        help="the warm Spark Connect server's port (default "
                             f"{settings.DEFAULT_SPARK_SERVER_PORT})")
    parser.add_argument("--no-spark-server", action="store_true",
                        help="no warm Spark: every run starts its own")
    parser.add_argument("--serve-devnet", action="store_true", help=argparse.SUPPRESS)
    return parser


def plan(argv: list[str] | None, environ: dict[str, str]) -> DevStack:
    """The stack that ``argv`` and the environment ask for."""
    args = build_parser().parse_args(argv)
    explicit_home = args.dagster_home or environ.get("DAGSTER_HOME")
    home = Path(explicit_home or DAGSTER_HOME).expanduser().resolve()
    lake = args.lake or environ.get(settings.ENV_LAKE_URI) or str(REPO / "lake")
    if "://" not in lake:
        lake = str(Path(lake).expanduser().resolve())
    url = f"http://127.0.0.1:{args.devnet_port}"
    env = {**environ, settings.ENV_RPC_URL: url, settings.ENV_LAKE_URI: lake,
           settings.ENV_PARTITION_SIZE: environ.get(settings.ENV_PARTITION_SIZE) or "1000",
           "DAGSTER_HOME": str(home)}
    copy_config = home == DAGSTER_HOME.resolve() or not (home / "dagster.yaml").exists()
    spark_port = None if args.no_spark_server else args.spark_port
    if spark_port is not None:
        env[settings.ENV_SPARK_REMOTE] = f"sc://127.0.0.1:{spark_port}"
    return DevStack(devnet_port=args.devnet_port, ui_port=args.ui_port,
                    block_time=args.block_time, blocks=args.blocks, dagster_home=home,
                    lake=lake, copy_config=copy_config, env=env, spark_port=spark_port)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve_devnet:
        return _serve_devnet(args.devnet_port, args.blocks, args.block_time)
    stack = plan(argv, dict(os.environ))
    from ingestion.devnet import DevnetError, check_port_free

    # Before anything starts: a second stack on the same ports fails here, with one line.
    ports = [("devnet", "--devnet-port", stack.devnet_port),
             ("Dagster UI", "--ui-port", stack.ui_port)]
    if stack.spark_port is not None:
        ports.append(("Spark Connect server", "--spark-port", stack.spark_port))
    for what, option, port in ports:
        try:
            check_port_free(port)
        except DevnetError:
            print(f"dev: port {port} for the {what} is in use (another stack?); choose another "
                  f"with {option}", file=sys.stderr)
            return 2
    stack.dagster_home.mkdir(parents=True, exist_ok=True)
    if stack.copy_config:
        shutil.copyfile(REPO / "config" / "dagster.yaml", stack.dagster_home / "dagster.yaml")
    children: list[subprocess.Popen] = []

    def stop() -> None:
        # A second Ctrl-C or SIGTERM must not interrupt the shutdown and orphan a child.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        for child in reversed(children):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=20)
            # Whatever is left in the child's group goes too: a process started while it shut
            # down (dagster dev restarts a code server that went away) escaped the SIGTERM.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind through finally: stop()
    try:
        children.append(_spawn(stack.devnet_command(), stack.env))
        if stack.spark_port is not None:  # starts while the devnet mines its first blocks
            children.append(_spawn(stack.spark_command(), stack.env))
        _wait_for_blocks(stack.rpc_url, stack.blocks - 1, children[0])
        if stack.spark_port is not None:
            _wait_for_port(stack.spark_port, children[-1], "the Spark Connect server")
        children.append(_spawn(stack.dagster_command(), {**stack.env, **QUIET_DAGSTER_CLI}))
        spark = (f"warm Spark at sc://127.0.0.1:{stack.spark_port}" if stack.spark_port
                 else "Spark started per run")
        print(f"dev: Dagster UI on http://127.0.0.1:{stack.ui_port}, devnet at {stack.rpc_url} "
              f"(a block every {stack.block_time:g} s), {spark}, DAGSTER_HOME "
              f"{stack.dagster_home}, lake {stack.lake}; Ctrl-C stops them all", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


def _serve_devnet(port: int, blocks: int, block_time: float) -> int:
    """The devnet child: ``chainlake devnet`` with the follow interval set to ``block_time``."""
    from ingestion.devnet import DevnetError, check_port_free, traffic

    # run_devnet mines one block every FOLLOW_INTERVAL_SECONDS once it follows; this process is
    # only the devnet, so setting it here changes nothing else.
    traffic.FOLLOW_INTERVAL_SECONDS = block_time
    try:
        check_port_free(port)
        traffic.run_devnet(port, blocks, follow=True)
    except DevnetError as err:
        print(f"devnet: {err}", file=sys.stderr)
        return 2
    return 0


def _wait_for_port(port: int, child: subprocess.Popen, what: str, timeout: float = 300) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{what} exited with code {child.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f}s")


def _spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_blocks(url: str, block: int, devnet: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if devnet.poll() is not None:
            raise SystemExit(f"dev: the devnet exited with code {devnet.returncode}")
        try:
            if int(rpc_call(url, "eth_blockNumber", timeout=2), 16) >= block:
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(1)
    raise SystemExit(f"dev: the devnet did not reach block {block} in {timeout:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
