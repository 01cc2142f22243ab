"""HTTP hosting of the client files: content, types, caching, redirects, and never a byte from
outside the served folders, however the request path is spelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from easyrtc_server.clientfiles import OUR_CLIENT_DIR, RESUME_SCRIPT, ClientFiles, find_client_files
from easyrtc_server.web import (
    ADD_SLASH,
    CLIENT_CACHE_CONTROL,
    DEMOS_CACHE_CONTROL,
    add_client_routes,
    locate,
    safe_parts,
)

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "node_modules" / "open-easyrtc"
SECRET = "TOP-SECRET"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Coroutine[Any, Any, Client]]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """Served folders under ``site/``, with secrets beside and above them and symlinks out."""
    (tmp_path / "secret.txt").write_text(f"{SECRET} above the site\n")
    root = tmp_path / "site"
    root.mkdir()
    (root / "secret.txt").write_text(f"{SECRET} beside the served folders\n")

    api = root / "api"
    (api / "img").mkdir(parents=True)
    (api / "labs").mkdir()
    (api / "easyrtc.js").write_text("var easyrtc = {};\n")
    (api / "easyrtc_ft.js").write_text("var easyrtc_ft = {};\n")
    (api / "easyrtc.css").write_text(".easyrtc { color: red; }\n")
    (api / "img" / "easyrtc.png").write_bytes(PNG)
    (api / "img" / "x.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>\n")
    (api / "labs" / "easyrtc_rates.js").write_text("// rates\n")
    (api / ".hidden").write_text(f"{SECRET} hidden inside\n")
    (api / "escape").symlink_to(root / "secret.txt")
    (api / "escape_up").symlink_to(tmp_path / "secret.txt")
    (api / "escape_dir").symlink_to(root, target_is_directory=True)
    (api / "inside").symlink_to(api / "easyrtc.js")
    (api / "loop").symlink_to(api / "loop")

    sio = root / "sio"
    sio.mkdir()
    (sio / "socket.io.js").write_text("/* socket.io */\n//# sourceMappingURL=socket.io.js.map\n")
    (sio / "socket.io.js.map").write_text('{"version":3}\n')

    demos = root / "demos"
    (demos / "sub").mkdir(parents=True)
    (demos / "css").mkdir()
    (demos / "index.html").write_text("<html>demos index</html>\n")
    (demos / "page.html").write_text("<html>a page</html>\n")
    (demos / "sub" / "index.html").write_text("<html>sub index</html>\n")
    (demos / "css" / "style.css").write_text("body {}\n")
    (demos / "escape").symlink_to(root / "secret.txt")
    (demos / "escape_up").symlink_to(tmp_path / "secret.txt")
    (demos / "escape_dir").symlink_to(root, target_is_directory=True)
    return root


def site_files(site: Path) -> ClientFiles:
    return ClientFiles(api_dir=site / "api", socketio_js=site / "sio" / "socket.io.js")


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(files: ClientFiles, **options: Any) -> Client:
        app = web.Application()
        add_client_routes(app, files, **options)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(site: Path, make_client: MakeClient) -> Client:
    return await make_client(site_files(site), demos_dir=site / "demos")


async def raw_request(client: Client, target: str, method: str = "GET") -> tuple[int, bytes]:
    """Send ``target`` byte for byte (HTTP clients would normalise it); return status, body."""
    server = client.server
    assert server.host is not None and server.port is not None
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            writer.write((head + "\r\n").encode("latin-1"))
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
    status_line, _, body = data.partition(b"\r\n\r\n")
    return int(status_line.split(b" ", 2)[1]), body


# --- serving ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/easyrtc/easyrtc.js", "application/javascript"),
        ("/easyrtc/easyrtc_ft.js", "application/javascript"),
        ("/easyrtc/easyrtc.css", "text/css"),
        ("/easyrtc/img/easyrtc.png", "image/png"),
        ("/easyrtc/img/x.svg", "image/svg+xml"),
        ("/easyrtc/labs/easyrtc_rates.js", "application/javascript"),
        ("/socket.io/socket.io.js", "application/javascript"),
        ("/socket.io/socket.io.js.map", "application/json"),
    ],
)
async def test_client_files_are_served_with_their_type(
    client: Client, site: Path, path: str, content_type: str
) -> None:
    on_disk = {
        "/easyrtc/": site / "api",
        "/socket.io/": site / "sio",
    }
    prefix = next(p for p in on_disk if path.startswith(p))
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == content_type
    assert await resp.read() == (on_disk[prefix] / path[len(prefix) :]).read_bytes()
    assert resp.headers["Cache-Control"] == CLIENT_CACHE_CONTROL
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "ETag" in resp.headers and "Last-Modified" in resp.headers


async def test_our_resume_script_is_served_beside_the_client(client: Client) -> None:
    resp = await client.get("/easyrtc/easyrtc_resume.js")
    assert resp.status == 200
    assert resp.content_type == "application/javascript"
    assert await resp.read() == (OUR_CLIENT_DIR / RESUME_SCRIPT).read_bytes()
    assert resp.headers["Cache-Control"] == CLIENT_CACHE_CONTROL


async def test_text_files_declare_utf8(client: Client) -> None:
    resp = await client.get("/easyrtc/easyrtc.js")
    assert resp.charset == "utf-8"


async def test_symlink_inside_the_folder_is_served(client: Client) -> None:
    resp = await client.get("/easyrtc/inside")
    assert resp.status == 200
    assert await resp.text() == "var easyrtc = {};\n"


async def test_encoded_slash_inside_the_folder_is_fine(client: Client) -> None:
    status, body = await raw_request(client, "/easyrtc/img%2Feasyrtc.png")
    assert status == 200
    assert body == PNG


async def test_missing_file_is_a_small_html_404(client: Client) -> None:
    resp = await client.get("/easyrtc/nope.js")
    assert resp.status == 404
    assert resp.content_type == "text/html"
    assert "File Not Found" in await resp.text()


@pytest.mark.parametrize(
    "path",
    [
        "/easyrtc/",
        "/easyrtc/img",
        "/easyrtc/img/",
        "/easyrtc/.hidden",
        "/easyrtc/loop",
        "/easyrtc/easyrtc.js/",
        "/easyrtc/easyrtc.js/x",
        "/socket.io/socket.io.min.js",
    ],
)
async def test_folders_hidden_files_and_loops_are_not_served(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert SECRET not in await resp.text()


async def test_head_gives_headers_without_body(client: Client, site: Path) -> None:
    resp = await client.head("/easyrtc/easyrtc.js")
    assert resp.status == 200
    assert resp.content_type == "application/javascript"
    assert int(resp.headers["Content-Length"]) == (site / "api" / "easyrtc.js").stat().st_size
    assert await resp.read() == b""
    missing = await client.head("/easyrtc/nope.js")
    assert missing.status == 404
    assert await missing.read() == b""
    status, body = await raw_request(client, "/socket.io/socket.io.js", method="HEAD")
    assert (status, body) == (200, b"")


async def test_range_and_conditional_requests(client: Client) -> None:
    part = await client.get("/easyrtc/img/easyrtc.png", headers={"Range": "bytes=0-7"})
    assert part.status == 206
    assert await part.read() == PNG[:8]
    first = await client.get("/easyrtc/easyrtc.css")
    etag = first.headers["ETag"]
    again = await client.get("/easyrtc/easyrtc.css", headers={"If-None-Match": etag})
    assert again.status == 304
    since = first.headers["Last-Modified"]
    again = await client.get("/easyrtc/easyrtc.css", headers={"If-Modified-Since": since})
    assert again.status == 304


async def test_custom_api_path(site: Path, make_client: MakeClient) -> None:
    client = await make_client(site_files(site), api_path="/client/")
    assert (await client.get("/client/easyrtc.js")).status == 200
    assert (await client.get("/easyrtc/easyrtc.js")).status == 404


# --- demos -----------------------------------------------------------------------------------


async def test_demos_folder_redirects_to_its_index(client: Client) -> None:
    resp = await client.get("/demos", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/demos/"
    resp = await client.get("/demos/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert await resp.text() == "<html>demos index</html>\n"
    assert resp.headers["Cache-Control"] == DEMOS_CACHE_CONTROL


async def test_root_redirects_to_demos(client: Client) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/demos/"
    followed = await client.get("/")
    assert await followed.text() == "<html>demos index</html>\n"


async def test_demo_pages_and_subfolders(client: Client) -> None:
    assert await (await client.get("/demos/page.html")).text() == "<html>a page</html>\n"
    assert (await client.get("/demos/index.html")).status == 200
    resp = await client.get("/demos/sub?x=1", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == "/demos/sub/?x=1"
    assert await (await client.get("/demos/sub/")).text() == "<html>sub index</html>\n"
    css = await client.get("/demos/css/style.css")
    assert css.content_type == "text/css"
    # a folder without index.html is simply not found, not redirected
    assert (await client.get("/demos/css", allow_redirects=False)).status == 404
    assert (await client.get("/demos/css/")).status == 404


async def test_head_on_demos(client: Client) -> None:
    resp = await client.head("/demos/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    redirect = await client.head("/demos", allow_redirects=False)
    assert redirect.status == 302


async def test_no_root_redirect_when_disabled(site: Path, make_client: MakeClient) -> None:
    client = await make_client(site_files(site), demos_dir=site / "demos", index_redirect=False)
    assert (await client.get("/", allow_redirects=False)).status == 404
    assert (await client.get("/demos/")).status == 200


async def test_no_demos_without_a_demos_dir(site: Path, make_client: MakeClient) -> None:
    client = await make_client(site_files(site))
    assert (await client.get("/", allow_redirects=False)).status == 404
    assert (await client.get("/demos", allow_redirects=False)).status == 404
    assert (await client.get("/demos/")).status == 404


async def test_custom_demos_path(site: Path, make_client: MakeClient) -> None:
    client = await make_client(site_files(site), demos_dir=site / "demos", demos_path="/try")
    resp = await client.get("/try", allow_redirects=False)
    assert resp.headers["Location"] == "/try/"
    assert (await client.get("/", allow_redirects=False)).headers["Location"] == "/try/"
    assert (await client.get("/try/page.html")).status == 200


# --- traversal -------------------------------------------------------------------------------

TRAVERSALS = [
    "../secret.txt",
    "../../secret.txt",
    "..%2Fsecret.txt",
    "..%2f..%2fsecret.txt",
    "%2e%2e/secret.txt",
    "%2e%2e%2fsecret.txt",
    "%2E%2E%2F%2E%2E%2Fsecret.txt",
    ".%2e/secret.txt",
    "%2e./secret.txt",
    "%252e%252e%252fsecret.txt",
    "..%252fsecret.txt",
    "%25252e%25252e%25252fsecret.txt",
    "..\\secret.txt",
    "..\\..\\secret.txt",
    "..%5csecret.txt",
    "..%5C..%5Csecret.txt",
    "%2e%2e%5csecret.txt",
    "img/../../secret.txt",
    "img/..%2F..%2Fsecret.txt",
    "img%2F..%2F..%2Fsecret.txt",
    "./../secret.txt",
    ".../secret.txt",
    "....//secret.txt",
    "..;/secret.txt",
    "..%c0%afsecret.txt",
    "%c0%ae%c0%ae/secret.txt",
    "..%ef%bc%8fsecret.txt",
    "secret.txt%00",
    "%00../secret.txt",
    "easyrtc.js%00/../../secret.txt",
    "..%00/secret.txt",
    "escape",
    "escape_up",
    "escape_dir/secret.txt",
    "escape_dir%2Fsecret.txt",
    "{abs}",
    "{abs_encoded}",
    "%2F{abs_encoded}",
]


def fill(template: str, secret: Path) -> str:
    return template.format(abs=str(secret), abs_encoded=quote(str(secret), safe=""))


@pytest.mark.parametrize("prefix", ["/easyrtc/", "/demos/"])
@pytest.mark.parametrize("template", TRAVERSALS)
async def test_traversal_never_leaves_the_folder(
    client: Client, site: Path, prefix: str, template: str
) -> None:
    target = prefix + fill(template, site.parent / "secret.txt")
    status, body = await raw_request(client, target)
    assert status == 404, target
    assert SECRET.encode() not in body
    assert b"File Not Found" in body


@pytest.mark.parametrize(
    "target",
    [
        "/easyrtc/../secret.txt",
        "/easyrtc/..%2F..%2Fsecret.txt",
        "/demos/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/socket.io/socket.io.js/../../secret.txt",
        "/socket.io/..%2F..%2Fsecret.txt",
        "/socket.io/%2e%2e%2fsecret.txt",
        "/..%2F..%2Fsecret.txt",
        "/%2e%2e/secret.txt",
    ],
)
async def test_traversal_outside_any_static_route(client: Client, target: str) -> None:
    status, body = await raw_request(client, target)
    assert status == 404
    assert SECRET.encode() not in body


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1/easyrtc/../secret.txt",
        "http://127.0.0.1/easyrtc/..%2F..%2Fsecret.txt",
        "http://127.0.0.1/demos/%2e%2e/secret.txt",
    ],
)
async def test_absolute_form_request_targets(client: Client, target: str) -> None:
    status, body = await raw_request(client, target)
    assert status == 404
    assert SECRET.encode() not in body


async def test_raw_nul_byte_is_refused_by_the_http_parser(client: Client) -> None:
    status, body = await raw_request(client, "/easyrtc/easyrtc.js\x00/../../secret.txt")
    assert status == 400
    assert SECRET.encode() not in body


async def test_traversal_with_head(client: Client) -> None:
    status, body = await raw_request(client, "/easyrtc/..%2Fsecret.txt", method="HEAD")
    assert (status, body) == (404, b"")


async def test_server_keeps_serving_after_attacks(client: Client) -> None:
    for template in TRAVERSALS[:10]:
        await raw_request(client, "/easyrtc/" + template)
    assert (await client.get("/easyrtc/easyrtc.js")).status == 200


# --- the pure pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel",
    ["..", "../x", "a/../b", "./x", ".hidden", "a/.git/config", "a\\b", "x\x00", "/etc/passwd"],
)
def test_safe_parts_refuses(rel: str) -> None:
    assert safe_parts(rel) is None


def test_safe_parts_accepts_plain_paths() -> None:
    assert safe_parts("") == []
    assert safe_parts("img/easyrtc.png") == ["img", "easyrtc.png"]
    assert safe_parts("a//b/") == ["a", "b"]
    assert safe_parts("a..b/c.") == ["a..b", "c."]


def test_locate(site: Path) -> None:
    api, demos = site / "api", site / "demos"
    assert locate(api, "easyrtc.js") == (api / "easyrtc.js").resolve()
    assert locate(api, "inside") == (api / "easyrtc.js").resolve()
    assert locate(api, "escape") is None
    assert locate(api, "escape_dir/secret.txt") is None
    assert locate(api, "escape_dir/api/easyrtc.js") == (api / "easyrtc.js").resolve()
    assert locate(api, "loop") is None
    assert locate(api, "img") is None
    assert locate(api, "x" * 5000) is None
    assert locate(site / "missing", "easyrtc.js") is None
    assert locate(demos, "", "index.html") == (demos / "index.html").resolve()
    assert locate(demos, "sub", "index.html") == ADD_SLASH
    assert locate(demos, "sub/", "index.html") == (demos / "sub" / "index.html").resolve()
    assert locate(demos, "css", "index.html") is None


async def test_folder_served_through_a_symlink(
    site: Path, tmp_path: Path, make_client: MakeClient
) -> None:
    link = tmp_path / "api-link"
    link.symlink_to(site / "api", target_is_directory=True)
    client = await make_client(ClientFiles(api_dir=link, socketio_js=None))
    assert (await client.get("/easyrtc/easyrtc.js")).status == 200
    status, body = await raw_request(client, "/easyrtc/..%2Fsecret.txt")
    assert status == 404 and SECRET.encode() not in body


# --- missing assets --------------------------------------------------------------------------


async def test_missing_assets_give_404(make_client: MakeClient) -> None:
    files = ClientFiles(api_dir=None, socketio_js=None, problems=["run `npm ci`, please"])
    client = await make_client(files)
    for path in ["/easyrtc/easyrtc.js", "/socket.io/socket.io.js", "/socket.io/socket.io.js.map"]:
        resp = await client.get(path)
        assert resp.status == 404
        assert "File Not Found" in await resp.text()


async def test_found_nothing_still_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_client: MakeClient
) -> None:
    from easyrtc_server import clientfiles

    monkeypatch.delenv(clientfiles.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(clientfiles, "REPO_ROOT", tmp_path)
    files = find_client_files()
    assert files.problems
    client = await make_client(files, demos_dir=tmp_path / "no-demos")
    assert (await client.get("/easyrtc/easyrtc.js")).status == 404
    assert (await client.get("/demos/")).status == 404
    assert (await client.get("/demos", allow_redirects=False)).status == 302


async def test_api_can_be_left_out(site: Path, make_client: MakeClient) -> None:
    client = await make_client(site_files(site).without_api(), demos_dir=site / "demos")
    assert (await client.get("/easyrtc/easyrtc.js")).status == 404
    assert (await client.get("/socket.io/socket.io.js")).status == 200
    assert (await client.get("/demos/")).status == 200


async def test_files_removed_after_start_give_404(site: Path, make_client: MakeClient) -> None:
    client = await make_client(site_files(site), demos_dir=site / "demos")
    (site / "sio" / "socket.io.js.map").unlink()
    (site / "api" / "easyrtc.css").unlink()
    assert (await client.get("/socket.io/socket.io.js.map")).status == 404
    assert (await client.get("/easyrtc/easyrtc.css")).status == 404
    assert (await client.get("/socket.io/socket.io.js")).status == 200


# --- the real npm packages -------------------------------------------------------------------


@pytest.fixture
async def real_client(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.chdir(REPO)
    files = find_client_files()
    assert files.complete, files.problems
    return await make_client(files, demos_dir=PACKAGE / "demos")


@pytest.mark.parametrize(
    ("path", "on_disk", "content_type"),
    [
        ("/easyrtc/easyrtc.js", "open-easyrtc/api/easyrtc.js", "application/javascript"),
        ("/easyrtc/easyrtc_ft.js", "open-easyrtc/api/easyrtc_ft.js", "application/javascript"),
        ("/easyrtc/easyrtc.css", "open-easyrtc/api/easyrtc.css", "text/css"),
        ("/easyrtc/img/easyrtc.png", "open-easyrtc/api/img/easyrtc.png", "image/png"),
        (
            "/easyrtc/labs/easyrtc_rates.js",
            "open-easyrtc/api/labs/easyrtc_rates.js",
            "application/javascript",
        ),
        ("/socket.io/socket.io.js", "socket.io-client/dist/socket.io.js", "application/javascript"),
        (
            "/socket.io/socket.io.js.map",
            "socket.io-client/dist/socket.io.js.map",
            "application/json",
        ),
        ("/demos/", "open-easyrtc/demos/index.html", "text/html"),
        (
            "/demos/demo_audio_video_simple.html",
            "open-easyrtc/demos/demo_audio_video_simple.html",
            "text/html",
        ),
    ],
)
async def test_real_client_files(
    real_client: Client, path: str, on_disk: str, content_type: str
) -> None:
    resp = await real_client.get(path)
    assert resp.status == 200
    assert resp.content_type == content_type
    assert await resp.read() == (REPO / "node_modules" / on_disk).read_bytes()


@pytest.mark.parametrize(
    "target",
    [
        # the reference's hole (spec §9.1): its example TLS key, reachable from the demos route
        "/demos/..%2Fserver_example%2Fcerts%2Flocalhost.key",
        "/demos/..%2fserver_example/certs/localhost.key",
        "/demos/%2e%2e/server_example/certs/localhost.key",
        "/easyrtc/..%2Fserver_example%2Fcerts%2Flocalhost.key",
        "/easyrtc/img/..%2F..%2Fserver_example%2Fcerts%2Flocalhost.key",
        "/easyrtc/labs/%2e%2e%2f%2e%2e%2fpackage.json",
        "/easyrtc/..%2F..%2F..%2F..%2Fpackage.json",
    ],
)
async def test_real_package_secrets_stay_private(real_client: Client, target: str) -> None:
    status, body = await raw_request(real_client, target)
    assert status == 404
    assert b"PRIVATE KEY" not in body
    assert b'"name"' not in body


LEGACY = REPO / "node_modules" / "open-easyrtc-v2"
LEGACY_BUNDLE = REPO / "node_modules" / "socket.io-client-v2" / "dist" / "socket.io.js"


@pytest.mark.parametrize("client_dir", [LEGACY, LEGACY / "api"], ids=["package", "api"])
async def test_app_serves_the_legacy_client_with_the_given_bundle(client_dir: Path) -> None:
    from easyrtc_server.app import create_app
    from easyrtc_server.options import Options

    options = Options(client_dir=client_dir, socketio_js=LEGACY_BUNDLE, demos_enable=False)
    async with TestClient(TestServer(create_app(options), host="127.0.0.1")) as client:
        resp = await client.get("/easyrtc/easyrtc.js")
        assert resp.status == 200
        assert await resp.read() == (LEGACY / "api" / "easyrtc.js").read_bytes()
        resp = await client.get("/socket.io/socket.io.js")
        assert resp.status == 200
        body = await resp.read()
        assert body == LEGACY_BUNDLE.read_bytes()
        assert b"Socket.IO v2.4.0" in body


async def test_app_serves_the_reference_demos_from_demos_dir(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from easyrtc_server.app import create_app
    from easyrtc_server.options import Options

    demos = REPO / "node_modules" / "open-easyrtc" / "demos"
    async with TestClient(TestServer(create_app(Options(demos_dir=demos)), host="127.0.0.1")) as c:
        resp = await c.get("/demos/demo_instant_messaging_rooms.html")
        assert resp.status == 200
        assert await resp.read() == (demos / "demo_instant_messaging_rooms.html").read_bytes()
        assert (await c.get("/demos/js/demo_instant_messaging_rooms.js")).status == 200
        assert (await c.get("/easyrtc/easyrtc.js")).status == 200  # its ../easyrtc/easyrtc.js
    missing = Options(demos_dir=REPO / "no-such-folder")
    async with TestClient(TestServer(create_app(missing), host="127.0.0.1")) as c:
        assert (await c.get("/demos/index.html")).status == 404
    assert "demo pages not served" in caplog.text
