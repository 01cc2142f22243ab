"""Prometheus metrics of one server, in its own ``CollectorRegistry``.

Counters are kept by a ``Listener`` of the server's events; every label value is from a fixed
set (unknown ``msgType``s count as ``other``) and the children are bound once, so counting a
relayed message is a dict lookup and an increment. The per-message counters (messages in and
out, relays, errors) are ``Tally`` children, a plain integer, exported by a collector at scrape
time: a ``prometheus_client`` child takes a mutex on every increment, which cost about 0.6 µs
each here (four per relayed candidate, ten times the rest of the bookkeeping), and the server
runs on one thread. Gauges that the state already holds (open connections, rooms, members per
room) are read from it at scrape time by a custom collector, never maintained. Nothing here
carries client data: no ids, names, addresses or payloads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ..events import Listener, Member
from ..protocol.core import COMMANDS
from ..protocol.errors import ErrorCode
from ..protocol.outcome import ACKED, Fanout, Outcome, Push

if TYPE_CHECKING:
    from ..protocol.core import Peer
    from ..protocol.delivery import Ledger
    from ..protocol.hold import Holds
    from ..protocol.model import Connection
    from ..server import EasyRtcServer
    from ..transport import Link

log = logging.getLogger("easyrtc_server")

MSG_TYPES: Final = (
    *COMMANDS,
    "authenticate",
    "token",
    "ack",
    "error",
    "roomData",
    "roomList",
    "iceConfig",
    "sessionData",
    "applicationData",
)
"""msgType label values; any other is counted as ``other``."""

SIGNALS: Final = frozenset(("candidate", "offer", "answer", "reject", "hangup"))
TRANSPORT_NAMES: Final = ("polling", "websocket", "python-socketio")
HOOK_NAMES: Final = (
    "connect",
    "authenticate",
    "room_create",
    "room_join",
    "authenticated",
    "ice_servers",
    "server_message",
    "command",
    "room_left",
    "disconnect",
)
ROOM_SIZE_BUCKETS: Final = (1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500, 1000)
LAG_INTERVAL: Final = 0.5
"""Seconds between two event-loop lag probes."""


def transport_of(link: Link) -> str:
    """``polling``/``websocket`` for our own transport, ``python-socketio`` for that binding."""
    return link.transport


class Tally:
    """One pre-bound counter child: increment ``n``. Single-threaded use only (the event loop)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Metrics(Listener):
    """The counters and histograms of one server, and the collector of its gauges."""

    def __init__(self, server: EasyRtcServer, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        reg.register(_StateCollector(server))
        self.connections_opened = Counter(
            "easyrtc_connections_opened",
            "Socket.io connections accepted, by transport at connect time.",
            ["transport"],
            registry=reg,
        )
        self._opened = {name: self.connections_opened.labels(name) for name in TRANSPORT_NAMES}
        self.logins = Counter("easyrtc_logins", "Successful logins.", registry=reg)
        self.login_refusals = Counter(
            "easyrtc_login_refusals",
            "Refused logins, by EasyRTC error code.",
            ["code"],
            registry=reg,
        )
        self._refusals = {code: self.login_refusals.labels(code) for code in _codes()}
        self.received_tallies = {
            event: {t: Tally() for t in (*MSG_TYPES, "other")}
            for event in ("easyrtcAuth", "easyrtcCmd", "easyrtcMsg", "other")
        }
        self._received_other = self.received_tallies["other"]
        self.sent_tallies = {t: Tally() for t in (*MSG_TYPES, "other")}
        self._sent_other = self.sent_tallies["other"]
        self.wire: WireCounts | None = None
        """Where the transport counts bytes (the lean aiohttp driver); see ``count_bytes_of``."""
        self._sent_ack = self.sent_tallies["ack"]
        self.error_tallies = {code: Tally() for code in _codes()}
        """The per-message tallies above are read by the collector at scrape time."""
        self.relayed_signals = Tally()
        self.relayed_messages = Tally()
        reg.register(_TallyCollector(self))
        self.slow_consumer_closes = Counter(
            "easyrtc_slow_consumer_closes",
            "Sockets closed because their send buffer went over the limit.",
            registry=reg,
        )
        self.room_joins = Counter(
            "easyrtc_room_joins",
            "Connections entering a room.",
            registry=reg,
        )
        self.hook_duration = Histogram(
            "easyrtc_hook_duration_seconds",
            "Time spent in each server hook.",
            ["hook"],
            registry=reg,
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.hook_timers = {name: self.hook_duration.labels(name) for name in HOOK_NAMES}
        self.event_loop_lag = Histogram(
            "easyrtc_event_loop_lag_seconds",
            f"How late a callback scheduled every {LAG_INTERVAL} s runs.",
            registry=reg,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

    # -- Listener ------------------------------------------------------------------------------

    def opened(self, peer: Peer, link: Link) -> None:
        self._opened[transport_of(link)].inc()

    def received(self, event: str, msg_type: str | None, out: Outcome) -> None:
        by_type = self.received_tallies.get(event) or self._received_other
        (by_type.get(msg_type) or by_type["other"]).n += 1  # type: ignore[arg-type]
        # an outcome may also carry member-list catch-ups (roomData, room_update_tick): only
        # the pushes on the relayed message's own event and type are relays
        if event == "easyrtcCmd":
            if msg_type in SIGNALS:
                for send in out.sends:
                    if type(send) is Push and send.body.get("msgType") == msg_type:
                        self.relayed_signals.n += 1
        elif event == "easyrtcMsg":
            for send in out.sends:
                if type(send) is Push and send.event == "easyrtcMsg":
                    self.relayed_messages.n += 1
                elif type(send) is Fanout and send.event == "easyrtcMsg":
                    self.relayed_messages.n += len(send.to)

    def sent(self, out: Outcome) -> None:
        counters, other = self.sent_tallies, self._sent_other
        for send in out.sends:
            if send is ACKED:  # the shared plain ack: most replies
                self._sent_ack.n += 1
                continue
            msg_type = send.body.get("msgType")
            (counters.get(msg_type) or other).n += (  # type: ignore[arg-type]
                len(send.to) if type(send) is Fanout else 1
            )
            if msg_type == "error":
                data = send.body.get("msgData")
                code = data.get("errorCode") if isinstance(data, dict) else None
                (self.error_tallies.get(code) or self.error_tallies["other"]).n += 1  # type: ignore[arg-type]

    def hook_timed(self, name: str, seconds: float) -> None:
        timer = self.hook_timers.get(name)
        if timer is not None:
            timer.observe(seconds)

    def logged_in(self, conn: Connection) -> None:
        self.logins.inc()

    def refused(self, code: str) -> None:
        (self._refusals.get(code) or self._refusals["other"]).inc()

    def joined(self, member: Member, first: bool) -> None:
        self.room_joins.inc()

    def closed(self, peer: Peer, reason: str) -> None:
        if reason == "slow consumer":
            self.slow_consumer_closes.inc()

    # -- serving -------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def handle(self, _request: web.Request) -> web.Response:
        """``GET /metrics``: the Prometheus text format."""
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def watch_event_loop(self, interval: float = LAG_INTERVAL) -> None:
        """Measure how late the loop runs a timer, until cancelled."""
        loop = asyncio.get_running_loop()
        observe = self.event_loop_lag.observe
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            observe(max(0.0, loop.time() - due))


def _codes() -> list[str]:
    return [code.value for code in ErrorCode] + ["other"]


class WireCounts(Protocol):
    """A transport that counts the bytes it reads and writes (``EngineIOServer``)."""

    bytes_received: int
    bytes_sent: int


class _TallyCollector(Collector):
    """The per-message counters, read from their tallies at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        received = CounterMetricFamily(
            "easyrtc_messages_received",
            "Messages from clients, by event and msgType.",
            labels=["event", "msg_type"],
        )
        for event, by_type in m.received_tallies.items():
            for msg_type, tally in by_type.items():
                received.add_metric([event, msg_type], tally.n)
        yield received
        sent = CounterMetricFamily(
            "easyrtc_messages_sent",
            "Replies and pushes to clients, by msgType.",
            labels=["msg_type"],
        )
        for msg_type, tally in m.sent_tallies.items():
            sent.add_metric([msg_type], tally.n)
        yield sent
        errors = CounterMetricFamily(
            "easyrtc_errors_sent",
            "EasyRTC errors sent to clients (every refusal, logins included), by error code.",
            labels=["code"],
        )
        for code, tally in m.error_tallies.items():
            errors.add_metric([code], tally.n)
        yield errors
        yield CounterMetricFamily(
            "easyrtc_relayed_signals",
            "WebRTC signals (offer, answer, candidate, reject, hangup) passed to a peer.",
            value=m.relayed_signals.n,
        )
        yield CounterMetricFamily(
            "easyrtc_relayed_messages",
            "easyrtcMsg deliveries from one client to another (one per recipient).",
            value=m.relayed_messages.n,
        )
        wire = m.wire
        if wire is not None:
            yield CounterMetricFamily(
                "easyrtc_received_bytes",
                "Bytes read from clients: websocket messages and long-polling POST bodies.",
                value=wire.bytes_received,
            )
            yield CounterMetricFamily(
                "easyrtc_sent_bytes",
                "Bytes written to clients: websocket frames and long-polling responses.",
                value=wire.bytes_sent,
            )


def _hold_metrics(holds: Holds) -> Iterator[Metric]:
    """Keeping calls up (``hold``): held connections now, and what became of holds."""
    counts = holds.counts
    yield GaugeMetricFamily(
        "easyrtc_held_connections",
        "Connections held for their client to resume (socket dropped, grace not over).",
        value=len(holds.held),
    )
    for name, help_text, value in (
        ("easyrtc_holds", "Keyed connections held after their socket dropped.", counts.holds),
        (
            "easyrtc_resumes",
            "Connections a new socket resumed (held, live, or restored after a restart).",
            counts.resumes,
        ),
        (
            "easyrtc_restores",
            "Connections restored from a previous process's resume token.",
            counts.restores,
        ),
        (
            "easyrtc_hold_expiries",
            "Holds whose grace ran out (then a disconnect).",
            counts.expiries,
        ),
        ("easyrtc_held_messages_queued", "Messages queued for held connections.", counts.queued),
        (
            "easyrtc_held_messages_refused",
            "Messages for held connections over the queue bounds.",
            counts.overflows,
        ),
    ):
        yield CounterMetricFamily(name, help_text, value=value)


def _delivery_metrics(ledger: Ledger) -> Iterator[Metric]:
    """Confirmed delivery (``delivery``): relays kept until their client confirms them."""
    counts = ledger.counts
    yield GaugeMetricFamily(
        "easyrtc_unconfirmed_messages",
        "Relayed messages this process keeps until their clients confirm them.",
        value=sum(len(out.items) for out in list(ledger.out.values())),
    )
    for name, help_text, value in (
        (
            "easyrtc_confirmed_messages",
            "Relayed messages this process kept that their clients confirmed.",
            counts.confirmed,
        ),
        (
            "easyrtc_resent_messages",
            "Relayed messages sent again after a resume (or unconfirmed for a second).",
            counts.resent,
        ),
        (
            "easyrtc_unconfirmed_forgotten",
            "Unconfirmed relayed messages dropped past the bounds of one connection.",
            counts.forgotten,
        ),
    ):
        yield CounterMetricFamily(name, help_text, value=value)


class _StateCollector(Collector):
    """Gauges read from the server's state at scrape time."""

    def __init__(self, server: EasyRtcServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        core = self.server.core
        apps = list(core.apps.values())
        # connections with a socket here (or held): not a partitioned node's stubs of the
        # other nodes' members, so that the nodes' gauges add up
        authenticated = sum(1 for peer in list(core.peers.values()) if peer.connection is not None)
        conns = GaugeMetricFamily(
            "easyrtc_connections", "Open socket.io connections, by state.", labels=["state"]
        )
        conns.add_metric(["open"], len(core.peers))
        conns.add_metric(["authenticated"], authenticated)
        yield conns
        by_transport = dict.fromkeys(TRANSPORT_NAMES, 0)
        for link in list(self.server.links.values()):
            name = transport_of(link)
            by_transport[name] = by_transport.get(name, 0) + 1
        transports = GaugeMetricFamily(
            "easyrtc_connections_by_transport",
            "Open socket.io connections, by their current transport.",
            labels=["transport"],
        )
        for name, count in by_transport.items():
            transports.add_metric([name], count)
        yield transports
        yield GaugeMetricFamily("easyrtc_applications", "Applications.", value=len(apps))
        yield from _hold_metrics(core.state.holds)
        yield from _delivery_metrics(self.server.engine.ledger)
        sizes = [len(room.members) for app in apps for room in app.rooms.values()]
        yield GaugeMetricFamily("easyrtc_rooms", "Rooms, empty ones included.", value=len(sizes))
        yield GaugeMetricFamily(
            "easyrtc_room_members_max",
            "Members of the fullest room.",
            value=max(sizes, default=0),
        )
        buckets: list[tuple[str, float]] = []
        for bound in ROOM_SIZE_BUCKETS:
            buckets.append((str(bound), sum(1 for size in sizes if size <= bound)))
        buckets.append(("+Inf", len(sizes)))
        yield GaugeHistogramMetricFamily(
            "easyrtc_room_members",
            "Rooms by their number of members.",
            buckets=buckets,
            gsum_value=sum(sizes),
        )
