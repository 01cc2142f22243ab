"""Webhooks: room and participant events POSTed as signed JSON to ``webhook_urls``.

Events: ``room_started`` (a room got its first member), ``participant_joined``,
``participant_left``, ``room_finished`` (its last member left), each with ``app``, ``room``,
the participant's ``easyrtcid`` and ``username`` where one is concerned, and times in
milliseconds since the epoch. Each attempt is signed with HMAC-SHA256 under ``webhook_secret``
over ``<t>.<raw body>``, ``t`` the attempt's time in Unix seconds (header ``X-EasyRTC-Signature:
t=<t>,sha256=<hex>``, as Stripe's): the receiver recomputes it, compares, and refuses a ``t``
older than a few minutes (``SIGNATURE_TOLERANCE``), so a captured request cannot be replayed
later; the body's ``id`` tells a retry from a new event. Redirects are not followed (the signed
body goes to the configured URL only): a 3xx counts as a refusal.

The signaling path only puts the event on a bounded queue per URL (no await). One task per URL
sends them in order, retrying failures (network errors, 5xx, 429) with exponential backoff up
to ``webhook_max_attempts`` tries; when a queue is full the new event is dropped and counted
(``easyrtc_webhook_events_dropped_total``). A receiver that hangs only delays its own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import orjson
from prometheus_client import CollectorRegistry, Counter

from ..events import Listener, Member
from ..logsafe import redacted_url, refusals

if TYPE_CHECKING:
    from ..options import Options

log = logging.getLogger("easyrtc_server.webhooks")

SIGNATURE_HEADER: Final = "X-EasyRTC-Signature"
EVENT_HEADER: Final = "X-EasyRTC-Event"
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 30.0


SIGNATURE_TOLERANCE: Final = 300
"""Seconds a receiver should accept a signature's ``t`` away from its own clock."""


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    """The signature header's value for ``body`` sent at ``now``: ``t=<unix s>,sha256=<hex>``."""
    t = int(time.time() if now is None else now)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},sha256={digest}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: float = SIGNATURE_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Does ``header`` sign ``body`` with ``secret``, at most ``tolerance`` seconds from ``now``?
    (For receivers written in Python.)"""
    fields = dict(part.strip().partition("=")[::2] for part in header.split(","))
    t = fields.get("t", "")
    if not t.isdigit() or len(t) > 12:
        return False
    if abs((time.time() if now is None else now) - int(t)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, int(t)), header.strip())


def _now_ms() -> int:
    return int(time.time() * 1000)


class Webhooks(Listener):
    """Turns room membership events into queued webhook deliveries."""

    def __init__(
        self,
        options: Options,
        registry: CollectorRegistry | None = None,
        *,
        backoff_first: float = BACKOFF_FIRST,
    ) -> None:
        assert options.webhook_secret is not None
        self.urls = options.webhook_urls
        self._secret = options.webhook_secret
        self.timeout = options.webhook_timeout
        self.max_attempts = options.webhook_max_attempts
        self.backoff_first = backoff_first
        self.queues: dict[str, asyncio.Queue[bytes]] = {
            url: asyncio.Queue(options.webhook_queue_size) for url in self.urls
        }
        reg = registry or CollectorRegistry()
        self.dropped = Counter(
            "easyrtc_webhook_events_dropped",
            "Webhook events dropped because a receiver's queue was full.",
            registry=reg,
        )
        self.failed = Counter(
            "easyrtc_webhook_events_failed",
            "Webhook events given up after every attempt failed.",
            registry=reg,
        )
        self.delivered = Counter(
            "easyrtc_webhook_events_delivered",
            "Webhook events a receiver accepted (2xx).",
            registry=reg,
        )
        self._room_started: dict[tuple[str, str], int] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- Listener ------------------------------------------------------------------------------

    def joined(self, member: Member, first: bool) -> None:
        now = _now_ms()
        if first:
            self._room_started[member.app, member.room] = now
            self.emit("room_started", {"app": member.app, "room": member.room, "startedAt": now})
        self.emit("participant_joined", self._participant(member, now, "joinedAt"))

    def left(self, member: Member, last: bool) -> None:
        now = _now_ms()
        self.emit("participant_left", self._participant(member, now, "leftAt"))
        if last:
            started = self._room_started.pop((member.app, member.room), None)
            body = {"app": member.app, "room": member.room, "startedAt": started}
            body["finishedAt"] = now
            self.emit("room_finished", body)

    @staticmethod
    def _participant(member: Member, now: int, key: str) -> dict[str, Any]:
        return {
            "app": member.app,
            "room": member.room,
            "easyrtcid": member.easyrtcid,
            "username": member.username,
            key: now,
        }

    # -- queueing ------------------------------------------------------------------------------

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Queue one event for every URL; never waits."""
        body = orjson.dumps(
            {"event": event, "id": uuid.uuid4().hex, "createdAt": _now_ms(), **data}
        )
        for url, queue in self.queues.items():
            try:
                queue.put_nowait(body)
            except asyncio.QueueFull:
                self.dropped.inc()
                shown = redacted_url(url)
                refusals.throttled(
                    log, "webhook " + url, logging.WARNING,
                    "webhook queue for %s is full: %s dropped", shown, event,
                )  # fmt: skip

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": "easyrtc-server webhooks"},
        )
        self._tasks = [
            asyncio.create_task(self._deliver_all(url, queue), name=f"webhooks {redacted_url(url)}")
            for url, queue in self.queues.items()
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        left = sum(queue.qsize() for queue in self.queues.values())
        if left:
            log.warning("%d webhook events not sent at shutdown", left)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver_all(self, url: str, queue: asyncio.Queue[bytes]) -> None:
        while True:
            body = await queue.get()
            await self._deliver(url, body)

    async def _deliver(self, url: str, body: bytes) -> None:
        session = self._session
        assert session is not None
        event = orjson.loads(body)["event"]
        headers = {"Content-Type": "application/json", EVENT_HEADER: event}
        delay = self.backoff_first
        for attempt in range(1, self.max_attempts + 1):
            problem: str
            try:
                headers[SIGNATURE_HEADER] = sign(self._secret, body)  # this attempt's time
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
                    if response.status < 300:
                        self.delivered.inc()
                        return
                    problem = f"HTTP {response.status}"
                    if response.status < 500 and response.status != 429:
                        break  # the receiver refuses it: trying again will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__} {exc}".strip().replace(url, redacted_url(url))
            if attempt < self.max_attempts:
                log.info(
                    "webhook %s to %s failed (%s); retry in %.1fs",
                    event, redacted_url(url), problem, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
        self.failed.inc()
        log.warning("webhook %s to %s given up: %s", event, redacted_url(url), problem)
