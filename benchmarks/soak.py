"""Soak: minutes of the dev stack following the head while failures are injected.

    .venv/bin/python benchmarks/soak.py [--minutes 5] [--block-time 2]

Runs ``python -m assets.dev`` (devnet mining a block every ``--block-time`` s, the warm Spark
Connect server, ``dagster dev`` with ``chain_head_sensor`` and the daemon's run monitoring) in a
temporary DAGSTER_HOME and lake, and while it follows the head:

  worker kill  a tip run's worker is SIGKILLed mid-run (as the kernel's OOM killer would): the
               code server that launched it sees it die and fails the run;
  code server  a tip run's worker is SIGKILLed together with the code server that launched it,
               and the code location is reloaded (a fresh code server, as after a container
               restart or a reboot): nobody is left to report the run, which stays STARTED
               until the daemon's run monitoring fails it at its maximum run time
               (CHAINLAKE_TIP_RUN_MAX_RUNTIME_S, shortened to --tip-max-runtime here);
  node stall   the node is stopped (SIGSTOP) for --stall seconds, then continued: runs in flight
               time out and retry, the sensor skips its ticks.

Then it checks what a deployment left alone for weeks must keep: both killed runs ended FAILURE
(not STARTED for good); the lake reached the node's head of the soak's end within --catch-up
seconds; the continuity suite (great_expectations) passes over every stored block (no gap, no
duplicate, parent links, counts); no run failed but the two killed; at most two runs (the tip
and history lanes) are in flight at the end; the warm Spark server keeps at most two PySpark
daemons of a kind (Spark starts one per query for read planning: more would be a leak); the
stack's processes are all gone once it is stopped. Exit status 0 when all hold. It also prints
the peak RSS of the stack's process tree (Dagster, the server, anvil).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dev_stack import DevStack  # noqa: E402
from measure import tree_rss  # noqa: E402

from ingestion import settings  # noqa: E402
from ingestion.devnet import rpc_call  # noqa: E402
from ingestion.processes import tree_pids  # noqa: E402
from ingestion.sink import BronzeLake  # noqa: E402
from ingestion.spark_server import pyspark_daemons  # noqa: E402

PID_MESSAGE = re.compile(r"pid: (\d+)")


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def head(url: str) -> int:
    return int(rpc_call(url, "eth_blockNumber", []), 16)


def tip_run_in_flight(instance, dg):
    """A STARTED tip run of the sensor and its worker's pid (from Dagster's engine event)."""
    for record in instance.get_run_records(dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED], tags={"chainlake/run_kind": "tip"})):
        for entry in instance.all_logs(record.dagster_run.run_id):
            event = entry.dagster_event
            if event is not None and event.event_type_value == "ENGINE_EVENT":
                text = event.message or ""
                found = PID_MESSAGE.search(text)
                if found and text.startswith("Started process for run"):
                    return record.dagster_run, int(found.group(1))
    return None, None


def kill_tip_run(instance, dg, with_server: bool, done: list):
    """SIGKILL the worker of a tip run in flight (and the code server that launched it, its
    parent, when ``with_server``); the run, or None when there is none to kill right now."""
    run, pid = tip_run_in_flight(instance, dg)
    if run is None or run.run_id in {r.run_id for r in done}:
        return None
    try:
        server = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if with_server:
            os.kill(server, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    except OSError:  # the run ended meanwhile
        return None
    say(f"SIGKILLed the worker (pid {pid}) of tip run {run.run_id[:8]} (partition "
        f"{run.tags.get('dagster/partition')})"
        + (f" and its code server (pid {server})" if with_server else ""))
    return run


def reload_code_location(ui_port: int, name: str = "chainlake") -> None:
    """What a restarted code server container amounts to under ``dagster dev``: the webserver's
    "Reload" (GraphQL), which has ``dagster code-server start`` run a fresh gRPC server."""
    import httpx

    query = ("mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: "
             "$name) { __typename } }")
    reply = httpx.post(f"http://127.0.0.1:{ui_port}/graphql", timeout=60,
                       json={"query": query, "variables": {"name": name}})
    reply.raise_for_status()
    kind = reply.json()["data"]["reloadRepositoryLocation"]["__typename"]
    if kind != "WorkspaceLocationEntry":
        raise RuntimeError(f"reloading the code location gave {kind}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the soak")
    parser.add_argument("--block-time", type=float, default=2.0)
    parser.add_argument("--tip-max-runtime", type=int, default=30,
                        help="CHAINLAKE_TIP_RUN_MAX_RUNTIME_S for the stack (seconds)")
    parser.add_argument("--stall", type=float, default=20.0, help="seconds the node is stopped")
    parser.add_argument("--catch-up", type=float, default=180.0,
                        help="seconds the lake may take to reach the head once the soak is over")
    args = parser.parse_args(argv)

    problems: list[str] = []
    stack_pids: set[int] = set()  # every process the stack started: none may outlive it
    with DevStack("soak-", args.block_time,
                  env={settings.ENV_TIP_RUN_MAX_RUNTIME_S: str(args.tip_max_runtime)}) as stack:
        try:
            soak(stack, args, problems, stack_pids)
        finally:
            if stack.exited() is None:
                stack_pids |= set(tree_pids(stack.pid))
    time.sleep(2)
    alive = sorted(p for p in stack_pids if Path(f"/proc/{p}").exists()
                   and "zombie" not in Path(f"/proc/{p}/status").read_text().lower())
    if alive:
        problems.append(f"processes of the stack still alive after it stopped: {alive}")
    lake = BronzeLake(str(stack.lake_root))
    if (tip := lake.stored_tip()) is not None:
        from ingestion.continuity import validate_range

        report = validate_range(lake, 0, tip + 1)
        say(f"continuity over blocks [0, {tip + 1}): {'passed' if report.success else 'FAILED'}")
        if not report.success:
            problems.append("continuity:\n" + report.render())
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"soak {'passed' if not problems else 'FAILED'} (stack log and lake in {stack.work})")
    return 0 if not problems else 1


def soak(stack: DevStack, args: argparse.Namespace, problems: list[str],
         stack_pids: set[int]) -> None:
    """Follow the head with the failures injected; what went wrong goes into ``problems``."""
    import dagster as dg

    lake = BronzeLake(str(stack.lake_root))

    def stored_tip() -> int:
        tip = lake.stored_tip()
        return -1 if tip is None else tip

    began = time.time()
    deadline = began + args.minutes * 60
    say(f"dev stack starting in {stack.work} (devnet {stack.url}, UI "
        f"http://127.0.0.1:{stack.ui_port})")
    while not (stack.home / "dagster.yaml").exists() or stored_tip() < 0:
        if stack.exited() is not None or time.time() > began + 300:
            problems.append(f"the stack did not ingest a block within 300 s (exit "
                            f"{stack.exited()}); see {stack.work}/stack.log")
            return
        time.sleep(1)
    say(f"following the head: node at {head(stack.url)}, lake at {stored_tip()}")
    killed_runs: list = []
    with dg.DagsterInstance.from_config(str(stack.home)) as instance:
        # 1. A tip run's worker dies mid-run; 2. another dies with its code server.
        for with_server in (False, True):
            victim = None
            while victim is None and time.time() < deadline:
                stack_pids |= set(tree_pids(stack.pid))
                victim = kill_tip_run(instance, dg, with_server, killed_runs)
                time.sleep(0.2)
            if victim is None:
                break
            killed_runs.append(victim)
            if with_server:  # the code server comes back, as after a container restart
                time.sleep(2)
                reload_code_location(stack.ui_port)
                say("code location reloaded: a fresh code server, which knows nothing of the "
                    "killed run")
            time.sleep(10)
        # 3. The node stalls while the stack heals.
        anvil = [p for p in tree_pids(stack.pid)
                 if f"--port\0{stack.devnet_port}\0" in Path(f"/proc/{p}/cmdline").read_text()
                 and "anvil" in Path(f"/proc/{p}/cmdline").read_text()]
        if anvil:
            os.kill(anvil[0], signal.SIGSTOP)
            say(f"node stopped (SIGSTOP pid {anvil[0]}) for {args.stall:g} s")
            time.sleep(args.stall)
            os.kill(anvil[0], signal.SIGCONT)
            say("node continued")
        else:
            problems.append("could not find the devnet's anvil to stall it")
        # 4. Keep following the head to the end of the soak.
        peak_rss = 0
        while time.time() < deadline:
            stack_pids |= set(tree_pids(stack.pid))
            peak_rss = max(peak_rss, tree_rss(stack.pid))
            if stack.exited() is not None:
                problems.append(f"the stack exited with code {stack.exited()}")
                return
            time.sleep(2)
        kinds: dict[str, int] = {}
        for daemon in pyspark_daemons(stack.pid):
            kinds[daemon.worker_module] = kinds.get(daemon.worker_module, 0) + 1
        say(f"the stack's tree: peak RSS {peak_rss / 2**20:,.0f} MiB while following; PySpark "
            f"daemons now: {kinds or 'none'}")
        if leaking := {kind: n for kind, n in kinds.items() if n > 2}:
            problems.append(f"the Spark server keeps more PySpark daemons than it uses: {leaking}")
        # 5. The lake reaches the head as it was at the end, within the catch-up time.
        target = head(stack.url)
        say(f"soak over: node at {target}, lake at {stored_tip()}; waiting for the lake")
        limit = time.time() + args.catch_up
        while stored_tip() < target and time.time() < limit:
            time.sleep(1)
        if (tip := stored_tip()) < target:
            problems.append(f"the lake reached block {tip}, not the head {target}, within "
                            f"{args.catch_up:g} s")
        if len(killed_runs) < 2:
            problems.append(f"{len(killed_runs)} tip run(s) seen in flight and killed, not 2")
        for run in killed_runs:
            status = instance.get_run_by_id(run.run_id).status
            say(f"killed run {run.run_id[:8]} ended {status.value}")
            if status != dg.DagsterRunStatus.FAILURE:
                problems.append(f"killed run {run.run_id[:8]} is {status.value}, not FAILURE")
        stuck = [r.run_id[:8] for r in instance.get_runs(dg.RunsFilter(statuses=[
            dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED]))]
        runs = instance.get_runs_count()
        failed = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        say(f"runs: {runs} in all, {failed} failed, in flight now: {stuck or 'none'}")
        if len(stuck) > 2:
            problems.append(f"{len(stuck)} runs queued or running at the end: {stuck}")
        killed = {run.run_id for run in killed_runs}
        if others := [r.run_id[:8] for r in instance.get_runs(dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.FAILURE])) if r.run_id not in killed]:
            problems.append(f"runs that failed without being killed: {others} (see the stack "
                            f"log)")

if __name__ == "__main__":
    sys.exit(main())
