"""Headless Chromium for the admin UI tests: Debian's ``chromium`` driven by selenium
through Debian's ``chromedriver`` (nothing is downloaded: both come from apt, see the
Makefile's DEB_PACKAGES).

The browser is started once per session (``browser`` fixture in ``tests/conftest.py``).
Tests run the router or namerd in their own event loop, while selenium's calls block;
:class:`Page` therefore runs every browser call in a thread (``asyncio.to_thread``) so the
loop keeps serving the pages the browser asks for.

``NAMEROUTER_SCREENSHOTS=<dir>`` also copies each screenshot a test takes to ``<dir>``
(how ``make screenshots`` refreshes the README's images in ``docs/img/``).
"""
from __future__ import annotations

import asyncio
import base64
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Optional

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1400,1000", "--hide-scrollbars", "--force-device-scale-factor=1")


def browser_available() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


class Browser:
    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="nr-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for f in FLAGS:
            opts.add_argument(f)
        opts.add_argument(f"--user-data-dir={self.profile}")
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(30)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """Async wrapper: every selenium call runs in a thread (see the module doc)."""

    def __init__(self, browser: Browser) -> None:
        self.driver = browser.driver

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.call(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, script, *args)

    async def wait(self, script: str, *args: Any, timeout: float = 20.0, what: str = "") -> Any:
        """Evaluate ``script`` (a JS function body that returns a value) until it is truthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            last = await self.js(script, *args)
            if last:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or script!r} "
                                     f"(console: {await self.console()})")
            await asyncio.sleep(0.1)

    async def type(self, css: str, text: str, clear: bool = True) -> None:
        from selenium.webdriver.common.by import By

        def do() -> None:
            e = self.driver.find_element(By.CSS_SELECTOR, css)
            if clear:
                e.clear()
            e.send_keys(text)
        await self.call(do)

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def text(self, css: str) -> str:
        return await self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)

    async def screenshot(self, path: str, full_page: bool = True) -> str:
        """A PNG of the page (the whole scrollable page unless ``full_page`` is False)."""
        def do() -> None:
            if not full_page:
                self.driver.save_screenshot(path)
                return
            size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}})
            with open(path, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        await self.call(do)
        extra = os.environ.get("NAMEROUTER_SCREENSHOTS")
        if extra:
            os.makedirs(extra, exist_ok=True)
            shutil.copy(path, os.path.join(extra, os.path.basename(path)))
        return path

    async def console(self) -> list[str]:
        try:
            logs = await self.call(self.driver.get_log, "browser")
        except Exception:
            return []
        return [f"{e.get('level')}: {e.get('message')}" for e in logs]

    async def errors(self) -> list[str]:
        """Console errors of the page so far (a refused inline script, a JS exception …);
        HTTP error answers the page asked for on purpose (a 400 it shows) are not errors."""
        return [m for m in await self.console() if m.startswith("SEVERE") and "favicon.ico" not in m
                and "Failed to load resource: the server responded with a status of 4" not in m]


def new_page(browser: Optional[Browser]) -> Page:
    assert browser is not None
    return Page(browser)
