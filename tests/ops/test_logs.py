"""JSON logs, the quiet access log, and ``check-config``."""

from __future__ import annotations

import io
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner

from easyrtc_server import cli
from easyrtc_server.app import create_app
from easyrtc_server.logformat import ConnectionFields, JsonFormatter, access_logger_class
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from support.ports import free_port

from .opskit import clients, served
from .test_startup import _command, _env, _lines_from


@contextmanager
def json_lines(server: EasyRtcServer) -> Iterator[list[dict[str, Any]]]:
    """Records of the ``easyrtc_server`` logger as parsed JSON lines, while the block runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ConnectionFields(server))
    logger = logging.getLogger("easyrtc_server")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        lines.extend(orjson.loads(line) for line in stream.getvalue().splitlines())


async def test_json_lines_carry_the_connection_fields() -> None:
    async with served() as (server, url), clients(url, 1) as (alice,):
        await alice.login(roomJoin={"lobby": {"roomName": "lobby"}})
        with json_lines(server) as lines:
            reply = await alice.cmd("roomJoin", msgData={"roomJoin": {"bad name!": {}}})
            assert reply["msgType"] == "error"
    (refusal,) = [line for line in lines if "rejected" in line["message"]]
    assert refusal["level"] == "info"
    assert refusal["logger"] == "easyrtc_server"
    assert refusal["easyrtcid"] == alice.easyrtcid
    assert (refusal["app"], refusal["rooms"]) == ("default", ["lobby"])
    assert refusal["time"].endswith("+00:00")


def test_json_formatter_keeps_extras_and_exceptions() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    record.app = "default"
    try:
        raise ValueError("bad")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = orjson.loads(JsonFormatter().format(record))
    assert (line["message"], line["level"], line["app"]) == ("boom now", "error", "default")
    assert "ValueError: bad" in line["exception"]


async def _requests_logged(
    caplog: pytest.LogCaptureFixture,
    paths: tuple[str, ...] = ("/healthz", "/socket.io/?EIO=4&transport=polling"),
    **options: Any,
) -> list[str]:
    server = EasyRtcServer(Options.from_mapping(options))
    runner = web.AppRunner(
        create_app(server=server), access_log_class=access_logger_class(server.options)
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                for path in paths:
                    async with http.get(path) as response:
                        assert response.status == 200
    finally:
        await runner.cleanup()
    return [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]


async def test_access_log_leaves_out_socketio_unless_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet = await _requests_logged(caplog)
    assert len(quiet) == 1 and "GET /healthz" in quiet[0]
    caplog.clear()
    full = await _requests_logged(caplog, access_log_enable=True)
    assert len(full) == 2 and "GET /socket.io/?EIO=4" in full[1]


async def test_access_log_hides_resume_keys_and_tokens(caplog: pytest.LogCaptureFixture) -> None:
    key, token = "K" * 40, "payload.signature"
    path = f"/socket.io/?EIO=3&transport=polling&easyrtcResumeKey={key}&easyrtcResumeToken={token}"
    [line] = await _requests_logged(caplog, (path,), access_log_enable=True)
    assert "GET /socket.io/?EIO=3" in line and "easyrtcResumeKey=redacted" in line
    assert key not in line and token not in line


def test_command_line_logs_json(tmp_path: Path) -> None:
    port = free_port()
    with subprocess.Popen(
        _command("--host", "127.0.0.1", "--port", str(port), "--log-format", "json"),
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        assert proc.stderr is not None
        try:
            (first,) = _lines_from(proc.stderr, "listening on", 1)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
    line = orjson.loads(first)
    assert line["level"] == "info" and line["logger"] == "easyrtc_server"
    assert line["message"].startswith(f"listening on http://127.0.0.1:{port}/")


def test_check_config_validates_a_file_without_starting(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        'port = 9000\nroomMaxConnection = 4\n[webhook]\nurls = ["https://h.example/"]\n'
        'secret = "s"\n'
    )
    result = CliRunner().invoke(cli.main, ["check-config", str(good)])
    assert (result.exit_code, result.output) == (0, f"{good}: OK (4 options set)\n")

    bad = tmp_path / "bad.toml"
    bad.write_text("port = 70000\n")
    result = CliRunner().invoke(cli.main, ["check-config", str(bad)])
    assert result.exit_code == 1
    assert "option 'port' must be a port number (0-65535), got 70000" in result.output
    assert f"config file {bad}, key 'port'" in result.output

    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n")
    result = CliRunner().invoke(cli.main, ["check-config", str(unknown)])
    assert result.exit_code == 1 and "unknown option 'prot'" in result.output
    result = CliRunner().invoke(cli.main, ["check-config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1 and "cannot read config file" in result.output
