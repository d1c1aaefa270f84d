"""Debian's chromium driven by Playwright (never `playwright install`), per DESIGN.md §5."""

from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the tests' own ORM
    # calls are synchronous and safe, so let Django allow them (Django's documented escape).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def log_in(page, server, username: str, password: str) -> None:
    # A navigation still in flight from the previous page (after clear_cookies, it comes back
    # redirected to the login page with a fresh CSRF cookie) could replace the cookie this form
    # was rendered with; the blank page cancels it before the login page is asked for.
    page.goto("about:blank")
    page.goto(server.url + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    click_through(page, "button[type=submit]")
    assert "/login/" not in page.url, f"{username} could not sign in: still on {page.url}"


def click_through(page, selector: str) -> None:
    """Click what submits a form or follows a link, and return once the page it leads to has
    loaded: reading (or clearing cookies) before then races the navigation."""
    with page.expect_navigation():
        page.click(selector)


ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
AXE = ROOT / "tests" / "browser_assets" / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def artifacts_dir():
    """Where screenshots go (a CI artifact): STAGEGATE_TEST_ARTIFACTS, else test-artifacts/."""
    from pathlib import Path

    path = Path(os.environ.get("STAGEGATE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Watched:
    """A page whose console errors, uncaught errors and 5xx responses are collected, checked
    with axe-core and for sideways scrolling on every `check()`."""

    def __init__(self, page, viewport: str):
        self.page, self.viewport = page, viewport
        self.problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console error on {page.url}: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error on {page.url}: {e}"))
        page.on("response", lambda r: r.status >= 500 and self.problems.append(
            f"{r.status} for {r.url}"))

    def check(self, screenshot: str | None = None) -> None:
        page = self.page
        page.wait_for_load_state("load")
        wide = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        if wide[0] > wide[1]:
            culprits = page.evaluate("""() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .slice(0, 8).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                    + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : ''))""")
            raise AssertionError(f"{page.url} scrolls sideways at {self.viewport}: {wide}; "
                                 f"too wide: {culprits}")
        if not page.evaluate("() => typeof window.axe !== 'undefined'"):
            page.evaluate(AXE.read_text())  # evaluate, not a script tag: the CSP stays strict
        result = page.evaluate("""async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.filter(v => ['serious', 'critical'].includes(v.impact))
                .map(v => v.id + ': ' + v.help + ' — ' +
                     v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '));
        }""")
        assert not result, f"axe on {page.url} at {self.viewport}: {result}"
        assert not self.problems, self.problems
        if screenshot:
            page.screenshot(path=str(artifacts_dir() / f"{screenshot}-{self.viewport}.png"),
                            full_page=True)


@pytest.fixture
def watched(browser):
    """watched(viewport) -> a Watched page in a fresh context of that size."""
    contexts = []

    def make(viewport: str) -> Watched:
        context = browser.new_context(viewport=VIEWPORTS[viewport],
                                      accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        return Watched(page, viewport)

    yield make
    for context in contexts:
        context.close()
