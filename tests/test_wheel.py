"""The wheel as a Python user gets it: built from the sdist, installed into a fresh virtualenv
outside the checkout, started from an empty folder, it serves the client files it carries and
the demos work in Chromium.

The sdist and wheel are built once per session (``python -m build --no-isolation``: the locked
hatchling of the test venv builds them, and the wheel is built from the sdist, so the bundled client
files come from ``npm ci`` of ``package-lock.json``), and installed once into a virtualenv under the
session's temporary folder: its dependencies at the versions of ``requirements-server.txt``,
hash-checked, then the wheel itself, whose metadata ranges ``pip check`` holds against them.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect
from yarl import URL

from browser.browserkit import CHROMIUM_ARGS, Demos
from support.ports import free_port

REPO = Path(__file__).resolve().parents[1]
LOCK = json.loads((REPO / "package-lock.json").read_text())
EASYRTC_VERSION = LOCK["packages"]["node_modules/open-easyrtc"]["version"]
SOCKETIO_VERSION = LOCK["packages"]["node_modules/socket.io-client"]["version"]
CLIENT_IN_WHEEL = "easyrtc_server/client"
START_TIMEOUT = 60.0  # seconds for the installed server to listen (a bound on a hang)
JS_TYPES = {"application/javascript", "text/javascript"}


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class Installed:
    venv: Path
    workdir: Path
    """An empty folder far from the checkout, to run the server in."""
    env: dict[str, str]
    """The environment without anything pointing at the checkout."""

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "easyrtc-server"


def _clean_env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("EASYRTC_", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"))
    }
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if not part.startswith(str(REPO))
    )
    return env


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``python -m build``: the sdist, then the wheel built from it, by the locked backend."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return Built(sdist, wheel)


@pytest.fixture(scope="session")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel installed with pip into a new virtualenv: its dependencies from the index at
    the locked versions (hash-checked), then the wheel, whose declared ranges must admit them."""
    root = tmp_path_factory.mktemp("user")
    venv = root / "venv"
    env = _clean_env()
    pip = str(venv / "bin" / "pip")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    for command in (
        [pip, "install", "-q", "--require-hashes", "-r", str(REPO / "requirements-server.txt")],
        [pip, "install", "-q", "--no-deps", str(built.wheel)],
        [pip, "check"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    workdir = root / "somewhere"
    workdir.mkdir()
    return Installed(venv, workdir, env)


@asynccontextmanager
async def running(installed: Installed) -> AsyncIterator[tuple[str, Path]]:
    """``easyrtc-server`` started from the empty folder; yields its URL and its log file."""
    port = free_port()
    log = installed.workdir / f"server-{port}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            str(installed.command),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            cwd=installed.workdir,
            env=installed.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        await _wait_listening(port, process, log)
        yield f"http://127.0.0.1:{port}", log
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_listening(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    """Until the port accepts connections (nothing to await: the server prints no such event)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while True:
        if process.returncode is not None:
            pytest.fail(f"easyrtc-server exited with {process.returncode}:\n{_read(log)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                pytest.fail(f"easyrtc-server did not listen in time:\n{_read(log)}")
            await asyncio.sleep(0.05)
        else:
            writer.close()
            await writer.wait_closed()
            return


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


class _PageLinks(HTMLParser):
    """The scripts, stylesheets and same-site pages a demo page refers to."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.pages: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src"):
            self.scripts.append(str(values["src"]))
        elif tag == "link" and values.get("rel") == "stylesheet" and values.get("href"):
            self.stylesheets.append(str(values["href"]))
        elif tag == "a" and str(values.get("href") or "").split("?")[0].endswith(".html"):
            self.pages.append(str(values["href"]).split("?")[0])


# --- what is in the wheel and the sdist ---------------------------------------------------------


def test_wheel_carries_the_locked_client_files_with_their_licences(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        easyrtc_licence = wheel.read(f"{CLIENT_IN_WHEEL}/open-easyrtc/LICENSE").decode()
        socketio_licence = wheel.read(f"{CLIENT_IN_WHEEL}/socket.io-client/LICENSE").decode()
        easyrtc_package = json.loads(wheel.read(f"{CLIENT_IN_WHEEL}/open-easyrtc/package.json"))
        socketio_package = json.loads(
            wheel.read(f"{CLIENT_IN_WHEEL}/socket.io-client/package.json")
        )
        metadata = wheel.read("easyrtc_server-0.1.0.dist-info/METADATA").decode()
    assert {
        f"{CLIENT_IN_WHEEL}/open-easyrtc/api/easyrtc.js",
        f"{CLIENT_IN_WHEEL}/open-easyrtc/api/easyrtc.css",
        f"{CLIENT_IN_WHEEL}/open-easyrtc/LICENSE",
        f"{CLIENT_IN_WHEEL}/socket.io-client/dist/socket.io.js",
        f"{CLIENT_IN_WHEEL}/socket.io-client/dist/socket.io.js.map",
        f"{CLIENT_IN_WHEEL}/socket.io-client/LICENSE",
        "easyrtc_server/demos/index.html",
        "easyrtc_server/clientjs/easyrtc_resume.js",
        "easyrtc_server-0.1.0.dist-info/licenses/LICENSE",
    } <= names
    assert "Redistribution and use in source and binary forms" in easyrtc_licence  # BSD
    assert socketio_licence.startswith("The MIT License")
    assert (easyrtc_package["version"], easyrtc_package["license"]) == (
        EASYRTC_VERSION,
        "BSD-2-Clause",
    )
    assert (socketio_package["version"], socketio_package["license"]) == (SOCKETIO_VERSION, "MIT")
    assert "License-Expression: BSD-2-Clause" in metadata.splitlines()
    assert not [name for name in names if "node_modules" in name]


def test_sdist_holds_the_lock_and_no_third_party_files(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"package.json", "package-lock.json", "build_client.py", "LICENSE"} <= names
    assert not [name for name in names if "node_modules" in name or "/client/" in name]


def test_sdist_without_npm_says_what_is_missing(built: Built, tmp_path: Path) -> None:
    with tarfile.open(built.sdist) as sdist:
        sdist.extractall(tmp_path, filter="data")
    [source] = tmp_path.iterdir()
    env = _clean_env() | {"EASYRTC_NPM": "npm-is-not-installed"}
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", str(source)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"open-easyrtc {EASYRTC_VERSION}, socket.io-client {SOCKETIO_VERSION}" in output
    assert "npm was not found" in output
    assert "Install Node.js and npm" in output
    assert not list(source.glob("dist/*.whl"))


def test_editable_install_needs_neither_npm_nor_node_modules(built: Built, tmp_path: Path) -> None:
    """``pip install -e .`` (PEP 660 ``build_editable``) skips the client files: a checkout
    serves its own node_modules."""
    with tarfile.open(built.sdist) as sdist:
        sdist.extractall(tmp_path, filter="data")
    [source] = tmp_path.iterdir()
    env = _clean_env() | {"EASYRTC_NPM": "npm-is-not-installed"}
    script = "from hatchling.build import build_editable; print(build_editable('out'))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=source,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(source / "out" / result.stdout.split()[-1]) as wheel:
        names = wheel.namelist()
    assert not [name for name in names if name.startswith(CLIENT_IN_WHEEL + "/")]
    assert any(name.endswith(".pth") for name in names)


# --- the build hook on its own --------------------------------------------------------------


@pytest.fixture
def build_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(REPO))
    module = importlib.import_module("build_client")
    yield module
    sys.modules.pop("build_client", None)


def test_checkout_node_modules_matching_the_lock_need_no_npm(
    build_client: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EASYRTC_NPM", "npm-is-not-installed")
    target = build_client.stage_client_files(REPO, tmp_path / "client")
    api = REPO / "node_modules" / "open-easyrtc" / "api"
    assert (target / "open-easyrtc" / "api" / "easyrtc.js").read_bytes() == (
        api / "easyrtc.js"
    ).read_bytes()
    assert (target / "socket.io-client" / "LICENSE").is_file()


def test_node_modules_of_other_versions_are_not_bundled(
    build_client: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(REPO / "package.json", source)
    shutil.copy(REPO / "package-lock.json", source)
    shutil.copytree(
        REPO / "node_modules" / "open-easyrtc-v2", source / "node_modules" / "open-easyrtc"
    )
    shutil.copytree(
        REPO / "node_modules" / "socket.io-client", source / "node_modules" / "socket.io-client"
    )
    monkeypatch.setenv("EASYRTC_NPM", "npm-is-not-installed")
    with pytest.raises(build_client.ClientFilesError, match="npm was not found"):
        build_client.stage_client_files(source, tmp_path / "client")
    assert not (tmp_path / "client").exists()


# --- the installed server -------------------------------------------------------------------


def test_version_names_the_bundled_client(installed: Installed) -> None:
    result = subprocess.run(
        [str(installed.command), "--version"],
        cwd=installed.workdir,
        env=installed.env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "easyrtc-server 0.1.0"
    assert f"open-easyrtc {EASYRTC_VERSION} from {installed.venv.resolve()}" in lines[1]
    assert f"socket.io-client {SOCKETIO_VERSION} from {installed.venv.resolve()}" in lines[1]
    assert lines[2] == (
        f"bundled client files: open-easyrtc {EASYRTC_VERSION}, socket.io-client {SOCKETIO_VERSION}"
    )


async def test_installed_server_serves_the_client_and_every_demo_script(
    installed: Installed,
) -> None:
    async with running(installed) as (url, log), aiohttp.ClientSession() as http:
        for path, pinned in [
            ("/easyrtc/easyrtc.js", REPO / "node_modules/open-easyrtc/api/easyrtc.js"),
            ("/socket.io/socket.io.js", REPO / "node_modules/socket.io-client/dist/socket.io.js"),
            ("/easyrtc/easyrtc_resume.js", REPO / "src/easyrtc_server/clientjs/easyrtc_resume.js"),
        ]:
            async with http.get(url + path) as response:
                assert response.status == 200, path
                assert response.content_type in JS_TYPES, path
                assert await response.read() == pinned.read_bytes(), path

        index = URL(url) / "demos" / ""
        async with http.get(index) as response:
            assert response.status == 200
            links = _PageLinks()
            links.feed(await response.text())
        pages = sorted(set(links.pages))
        assert pages == ["chat.html", "datachannel.html", "multiparty.html", "video.html"]
        checked: set[str] = set()
        for page in [index, *(index.join(URL(name)) for name in pages)]:
            async with http.get(page) as response:
                assert response.status == 200, page
                assert response.content_type == "text/html", page
                links = _PageLinks()
                links.feed(await response.text())
            assert links.scripts or page == index, f"{page} loads no script"
            wanted = [(src, JS_TYPES) for src in links.scripts]
            wanted += [(href, {"text/css"}) for href in links.stylesheets]
            for src, types in wanted:
                target = page.join(URL(src))
                async with http.get(target) as response:
                    assert response.status == 200, f"{target} (from {page})"
                    assert response.content_type in types, f"{target} (from {page})"
                checked.add(target.path)
        assert {"/easyrtc/easyrtc.js", "/socket.io/socket.io.js", "/demos/demo.js"} <= checked

    startup = _read(log)
    assert (
        f"client files: open-easyrtc {EASYRTC_VERSION} from {installed.venv.resolve()}" in startup
    )
    assert "(package)" in startup


async def test_data_channel_between_two_chromium_pages(installed: Installed) -> None:
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    async with running(installed) as (url, _), async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        demos = Demos(browser, url, "wheel")
        try:
            alice, bob = await demos.open_many("datachannel.html", "alice", "bob")
            alice_id, bob_id = await alice.my_id(), await bob.my_id()
            await alice.peer(bob_id).get_by_role("button", name="Connect").click()
            await expect(alice.peer(bob_id)).to_have_attribute("data-channel", "open")
            await expect(bob.peer(alice_id)).to_have_attribute("data-channel", "open")

            await alice.page.select_option("#target", bob_id)
            await alice.page.fill("#message", "hello from a pip install")
            await alice.page.get_by_role("button", name="Send").click()
            received = bob.page.locator(f'#messages li[data-from="{alice_id}"]')
            await expect(received.locator(".text")).to_have_text("hello from a pip install")
            await expect(received).to_have_attribute("data-via", "datachannel")
            assert demos.errors() == {}
        except BaseException:
            await demos.save_failure("wheel-datachannel")
            raise
        finally:
            await demos.close_all()
            await browser.close()
