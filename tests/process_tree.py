"""The process trees tests start: every descendant of a command, and which of them still run.

PySpark's worker daemon and the JVM move into process groups of their own or outlive their
parent, so tests note the whole tree while it runs (pid and start time) and stop all of it.
"""

from __future__ import annotations

from pathlib import Path


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent pid, process group, start time) of a live process, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def descendants(root: int) -> dict[int, tuple[int, int]]:
    """``{pid: (process group, start time)}`` of ``root`` and every process below it."""
    stats = {pid: s for pid in _all_pids() if (s := _stat(pid)) is not None}
    found: dict[int, tuple[int, int]] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        if pid in stats and pid not in found:
            found[pid] = (stats[pid][2], stats[pid][3])
            frontier.extend(child for child, s in stats.items() if s[1] == pid)
    return found


def children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` now."""
    return [pid for pid in _all_pids() if (s := _stat(pid)) is not None and s[1] == parent]


def survivors(procs: dict[int, tuple[int, int]]) -> list[int]:
    """Those of ``procs`` (same pid and start time) still running (zombies count as gone)."""
    alive = []
    for pid, (_, started) in procs.items():
        stat = _stat(pid)
        if stat is not None and stat[3] == started and stat[0] != "Z":
            alive.append(pid)
    return alive
