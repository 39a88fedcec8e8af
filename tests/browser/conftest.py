"""A real Chromium (Debian's /usr/bin/chromium, never a downloaded one) for page tests.

These tests run in their own pytest invocation (`make test` runs two): Playwright's
sync API drives its own event loop, which must not share a process with asyncio tests.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import require

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(
    os.environ.get("SOLLOL_ARTIFACT_DIR")
    or Path(__file__).resolve().parents[2] / "data" / "artifacts"
)


def launch_chromium(playwright):
    """Start headless Chromium from the system package with the flags CI needs."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )


@pytest.fixture(scope="session")
def browser():
    require(
        os.access(CHROMIUM, os.X_OK) and shutil.which(CHROMIUM) is not None,
        f"{CHROMIUM} is not installed (apt-get install chromium)",
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - requirements-dev.txt pins it
        require(False, "playwright is not installed (make setup)")
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


class PageWatch:
    """A page and what it did that a user must never see: dialogs, script errors."""

    def __init__(self, page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                self.errors.append(message.text)
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


@pytest.fixture
def watched_page(browser):
    """Return a factory of fresh pages (own context each) with a PageWatch."""
    contexts = []

    def make(**options) -> PageWatch:
        context = browser.new_context(
            viewport=options.pop("viewport", {"width": 1440, "height": 1000}),
            **options,
        )
        contexts.append(context)
        return PageWatch(context.new_page())

    yield make
    for context in contexts:
        context.close()
