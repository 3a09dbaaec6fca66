"""Headless Chromium for the dashboard tests: Debian's ``/usr/bin/chromium`` (``make
chromium`` installs it) driven by Playwright; no browser is ever downloaded.
``VIGIL_TEST_CHROMIUM`` may name another binary."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest


def chromium_binary() -> str:
    for c in (os.environ.get("VIGIL_TEST_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail("Chromium not found: run `make chromium` (or `make test`), or set VIGIL_TEST_CHROMIUM")


@contextlib.contextmanager
def chromium() -> Iterator:
    """A launched headless browser (Playwright's ``Browser``)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `pip install -e '.[test]'` (no browser download needed)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_binary(), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class PageWatch:
    """Collects a page's console errors, uncaught exceptions and failed requests."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} {r.failure}"))
