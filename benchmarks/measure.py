"""Shared measuring helpers for the benchmark scripts: peak RSS of a process tree, rate lines."""

from __future__ import annotations

import os
import threading

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
