"""A headless Chromium for UI tests: Debian's ``chromium`` (``make setup`` installs it) driven by
Playwright with ``executable_path``, so nothing is downloaded. Missing, the test is skipped on a
developer's machine and fails under CI (``CI=true``), where it must run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

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
    """A page of a fresh headless Chromium, closed (with its browser process) on exit."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
