"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright,
against an embedded cloud served over HTTP on a loopback port (tests/conftest.py).

Clouds started here log to files (as `vmflow up` does), so the request trace
has log lines to show.  Screenshots of the main pages go to
``tests/output/screenshots/``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from vmflow import log

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "output" / "screenshots"
# A laptop screen.
VIEWPORT = {"width": 1366, "height": 800}
# Operations on the simulated hosts take well under a second; generous for slow CI.
TIMEOUT_MS = 30_000
# Short waits on the failure paths (which poll until they give up).
FAST = {"spawn_poll_attempts": 3, "shutdown_timeout": 2.0, "report_interval": 60.0}

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package "
                    "(scripts/setup.sh does) to run the dashboard's browser tests")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab; any uncaught script error on it fails the test."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda err: errors.append(str(err)))
    yield tab
    context.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture
def dashboard_cloud(cloud_factory, tmp_path: Path):
    """Start an embedded cloud (settings as cloud_factory's overrides) whose
    services log to files in a log directory it knows about."""
    log_dir = tmp_path / "logs"
    log.setup("INFO", str(log_dir), service="vmflow")

    def start(**overrides: Any):
        return cloud_factory(log_dir=str(log_dir), **{**FAST, **overrides})

    yield start
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    log.setup("INFO")
    for handler in files:
        handler.close()


@pytest.fixture
def screenshot(page: Page):
    """``screenshot(name)`` saves the whole page as ``tests/output/screenshots/<name>.png``."""
    def save(name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
