"""A headless Chromium for UI tests: Debian's ``chromium`` (``make setup`` installs it) driven by
Playwright with ``executable_path``, so nothing is downloaded. Missing, the test is skipped on a
developer's machine and fails under CI (``CI=true``), where it must run."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from process_tree import children, descendants, survivors

# Chromium's background services (updates, sync, metrics) try hosts this closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    found = os.environ.get("CHAINLAKE_CHROMIUM") or shutil.which("chromium")
    if found:
        return found
    message = ("no chromium: `make setup` installs Debian's package (as root), or point "
               "CHAINLAKE_CHROMIUM at a Chromium binary")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def browser_page(width: int = 1400, height: int = 1000) -> Iterator:
    """A page of a fresh headless Chromium. On exit the browser is closed, and every process
    it and Playwright's driver started must be gone (else they are killed and the test fails)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    # Playwright's driver is a new child of this process, Chromium runs below it. (Processes
    # that services started before, such as Dagster's run workers, are not the browser's.)
    already_running = set(children(os.getpid()))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            started = {pid: p for child in children(os.getpid())
                       if child not in already_running for pid, p in descendants(child).items()}
            browser.close()
    deadline = time.monotonic() + 15
    while (left := survivors(started)) and time.monotonic() < deadline:
        time.sleep(0.2)
    names = {pid: _command(pid) for pid in left}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"the browser left processes running: {names}"


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"
