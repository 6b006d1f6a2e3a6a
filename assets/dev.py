"""``make dev``: the devnet (following the head) and ``dagster dev`` together, for the UI.

Both run in their own process groups and are stopped together on Ctrl-C or SIGTERM.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

from assets.demo import BIN, QUIET_DAGSTER_CLI, REPO, prepare_dagster_home
from ingestion.devnet import DEFAULT_PORT, rpc_call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devnet-port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--ui-port", type=int, default=3000)
    parser.add_argument("--blocks", type=int, default=2_500)
    args = parser.parse_args(argv)

    url = f"http://127.0.0.1:{args.devnet_port}"
    env = {**os.environ, "CHAINLAKE_RPC_URL": url,
           "CHAINLAKE_LAKE_URI": os.environ.get("CHAINLAKE_LAKE_URI", str(REPO / "lake")),
           "CHAINLAKE_PARTITION_SIZE": os.environ.get("CHAINLAKE_PARTITION_SIZE", "1000"),
           "DAGSTER_HOME": str(prepare_dagster_home())}
    children: list[subprocess.Popen] = []

    def stop() -> None:
        # A second Ctrl-C or SIGTERM must not interrupt the shutdown and orphan a child.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        for child in reversed(children):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind through finally: stop()
    try:
        children.append(_spawn([str(BIN / "chainlake"), "devnet", "--port", str(args.devnet_port),
                                "--blocks", str(args.blocks)], env))
        _wait_for_blocks(url, args.blocks - 1, children[0])
        children.append(_spawn([str(BIN / "dagster"), "dev", "-w", "workspace.yaml",
                                "-p", str(args.ui_port)], {**env, **QUIET_DAGSTER_CLI}))
        print(f"dev: Dagster UI on http://127.0.0.1:{args.ui_port}, devnet at {url}; "
              "Ctrl-C stops both", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


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
