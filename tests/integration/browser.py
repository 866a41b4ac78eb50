"""Headless Chromium for the tests: Debian's ``chromium`` driven by Playwright.

``scripts/bootstrap`` installs both (the ``browser`` extra and the Debian
package); a test skips, saying why, only where neither can be had.

    async with chromium() as browser:
        page = await browser.new_page()
"""

from __future__ import annotations

import shutil
from contextlib import asynccontextmanager

import pytest


def browser_or_skip() -> str:
    """The chromium executable, or a skip naming what is missing."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (the 'browser' extra: scripts/bootstrap)")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on PATH (Debian's chromium package: scripts/bootstrap)")
    return path


@asynccontextmanager
async def chromium():
    from playwright.async_api import async_playwright

    executable = browser_or_skip()
    async with async_playwright() as p:
        # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        browser = await p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()
