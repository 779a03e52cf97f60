"""Fixtures of the browser tests: a real `shimmfa central serve`
(`central.server.CentralServer`, plain HTTP on 127.0.0.1), Debian's
chromium driven by the playwright pip package through `executable_path`
(nothing is downloaded; never `playwright install`), headless, each
browser context a fresh profile; helpers to log in, to check a page with
the vendored axe-core, and to keep screenshots.

Screenshots go to `tests/ui/artifacts/` (git-ignored), or to
`$SHIMMFA_UI_ARTIFACTS`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.kit import code_at
from central.server import CentralServer

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parents[2] / "src/shimmfa/central/static/vendor/axe-core/axe.min.js"
ARTIFACTS = Path(os.environ.get("SHIMMFA_UI_ARTIFACTS", Path(__file__).parent / "artifacts"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = pytest.mark.ui


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    return sync_playwright


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    start = _playwright()
    if start is None or not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium and the playwright package (make test installs both)")
    with start() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralServer]:
    made = CentralServer(tmp_path_factory.mktemp("ui") / "central", tls=False)
    with made.running():
        yield made


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


def new_page(browser: Any, server: CentralServer) -> Any:
    """A page in a context of its own (its own cookies). CSP is bypassed
    only so that the tests can inject axe-core; the pages do not need it."""
    context = browser.new_context(
        base_url=server.base_url, bypass_csp=True, viewport={"width": 1366, "height": 900}
    )
    context.set_default_timeout(15_000)
    return context.new_page()


def log_in(
    page: Any, operator: str, password: str, secret: str, at: float, second: str | None = None
) -> None:
    """Log in through the form; with `second`, the second factor's secret,
    also on the screen that asks for it."""
    page.goto("/ui/login")
    page.get_by_label("Operator ID").fill(operator)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Authenticator code").fill(code_at(secret, at))
    page.get_by_role("button", name="Log in").click()
    if second is not None:
        field = page.get_by_label("Next factor: second")
        field.wait_for()
        check_accessibility(page, "second factor")
        field.fill(code_at(second, at))
        page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/fleet")


def check_accessibility(page: Any, name: str) -> None:
    """axe-core (vendored) in the page: no serious or critical violation."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} -> "
        + "; ".join(n["target"][0] if n["target"] else "?" for n in v["nodes"][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{name}: {bad}"


def snap(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
