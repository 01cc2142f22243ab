"""Browser fixtures: a signaling server serving the demo pages, and Chromium driven by Playwright.

Every test runs once per server:

- ``reference``: the Node open-easyrtc server (``support.reference``) serving our demo pages;
- ``ours``: this project's server, served by ``support.ours.serving``, with a `ServerLog` of
  what it sends.
  ``BROWSER_SERVERS=reference`` (or ``=ours``) runs only those.

Chromium is the system one (``/usr/bin/chromium``, or ``$CHROMIUM``); Playwright's own browser
download is not used. One browser serves the whole run (so these tests share the session's event
loop); each page gets its own browser context, with a fake camera and microphone.
When a test fails, screenshots and console logs of its pages go to ``test-artifacts/failures/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from browserkit import CHROMIUM_ARGS, DEMOS_DIR, Demos, ServerLog
from playwright.async_api import Browser, async_playwright
from pytest_asyncio import is_async_test

from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from support.ours import serving
from support.reference import reference_server


def _server_params() -> list[Any]:
    wanted = os.environ.get("BROWSER_SERVERS", "reference,ours").replace(" ", "").split(",")
    params = []
    if "reference" in wanted:
        params.append(pytest.param("reference", id="reference"))
    if "ours" in wanted:
        params.append(pytest.param("ours", id="ours"))
    return params


def _start(kind: str, options: dict[str, Any], log: ServerLog) -> AbstractAsyncContextManager[str]:
    if kind == "reference":
        return reference_server(options, demos_dir=DEMOS_DIR)
    server = EasyRtcServer(Options.from_mapping(options))
    server.events.add(log)
    return serving(server)


@pytest.fixture(params=_server_params())
def server_kind(request: pytest.FixtureRequest) -> str:
    """Which server the test runs against: ``reference`` or ``ours``."""
    return str(request.param)


@pytest.fixture
def server_options() -> dict[str, Any]:
    """EasyRTC options for the server; override in a test module to change them."""
    return {}


@pytest.fixture
def server_log() -> ServerLog:
    """What our server sends during the test (empty for the reference), kept for failures."""
    return ServerLog()


@pytest_asyncio.fixture(loop_scope="session")
async def server(
    server_kind: str, server_options: dict[str, Any], server_log: ServerLog
) -> AsyncIterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of a fresh server that serves ``/demos/``."""
    async with _start(server_kind, server_options, server_log) as url:
        yield url


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the system Chromium."""
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("Chromium not found: `apt-get install -y chromium` or set $CHROMIUM")
    return executable


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """One Chromium for the whole run; every page gets a fresh browser context."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def demos(
    browser: Browser,
    server: str,
    server_kind: str,
    server_log: ServerLog,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Demos]:
    """Opens demo pages; saves screenshots and console logs of them all if the test fails."""
    demos = Demos(browser, server, server_kind, server_log)
    yield demos
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        await demos.save_failure(request.node.name)
    await demos.close_all()  # before the server stops, so that it sees clients leave


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests of this folder in the session's event loop, where the shared browser lives."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and is_async_test(item):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"), append=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
