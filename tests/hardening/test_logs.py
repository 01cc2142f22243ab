"""A client cannot forge log lines, nor flood the log with its refusals."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from easyrtc_server.logsafe import MAX_ARG, RefusalLog, shown
from support.client import TIMEOUT, Client
from support.ours import running_server

FORGED = "x\n2026-12-01 06:00:00 CRITICAL easyrtc_server: disk on fire\r"


def _lines(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("easyrtc_server") and r.levelno >= level
    ]


async def test_client_text_in_log_lines_is_escaped_and_truncated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_server() as url:
        client = Client()
        await client.connect(url)
        await client.login()
        message = {"msgType": FORGED + "y" * 900_000, "targetEasyrtcid": "nobody", "msgData": 1}
        reply = await client.call("easyrtcMsg", message)
        assert reply["msgType"] == "error"
        await client.sio.disconnect()
    lines = _lines(caplog)
    refusal = next(line for line in lines if "disk on fire" in line)
    assert "x\\n2026-12-01 06:00:00 CRITICAL" in refusal
    assert all("\n" not in line and "\r" not in line for line in lines)
    assert max(len(line) for line in lines) < 3 * MAX_ARG


async def test_a_msg_type_nested_1000_deep_is_refused_without_an_error_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # the transport's own depth limit off, so that the core sees (and logs) the message
    async with (
        running_server({"max_json_depth": 0}) as url,
        aiohttp.ClientSession() as session,
    ):
        ws = await session.ws_connect(
            url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        )
        assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
        await ws.send_str("40")
        assert (await ws.receive_str(timeout=TIMEOUT)).startswith("40")
        auth = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}
        await ws.send_str("421" + json.dumps(["easyrtcAuth", auth]))
        assert (await ws.receive_str(timeout=TIMEOUT)).startswith("431")
        deep = "[" * 1000 + "1" + "]" * 1000  # JSON allows it (1,024); Python's repr does not
        await ws.send_str('422["easyrtcCmd",{"msgType":' + deep + ',"msgData":{}}]')
        reply = await ws.receive_str(timeout=TIMEOUT)
        while not reply.startswith("432"):  # pushes (a member list) may come first
            reply = await ws.receive_str(timeout=TIMEOUT)
        assert json.loads(reply[3:])[0]["msgData"]["errorCode"] == "MSG_REJECT_BAD_TYPE"
        await ws.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("nested too deep to show" in line for line in _lines(caplog, logging.INFO))


async def test_refusals_of_one_client_are_logged_once_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with running_server() as url:
        client = Client()
        await client.connect(url)
        await client.login()
        for _ in range(50):
            await client.cmd("noSuchCommand")
        await client.sio.disconnect()
        await client.disconnected.wait()
        bystander = Client()  # a full round trip after the close: the close was handled
        await bystander.connect(url)
        await bystander.login()
        await bystander.sio.disconnect()
    lines = [line for line in _lines(caplog, logging.INFO) if client.easyrtcid in line]
    assert len([line for line in lines if "MSG_REJECT_BAD_TYPE" in line]) == 1
    assert any("49 more refusals" in line for line in lines), lines


async def test_refusals_before_login_are_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with running_server({"strict_errors": True}) as url:
        client = Client()
        await client.connect(url)
        for _ in range(5):
            reply = await client.cmd("getRoomList")
            assert reply["msgData"]["errorCode"] == "MSG_REJECT_NO_AUTH"
        await client.sio.disconnect()
    assert not [line for line in _lines(caplog, logging.INFO) if "MSG_REJECT_NO_AUTH" in line]


def test_refusal_log_counts_within_a_window_and_reports_the_rest() -> None:
    now = [0.0]
    log = RefusalLog(clock=lambda: now[0])
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    log.logger.addHandler(handler)
    log.logger.setLevel(logging.INFO)
    try:
        for _ in range(5):
            log.note("abc", True, "refused %s", "thing")
        now[0] = 11.0
        log.note("abc", True, "refused %s", "thing")
        log.note("abc", True, "refused %s", "thing")
        log.forget("abc")
        log.note("anon", False, "refused %s", "thing")  # DEBUG: below the level, not kept
    finally:
        log.logger.removeHandler(handler)
        log.logger.setLevel(logging.NOTSET)
    assert [r.getMessage() for r in records] == [
        "refused thing",
        "refused thing (and 4 more refusals of abc in the last 11 s)",
        "abc: 1 more refusals not logged before it closed",
    ]


def test_shown_escapes_control_characters_and_cuts_long_text() -> None:
    assert shown("a\nb\x00c\\") == "a\\nb\\x00c\\"
    assert shown("é ok") == "é ok"
    long = shown("z" * 100_000)
    assert long.startswith("z" * MAX_ARG) and long.endswith(f"…(+{100_000 - MAX_ARG} chars)")
    assert shown(b"\xff\n" * 1000).startswith("\\xff\\n")
