"""Webhooks against a real local receiver (an aiohttp server on a free port)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web

from easyrtc_server.operations.webhooks import Webhooks, verify
from easyrtc_server.options import Options
from support.client import TIMEOUT
from support.webserver import posts_served

from .opskit import clients, scrape, served, value

SECRET = "whsec-test-0123456789"


class Receiver:
    """Collects webhook POSTs; ``statuses`` are answered in turn (then 200); may hang."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
        self.statuses: list[int] = []
        self.hang = False
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.redirects = 0
        self.redirected_twice = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrived.set()
        if self.hang:
            await self.release.wait()
        self.received.put_nowait((dict(request.headers), body))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def moved(self, _request: web.Request) -> web.Response:
        """A receiver that moved: a redirect to ``/hook``."""
        self.redirects += 1
        if self.redirects == 2:
            self.redirected_twice.set()
        return web.Response(status=307, headers={"Location": "/hook"})

    async def next_raw(self) -> tuple[dict[str, str], bytes]:
        return await asyncio.wait_for(self.received.get(), TIMEOUT)

    async def next(self) -> tuple[dict[str, str], dict[str, Any]]:
        headers, body = await self.next_raw()
        return headers, orjson.loads(body)


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    async with posts_served({"/hook": hook.handle, "/moved": hook.moved}) as base:
        try:
            yield hook, f"{base}/hook"
        finally:
            hook.release.set()


async def test_signed_events_in_order_for_one_room() -> None:
    async with (
        receiver() as (hook, hook_url),
        served(webhook_urls=[hook_url], webhook_secret=SECRET) as (_, url),
        clients(url, 2) as (alice, bob),
    ):
        lobby = {"lobby": {"roomName": "lobby"}}
        await alice.login(username="alice", roomJoin=lobby)
        await bob.login(username="bob", roomJoin=lobby)
        await alice.cmd("roomLeave", msgData={"roomLeave": lobby})
        await bob.sio.disconnect()
        raw = [await hook.next_raw() for _ in range(6)]
    events = [(headers, orjson.loads(body)) for headers, body in raw]
    for headers, body in raw:
        assert headers["X-EasyRTC-Event"] == orjson.loads(body)["event"]
        signature = headers["X-EasyRTC-Signature"]
        t = int(signature.split(",")[0].removeprefix("t="))
        assert abs(time.time() - t) < 60
        signed = f"{t}.".encode() + body
        expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        assert signature == f"t={t},sha256={expected}"
        assert verify(SECRET, body, signature)
        assert not verify("another-secret", body, signature)
        assert not verify(SECRET, body, signature, now=t + 301)  # replayed later: refused
        assert headers["Content-Type"] == "application/json"
    seen = [(e["event"], e["room"], e.get("username")) for _, e in events]
    assert seen == [
        ("room_started", "lobby", None),
        ("participant_joined", "lobby", "alice"),
        ("participant_joined", "lobby", "bob"),
        ("participant_left", "lobby", "alice"),
        ("participant_left", "lobby", "bob"),
        ("room_finished", "lobby", None),
    ]
    _, finished = events[-1]
    assert finished["startedAt"] == events[0][1]["startedAt"] <= finished["finishedAt"]
    ids = {e["easyrtcid"] for _, e in events if "easyrtcid" in e}
    assert ids == {alice.easyrtcid, bob.easyrtcid}
    assert all(e["app"] == "default" for _, e in events)


async def test_room_finished_follows_the_last_leave() -> None:
    async with (
        receiver() as (hook, hook_url),
        served(webhook_urls=[hook_url], webhook_secret=SECRET) as (_, url),
        clients(url, 1) as (alice,),
    ):
        await alice.login(roomJoin={"solo": {"roomName": "solo"}})
        await alice.sio.disconnect()
        names = [(await hook.next())[1] for _ in range(4)]
    assert [e["event"] for e in names] == [
        "room_started",
        "participant_joined",
        "participant_left",
        "room_finished",
    ]
    started, finished = names[0], names[3]
    assert finished["startedAt"] == started["startedAt"] <= finished["finishedAt"]
    assert "easyrtcid" not in finished


async def test_a_hanging_receiver_does_not_delay_relays() -> None:
    async with (
        receiver() as (hook, hook_url),
        served(webhook_urls=[hook_url], webhook_secret=SECRET, webhook_timeout=30) as (_, url),
        clients(url, 2) as (alice, bob),
    ):
        hook.hang = True
        await alice.login()
        await bob.login()
        await asyncio.wait_for(hook.arrived.wait(), TIMEOUT)  # a request is now hanging
        start = time.perf_counter()
        for n in range(20):
            await alice.cmd("candidate", targetEasyrtcid=bob.easyrtcid, msgData={"n": n})
        got = [(await bob.next_cmd()) for _ in range(20)]
        elapsed = time.perf_counter() - start
        assert [(p["msgType"], p["msgData"]["n"]) for p in got] == [
            ("candidate", n) for n in range(20)
        ]
        assert elapsed < 2.0, elapsed
        assert hook.received.empty()  # still hanging


async def test_retried_after_a_500_with_the_same_event() -> None:
    async with (
        receiver() as (hook, hook_url),
        served(webhook_urls=[hook_url], webhook_secret=SECRET) as (_, url),
        clients(url, 1) as (alice,),
    ):
        hook.statuses = [500]
        await alice.login()
        _, first = await hook.next()
        _, again = await hook.next()
        assert first == again and first["event"] == "room_started"
        _, joined = await hook.next()
        assert joined["event"] == "participant_joined"
        _, samples = await scrape(url + "/metrics")
    assert value(samples, "easyrtc_webhook_events_delivered_total") >= 2
    assert value(samples, "easyrtc_webhook_events_failed_total") == 0


async def test_a_full_queue_drops_and_counts() -> None:
    async with (
        receiver() as (hook, hook_url),
        served(webhook_urls=[hook_url], webhook_secret=SECRET, webhook_queue_size=1) as (
            server,
            url,
        ),
        clients(url, 3) as made,
    ):
        hook.hang = True
        for client in made:
            await client.login()  # 4 events: room_started and three participant_joined
        webhooks = _webhooks(server)
        _, samples = await scrape(url + "/metrics")
        dropped = value(samples, "easyrtc_webhook_events_dropped_total")
        queued = webhooks.queues[hook_url].qsize()
        in_flight = 1 if hook.arrived.is_set() else 0
    assert dropped >= 1
    assert dropped + queued + in_flight == 4


def _webhooks(app_server: Any) -> Webhooks:
    (found,) = [x for x in app_server.events.listeners if isinstance(x, Webhooks)]
    return found


def test_dropped_events_log_one_line_per_receiver_without_its_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token_url = "http://127.0.0.1:9/hooks/T0K3N-SECRET?token=QUERY-SECRET"
    options = Options(webhook_urls=(token_url,), webhook_secret=SECRET, webhook_queue_size=1)
    webhooks = Webhooks(options)
    with caplog.at_level(logging.INFO, logger="easyrtc_server"):
        for n in range(200):  # not started: the queue of one is full after the first
            webhooks.emit("participant_joined", {"n": n})
    assert webhooks.dropped._value.get() == 199
    lines = [r.getMessage() for r in caplog.records if "webhook" in r.getMessage()]
    assert lines == ["webhook queue for http://127.0.0.1:9/… is full: participant_joined dropped"]
    assert "SECRET" not in caplog.text


async def test_a_redirect_is_not_followed_with_the_signed_body() -> None:
    async with receiver() as (hook, hook_url):
        moved = hook_url.replace("/hook", "/moved")
        options = Options(webhook_urls=(moved,), webhook_secret=SECRET)
        webhooks = Webhooks(options)
        await webhooks.start()
        try:
            webhooks.emit("room_started", {"app": "a", "room": "r"})
            webhooks.emit("room_finished", {"app": "a", "room": "r"})
            # one URL's events go in order: at the second redirect the first is settled
            await asyncio.wait_for(hook.redirected_twice.wait(), TIMEOUT)
        finally:
            await webhooks.stop()
    assert hook.received.empty()
    assert webhooks.failed._value.get() >= 1
    assert webhooks.delivered._value.get() == 0
