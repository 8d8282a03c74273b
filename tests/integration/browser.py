"""A real browser for the UI tests: Debian's Chromium, headless, driven by Playwright.

Playwright cannot download its own browsers here (no CDN), so it launches the system Chromium
(``KUBESAGA_CHROMIUM``, else ``chromium`` on PATH; ``.ci/run`` installs it). Every page records
console errors and uncaught exceptions: a script the Content-Security-Policy blocked, or one that
threw, fails the test that opened it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from kubernetes_asyncio import client
from playwright.async_api import Browser, Page, async_playwright

from kubesaga.ui import make_app, serving


def chromium_path() -> str:
    path = os.environ.get("KUBESAGA_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("no Chromium: `apt-get install chromium` (or set KUBESAGA_CHROMIUM)")
    return path


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium; without the sandbox only when running as root (it refuses then)."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=args
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Tab:
    """A page and the errors it logged."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.errors, f"the page logged errors: {self.errors}"


@contextlib.asynccontextmanager
async def open_tab(browser: Browser, url: str) -> AsyncIterator[Tab]:
    """A fresh context (no shared cache or cookies) on ``url``, once its stream delivered."""
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    page = await context.new_page()
    tab = Tab(page)
    page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    try:
        await page.goto(url)
        await page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        yield tab
    finally:
        await context.close()
    tab.check()


@contextlib.asynccontextmanager
async def ui_server(
    api: client.ApiClient, namespace: str, *, read_only: bool = False
) -> AsyncIterator[str]:
    """``kubesaga ui`` for one namespace on a free loopback port; yields its base URL."""
    app: web.Application = make_app(api, namespace, read_only=read_only)
    async with serving(app, "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}"


def saga_url(ui: str, namespace: str, name: str) -> str:
    """The page of one saga on the UI at ``ui``."""
    return f"{ui}/saga/{namespace}/{name}"
