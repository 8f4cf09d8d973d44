"""Headless Chromium for end-to-end tests (Playwright's sync API against `live_server`).

    make test PYTEST_ARGS="tests/browser -x -q"
    TAP_SCREENSHOTS=1 make test PYTEST_ARGS="tests/browser -x -q"   # + full-page PNGs

Chromium is found at $TAP_CHROMIUM, /usr/bin/chromium, on the PATH, or Playwright's own
download, in that order. Without one the browser tests are skipped, with the reason — unless
the environment variable CI is set: there a missing browser is a failure, never a silent skip.

`TAP_SCREENSHOTS` saves full-page screenshots: `1` (or `true`) writes them to
test-artifacts/screenshots/ (git-ignored), any other value is taken as the directory.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Playwright's sync API runs an asyncio event loop in this thread; Django would otherwise refuse
# ORM calls from the test body (the outbox run, assertions) while the browser is open.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}

# Reports every CSP violation on the console, where the watcher below collects it. An init
# script is injected by the browser, so the policy it watches does not block it.
CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`
    + ` (${e.sourceFile || document.location.href}:${e.lineNumber})`);
});
"""


def unavailable(reason: str):
    """Skip with the reason; on CI (the CI variable is set) fail instead."""
    if "CI" in os.environ:
        pytest.fail(f"CI is set, so the browser tests must run: {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    """The Chromium to drive; None means Playwright's own download (if it has one)."""
    configured = os.environ.get("TAP_CHROMIUM")
    if configured:
        return configured
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    if executable is not None and not os.access(executable, os.X_OK):
        unavailable(f"Chromium at {executable} is missing or not executable")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Error as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            unavailable(
                "no Chromium to run the browser tests: install Debian's chromium or set "
                f"TAP_CHROMIUM ({first_line})"
            )
        yield chromium
        chromium.close()


@dataclass
class Problems:
    """Console errors, uncaught exceptions and CSP violations seen by a page."""

    seen: list[tuple[str, str]] = field(default_factory=list)  # (url, text)
    allowed: list[tuple[str, re.Pattern]] = field(default_factory=list)
    checked: int = 0  # problems up to here were reported by an earlier check

    def allow(self, url: str, pattern: str) -> None:
        """An expected console error, e.g. Chromium's note on a deliberate 403 page."""
        self.allowed.append((url, re.compile(pattern)))

    def assert_none(self, where: str = "") -> None:
        """Fail on problems seen since the previous check."""
        new, self.checked = self.seen[self.checked :], len(self.seen)
        found = [
            f"{text} [{url}]"
            for url, text in new
            if not any(url == u and p.search(text) for u, p in self.allowed)
        ]
        assert not found, f"browser problems{' ' + where if where else ''}:\n" + "\n".join(found)


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def page(browser, live_server, problems):
    """A fresh browser context on the live server; relative URLs work (`page.goto("/")`)."""
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    context.add_init_script(CSP_REPORTER)
    page = context.new_page()
    page.set_default_timeout(10_000)

    def on_console(message):
        if message.type == "error":
            url = (message.location or {}).get("url") or page.url
            problems.seen.append((url, message.text))

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.seen.append((page.url, f"uncaught: {exc}")))
    yield page
    context.close()
    problems.assert_none("(at the end of the test)")


def screenshot_dir() -> Path | None:
    value = os.environ.get("TAP_SCREENSHOTS", "").strip()
    if not value or value.lower() in {"0", "false", "no"}:
        return None
    if value.lower() in {"1", "true", "yes"}:
        return ROOT / "test-artifacts" / "screenshots"
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


@pytest.fixture
def screenshot(page):
    """`screenshot("login")` saves a full-page PNG when TAP_SCREENSHOTS is set; else nothing."""
    target = screenshot_dir()

    def take(name: str, *, on=None) -> None:
        if target is None:
            return
        target.mkdir(parents=True, exist_ok=True)
        # caret="initial": hiding the caret leaves `style=""` on every form field, and htmx
        # copies it onto the field that replaces it in a swap, which the CSP reports.
        (on or page).screenshot(
            path=str(target / f"{name}.png"),
            full_page=True,
            animations="disabled",
            caret="initial",
        )

    return take
