"""Hypothesis against a live server over real sockets: raw Engine.IO/Socket.IO frames, EasyRTC
payloads, polling bodies. After every example the server must still log a new client in, and
must have logged no ERROR (an uncaught exception). Short: a few seconds."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from easyrtc_server.app import create_app
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer
from support.ports import free_port
from support.rawsocket import connected_socket

TIMEOUT = 10.0
FUZZ = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
AUTH = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}
STILL_ALIVE = {"msgType": "stillAlive", "msgData": {}}


class Errors(logging.Handler):
    """Keeps every ERROR (or worse) record, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class LiveServer:
    """Our server on its own event loop in a thread, so each example can ``asyncio.run``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # strict_errors: every payload gets an answer or a close, so a hang shows (by default a
        # message for the server no hook handles gets none, as from the reference)
        self.server = EasyRtcServer(Options(message_rate=0, login_timeout=2, strict_errors=True))
        self.runner = web.AppRunner(create_app(server=self.server), handle_signals=False)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        self._run(self._start())
        return self

    def __exit__(self, *_: object) -> None:
        self._run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT * 3)


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LiveServer, Errors]]:
    errors = Errors()
    root = logging.getLogger()
    root.addHandler(errors)
    try:
        with LiveServer() as server:
            yield server, errors
    finally:
        root.removeHandler(errors)


async def _ack(ws: aiohttp.ClientWebSocketResponse, ack_id: int) -> Any:
    """The acknowledgement ``ack_id``, skipping pushes and pings; None if the socket closed."""
    prefix = f"43{ack_id}["
    while True:
        message = await ws.receive(timeout=TIMEOUT)
        if message.type != aiohttp.WSMsgType.TEXT:
            return None
        if message.data == "2":
            await ws.send_str("3")
        elif message.data.startswith(prefix):
            return json.loads(message.data[len(prefix) - 1 :])[0]


async def _still_serving(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await connected_socket(session, url)
        await ws.send_str("4277" + json.dumps(["easyrtcAuth", AUTH]))
        token = await _ack(ws, 77)
        assert token is not None and token["msgType"] == "token", token
        await ws.close()


def _check(live: tuple[LiveServer, Errors]) -> None:
    server, errors = live
    asyncio.run(_still_serving(server.url))
    assert not errors.records, [errors.format(r) for r in errors.records]


# -- strategies -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)  # fmt: skip

MSG_TYPES = st.sampled_from(
    ["candidate", "offer", "answer", "hangup", "roomJoin", "roomLeave", "setPresence",
     "setRoomApiField", "setUserCfg", "getIceConfig", "getRoomList", "stillAlive"]
) | st.text(max_size=12)  # fmt: skip

easyrtc_bodies = st.fixed_dictionaries(
    {"msgType": MSG_TYPES | json_values},
    optional={
        "msgData": json_values,
        "targetEasyrtcid": json_values,
        "targetRoom": st.sampled_from(["default", "x"]) | json_values,
        "targetGroup": json_values,
    },
)

frames = st.one_of(
    st.tuples(
        st.sampled_from(["0", "1", "2", "3", "4", "5", "6", "40", "41", "42", "43", "44", "45",
                         "46", "2probe", "3probe", "451-", "42/x,", "4299"]),
        st.text(max_size=60) | json_values.map(json.dumps),
    ).map("".join),
    st.binary(max_size=80),
)  # fmt: skip


# -- the properties ---------------------------------------------------------------------------


@EXAMPLES
@given(sequence=st.lists(frames, min_size=1, max_size=8), login=st.booleans())
def test_raw_frames_never_break_the_server(
    live: tuple[LiveServer, Errors], sequence: list[str | bytes], login: bool
) -> None:
    async def send() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await connected_socket(session, live[0].url)
            if login:
                await ws.send_str("421" + json.dumps(["easyrtcAuth", AUTH]))
                assert await _ack(ws, 1) is not None
            for frame in sequence:
                if ws.closed:
                    break
                try:
                    await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
                except aiohttp.ClientConnectionResetError:
                    break
            await ws.close()

    asyncio.run(send())
    _check(live)


@EXAMPLES
@given(
    event=st.sampled_from(["easyrtcCmd", "easyrtcMsg", "easyrtcAuth"]) | st.text(max_size=10),
    bodies=st.lists(easyrtc_bodies | json_values, min_size=1, max_size=6),
)
def test_easyrtc_payloads_get_an_answer_or_a_close(
    live: tuple[LiveServer, Errors], event: str, bodies: list[Any]
) -> None:
    async def send() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await connected_socket(session, live[0].url)
            await ws.send_str("421" + json.dumps(["easyrtcAuth", AUTH]))
            assert (await _ack(ws, 1))["msgType"] == "token"
            for ack_id, body in enumerate(bodies, start=2):
                await ws.send_str(f"42{ack_id}" + json.dumps([event, body]))
                if event not in ("easyrtcCmd", "easyrtcMsg", "easyrtcAuth"):
                    # other events get no answer: the next round trip shows it was handled
                    await ws.send_str("421000" + json.dumps(["easyrtcCmd", STILL_ALIVE]))
                    assert await _ack(ws, 1000) is not None
                    continue
                reply = await _ack(ws, ack_id)
                if reply is None:  # closed: only a login (failed or not) may do that
                    assert event == "easyrtcAuth"
                    break
                if event in ("easyrtcCmd", "easyrtcMsg"):
                    assert isinstance(reply, dict) and "msgType" in reply, reply
            await ws.close()

    asyncio.run(send())
    _check(live)


@EXAMPLES
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_polling_bodies_never_break_the_server(
    live: tuple[LiveServer, Errors], body: bytes
) -> None:
    async def send() -> None:
        async with aiohttp.ClientSession() as session:
            base = live[0].url + "/socket.io/?EIO=4&transport=polling"
            async with session.get(base) as response:
                sid = json.loads((await response.text())[1:])["sid"]
            async with session.post(f"{base}&sid={sid}", data=body) as response:
                assert response.status < 500, response.status

    asyncio.run(send())
    _check(live)


def test_bench_fuzz_short_run_finds_no_uncaught_exception(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    run = subprocess.run(
        [sys.executable, str(FUZZ), "--messages", "3000", "--clients", "3", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    result = json.loads(out.read_text())
    assert run.returncode == 0, (result["examples"], run.stderr[-2000:])
    assert result["uncaught_exceptions"] == 0 and result["fresh_login_after"]
    assert result["messages_sent"] >= 3000
