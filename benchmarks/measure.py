"""Shared measuring helpers for the benchmark scripts.

* ``PeakRss`` / ``tree_rss``: peak RSS of a process tree (by parent pid), sampled in a thread;
* ``MeasuredTree``: run a command as a tree of its own inside a fresh cpuacct cgroup and get its
  wall time, CPU seconds and peak RSS, start-up included (``/proc`` fallback without cgroups);
* ``tree_cpu``: CPU seconds of a long-lived process tree (a node serving the benchmarks);
* ``bare_read``: the bare batched orjson reader, also runnable as
  ``python benchmarks/measure.py bare-read URL START END``;
* ``report``: one rate line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from ingestion.processes import proc_stat, tree_pids

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root_pid: int, exclude: frozenset[int] = frozenset()) -> int:
    """Resident bytes of a process and its descendants (JVM, Python workers), less ``exclude``."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as f:
                rss[int(entry)] = int(f.read().split()[1]) * PAGE
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        if pid in exclude:
            continue
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


class PeakRss:
    """Samples the RSS of a process tree every 0.2 s while in the ``with`` block."""

    def __init__(self, pid: int | None = None, exclude: frozenset[int] = frozenset()) -> None:
        self.pid = pid or os.getpid()
        self.exclude = exclude
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid, self.exclude))
            self._stop.wait(0.2)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid, self.exclude)) if os.path.exists(f"/proc/{self.pid}") \
            else self.peak


def report(label: str, blocks: int, seconds: float, rss: int | None = None, extra: str = "") -> None:
    rate = blocks / seconds if seconds else float("inf")
    mem = f"  peak RSS {rss / 2**20:,.0f} MiB" if rss else ""
    print(f"{label:<44} {rate:>9,.0f} blocks/s  ({blocks:,} blocks in {seconds:6.1f}s){mem}"
          f"{extra}", flush=True)


# ---------------------------------------------------------------------------------------------
# CPU seconds and peak RSS of a whole process tree, start-up included (benchmarks/side_by_side.py)

CGROUP_CPUACCT = "/sys/fs/cgroup/cpuacct"  # cgroup v1 (this machine); v2 is tried second
CGROUP_V2 = "/sys/fs/cgroup/unified"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root_pid: int) -> float:
    """CPU seconds (user + system) of a living process tree, including its reaped children.

    Processes that left the tree (exited and not reaped by a member, or re-parented to init) are
    missed: for a tree that comes and goes, use ``MeasuredTree`` (a cgroup counts everything).
    """
    total = 0
    for pid in tree_pids(root_pid):
        if (fields := proc_stat(pid)) is not None:  # utime stime cutime cstime: fields 11..14
            total += sum(int(v) for v in fields[11:15])
    return total / CLK_TCK


def rss_of(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


class _CpuGroup:
    """A fresh cpu-accounting cgroup (v1 cpuacct, else v2), or a reason why there is none."""

    def __init__(self, name: str) -> None:
        self.path: str | None = None
        self.kind = ""
        self.reason = ""
        for root, kind in ((CGROUP_CPUACCT, "v1"), (CGROUP_V2, "v2")):
            probe = "cpuacct.usage" if kind == "v1" else "cgroup.procs"
            if not os.path.exists(os.path.join(root, probe)):
                continue
            path = os.path.join(root, name)
            try:
                os.mkdir(path)
            except OSError as err:
                self.reason = f"cannot create {path}: {err.strerror}"
                continue
            if kind == "v2" and not os.path.exists(os.path.join(path, "cpu.stat")):
                os.rmdir(path)
                self.reason = f"{root} has no cpu.stat"
                continue
            self.path, self.kind = path, kind
            return
        self.reason = self.reason or "no cpuacct (v1) or cgroup2 hierarchy"

    @property
    def procs_file(self) -> str:
        assert self.path
        return os.path.join(self.path, "cgroup.procs")

    def pids(self) -> list[int]:
        try:
            with open(self.procs_file) as f:
                return [int(line) for line in f if line.strip()]
        except OSError:
            return []

    def cpu_seconds(self) -> float:
        assert self.path
        if self.kind == "v1":
            with open(os.path.join(self.path, "cpuacct.usage")) as f:
                return int(f.read()) / 1e9
        with open(os.path.join(self.path, "cpu.stat")) as f:
            usage = dict(line.split() for line in f if line.strip())
        return int(usage["usage_usec"]) / 1e6

    def remove(self) -> None:
        if self.path is None:
            return
        for _ in range(100):  # zombies re-parented to init leave once init reaps them
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


class MeasuredTree:
    """Run a command as a process tree of its own and measure the whole tree.

    The child starts inside a fresh cgroup (``sh`` writes its own pid to ``cgroup.procs``, then
    execs the command), so everything it and its descendants run is counted from the first
    instruction, including processes that outlive or leave the tree (a JVM re-parented to init).
    ``cpu_s`` is the cgroup's CPU time (user + system). ``peak_rss`` is the largest sum of the RSS
    of the cgroup's processes, sampled every ``interval`` s (shared pages of forked workers count
    once per process). Without a writable cgroup it falls back to the process tree by parent pid
    (``/proc``: living members plus what they reaped; ``method`` says which was used).
    """

    def __init__(self, cmd: list[str], *, env: dict[str, str] | None = None,
                 cwd: str | None = None, interval: float = 0.05, timeout: float | None = None,
                 name: str | None = None) -> None:
        self.cmd, self.env, self.cwd = cmd, env, cwd
        self.interval, self.timeout = interval, timeout
        self.name = name or f"chainlake-bench-{os.getpid()}-{time.monotonic_ns()}"
        self.wall_s = self.cpu_s = 0.0
        self.peak_rss = 0
        self.returncode: int | None = None
        self.output = ""
        self.method = ""
        self.timed_out = False

    def run(self) -> MeasuredTree:
        import subprocess
        import tempfile

        group = _CpuGroup(self.name)
        if group.path:
            self.method = f"cgroup {group.kind} ({group.path})"
            argv = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', group.procs_file, *self.cmd]
        else:
            self.method = f"/proc tree ({group.reason})"
            argv = list(self.cmd)
        stop = threading.Event()
        with tempfile.TemporaryFile("w+") as log:
            reaped_before = sum(os.times()[2:4])  # CPU of children this process waited for
            started = time.monotonic()
            proc = subprocess.Popen(argv, env=self.env, cwd=self.cwd, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            last_cpu = [0.0]

            def sample() -> None:
                while not stop.is_set():
                    if group.path:
                        pids = group.pids()
                    else:
                        pids = tree_pids(proc.pid)
                        last_cpu[0] = max(last_cpu[0], tree_cpu(proc.pid))
                    self.peak_rss = max(self.peak_rss, rss_of(pids))
                    stop.wait(self.interval)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                self.returncode = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.timed_out = True
                _kill_group(proc.pid)
                self.returncode = proc.wait()
            self.wall_s = time.monotonic() - started
            if group.path:
                self._reap_stragglers(group)
            stop.set()
            sampler.join()
            if group.path:
                self.cpu_s = group.cpu_seconds()
            else:  # the root's own and its reaped descendants' CPU, once it was waited for
                self.cpu_s = max(last_cpu[0], sum(os.times()[2:4]) - reaped_before)
            log.seek(0)
            self.output = log.read()
        group.remove()
        return self

    def _reap_stragglers(self, group: _CpuGroup, grace: float = 15.0) -> None:
        """Wait for processes the command left running (in its cgroup); then stop them."""
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not [p for p in group.pids() if _alive(p)]:
                return
            time.sleep(0.1)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in group.pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            time.sleep(2)


def _alive(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def _kill_group(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except OSError:
            return
        time.sleep(3)


# ---------------------------------------------------------------------------------------------
# The bare reader: the least a client must do (batched JSON-RPC, orjson parse, discard)


def bare_read(url: str, start: int, end: int, per_request: int = 25) -> tuple[int, int, int]:
    """Read blocks ``[start, end)`` with full transactions and their receipts, ``per_request``
    blocks per round trip (one batch of ``eth_getBlockByNumber``, one of
    ``eth_getBlockReceipts``), parse every reply with orjson and throw it away. One keep-alive
    connection, no checks beyond counting. Returns (blocks, transactions, logs)."""
    import httpx
    import orjson

    blocks = txs = logs = 0
    with httpx.Client(timeout=120.0, headers={"content-type": "application/json"}) as http:
        def batch(method: str, params: list[list]) -> list:
            body = orjson.dumps([{"jsonrpc": "2.0", "id": i, "method": method, "params": p}
                                 for i, p in enumerate(params)])
            reply = orjson.loads(http.post(url, content=body).content)
            return [item["result"] for item in sorted(reply, key=lambda item: item["id"])]

        for a in range(start, end, per_request):
            numbers = [hex(n) for n in range(a, min(a + per_request, end))]
            got = batch("eth_getBlockByNumber", [[n, True] for n in numbers])
            receipts = batch("eth_getBlockReceipts", [[n] for n in numbers])
            blocks += len(got)
            txs += sum(len(b["transactions"]) for b in got)
            logs += sum(len(r["logs"]) for rs in receipts for r in rs)
    return blocks, txs, logs


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="bare-read URL START END: the bare reader")
    parser.add_argument("command", choices=["bare-read"])
    parser.add_argument("url")
    parser.add_argument("start", type=int)
    parser.add_argument("end", type=int)
    parser.add_argument("--per-request", type=int, default=25)
    args = parser.parse_args()
    b, t, lg = bare_read(args.url, args.start, args.end, args.per_request)
    print(f"bare reader: {b} blocks, {t} transactions, {lg} logs")
