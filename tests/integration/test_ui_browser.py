"""The Prefect UI, in a real headless Chromium, shows the pipeline's runs and artifacts.

On the SQLite stack (what `make server` gives a user): the nightly forecast's run page says
Completed and lists the forecast summary, whose markdown renders; the retrain's run page lists
the metrics table, which shows the model and its baselines. On the PostgreSQL stack, whose
server has an auth string: the UI asks for it on a login page, then shows the run.
Screenshots land in each test's tmp dir and in tests/integration/output/. Requests to anything
but 127.0.0.1 are refused, so the UI is checked offline.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.live_prefect import LOOPBACK, require
from tests.integration.stacks import AUTH_STRING, RUN_DATE, Stack

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A page of a fresh headless Chromium profile that may only reach 127.0.0.1."""
    require(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    require(
        importlib.util.find_spec("playwright") is not None,
        "the Python package playwright is not installed (pip install playwright)",
    )
    from playwright.sync_api import expect, sync_playwright

    blocked: list[str] = []

    def loopback_only(route: Any) -> None:
        if route.request.url.startswith(f"http://{LOOPBACK}:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        # headless=True adds --headless; a persistent context is the fresh --user-data-dir.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            context.route("**/*", loopback_only)
            yield context.new_page()
        finally:
            context.close()
    print("requests refused (not loopback):", blocked)


def open_run(page: Any, stack: Stack, run: dict[str, Any]) -> None:
    page.goto(f"{stack.server.url}/runs/flow-run/{run['id']}")
    expect_completed_run_page(page, run)


def expect_completed_run_page(page: Any, run: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_text(run["name"], exact=True).first).to_be_visible()
    expect(page.locator(".state-badge").first).to_have_text("Completed")
    expect(page.get_by_text("Deployment", exact=True)).to_be_visible()  # header fully loaded
    page.wait_for_load_state("networkidle")


def open_artifacts_tab(page: Any) -> None:
    page.get_by_text("Artifacts", exact=True).first.click()
    page.wait_for_url("**tab=Artifacts**")


def test_ui_shows_completed_forecast_and_its_artifacts(
    sqlite_stack: Stack, browser_page: Any, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    runs = sqlite_stack.pipeline()
    assert runs.forecast["state_type"] == "COMPLETED", sqlite_stack.server.diagnostics(
        runs.forecast["id"]
    )
    name = runs.config["name"]
    page = browser_page

    # The nightly forecast's run page: named for its date, Completed, its summary listed.
    open_run(page, sqlite_stack, runs.forecast)
    assert runs.forecast["name"] == f"forecast-{RUN_DATE}"
    page.screenshot(path=output_dir / "forecast-run.png", full_page=True)
    open_artifacts_tab(page)
    summary = page.get_by_text(f"forecast-summary-{name}", exact=True)
    expect(summary).to_be_visible()
    page.screenshot(path=output_dir / "forecast-run-artifacts.png", full_page=True)

    # The summary renders as markdown: its heading names the run date.
    summary.click()
    expect(page.get_by_role("heading", name=f"Forecast for {RUN_DATE}")).to_be_visible()
    page.screenshot(path=output_dir / "forecast-summary.png", full_page=True)

    # The retrain's run page lists the metrics table, which renders the model and its baselines.
    open_run(page, sqlite_stack, runs.train)
    open_artifacts_tab(page)
    metrics = page.get_by_text(f"metrics-{name}", exact=True)
    expect(metrics).to_be_visible()
    page.screenshot(path=output_dir / "train-run-artifacts.png", full_page=True)
    (artifact,) = [
        a for a in sqlite_stack.server.artifacts(runs.train["id"]) if a["key"] == f"metrics-{name}"
    ]
    page.goto(f"{sqlite_stack.server.url}/artifacts/artifact/{artifact['id']}")
    expect(page.get_by_role("columnheader", name="mase", exact=True)).to_be_visible()
    for model in ("lstm", "seasonal_naive"):
        cell = page.get_by_role("cell").filter(has=page.get_by_text(model, exact=True))
        expect(cell).to_be_visible()
    page.screenshot(path=output_dir / "metrics-table.png", full_page=True)


def test_ui_asks_for_the_auth_string_then_shows_the_run(
    postgresql_stack: Stack, browser_page: Any, output_dir: Path
) -> None:
    """With PREFECT_SERVER_API_AUTH_STRING the UI opens on a login page; the string lets one in."""
    from playwright.sync_api import expect

    runs = postgresql_stack.pipeline()
    run = runs.forecast
    page = browser_page

    # Prefect 3.9's UI sends an unauthenticated deep link (a run's page) to "Page not found", so
    # a user opens the dashboard first, which redirects to the login page.
    page.goto(f"{postgresql_stack.server.url}/dashboard")
    page.wait_for_url("**/login?redirect=**")
    password = page.locator("input[type=password]")
    expect(password).to_be_visible()
    page.screenshot(path=output_dir / "login.png", full_page=True)

    password.fill(AUTH_STRING)
    page.get_by_role("button", name="Login").click()
    page.wait_for_url("**/dashboard")
    page.goto(f"{postgresql_stack.server.url}/runs/flow-run/{run['id']}")
    expect_completed_run_page(page, run)
    page.screenshot(path=output_dir / "forecast-run-after-login.png", full_page=True)
