"""/metrics: after a scripted session the scraped values are exactly what happened."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from easyrtc_server.hooks import Hooks
from easyrtc_server.operations.metrics import HOOK_NAMES, Metrics
from easyrtc_server.protocol.auth import AuthRequest
from easyrtc_server.protocol.core import Peer
from easyrtc_server.protocol.errors import EasyRtcError, ErrorCode
from easyrtc_server.protocol.outcome import ACKED, Outcome, Push
from easyrtc_server.server import EasyRtcServer
from easyrtc_server.transport import SharedEvent
from support.ports import free_port

from .opskit import Closes, clients, scrape, served, value


class NoMallory(Hooks):
    async def authenticate(self, peer: Peer, request: AuthRequest) -> None:
        if request.username == "mallory":
            raise EasyRtcError(ErrorCode.LOGIN_BAD_AUTH)


async def test_scripted_session_is_counted_exactly() -> None:
    async with served(NoMallory()) as (server, url), clients(url, 3) as (alice, bob, mallory):
        closes = Closes(server)
        _, before = await scrape(url + "/metrics")
        assert value(before, "easyrtc_connections", state="open") == 3
        assert value(before, "easyrtc_connections", state="authenticated") == 0

        await alice.login(username="alice")
        await bob.login(username="bob")
        refused = await mallory.call(
            "easyrtcAuth",
            {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1", "username": "mallory"}},
        )
        assert refused["msgData"]["errorCode"] == "LOGIN_BAD_AUTH"
        await closes.wait(1)

        join = {"roomJoin": {"lobby": {"roomName": "lobby"}}}
        await alice.cmd("roomJoin", msgData=join)
        await bob.cmd("roomJoin", msgData=join)
        for n in range(3):
            await alice.cmd("candidate", targetEasyrtcid=bob.easyrtcid, msgData={"n": n})
        await bob.call(
            "easyrtcMsg", {"msgType": "chat", "targetEasyrtcid": alice.easyrtcid, "msgData": "hi"}
        )
        await alice.call("easyrtcMsg", {"msgType": "chat", "targetRoom": "lobby", "msgData": "x"})
        await alice.call("easyrtcCmd", {"msgType": "noSuchCommand"})

        text, after = await scrape(url + "/metrics")

    assert value(after, "easyrtc_connections_opened_total", transport="websocket") == 3
    assert value(after, "easyrtc_connections_opened_total", transport="polling") == 0
    assert value(after, "easyrtc_connections", state="open") == 2
    assert value(after, "easyrtc_connections", state="authenticated") == 2
    assert value(after, "easyrtc_connections_by_transport", transport="websocket") == 2
    assert value(after, "easyrtc_logins_total") == 2
    assert value(after, "easyrtc_login_refusals_total", code="LOGIN_BAD_AUTH") == 1
    assert value(after, "easyrtc_login_refusals_total", code="LOGIN_GEN_FAIL") == 0
    assert value(after, "easyrtc_applications") == 1
    assert value(after, "easyrtc_rooms") == 2  # default and lobby
    assert value(after, "easyrtc_room_members_max") == 2
    assert value(after, "easyrtc_room_members_bucket", le="1") == 0
    assert value(after, "easyrtc_room_members_bucket", le="2") == 2
    assert value(after, "easyrtc_room_members_gcount") == 2
    assert value(after, "easyrtc_room_joins_total") == 4  # two logins into default, two joins

    received = "easyrtc_messages_received_total"
    assert value(after, received, event="easyrtcAuth", msg_type="authenticate") == 3
    assert value(after, received, event="easyrtcCmd", msg_type="roomJoin") == 2
    assert value(after, received, event="easyrtcCmd", msg_type="candidate") == 3
    assert value(after, received, event="easyrtcMsg", msg_type="other") == 2  # "chat"
    assert value(after, received, event="easyrtcCmd", msg_type="other") == 1
    assert value(after, "easyrtc_relayed_signals_total") == 3
    assert value(after, "easyrtc_relayed_messages_total") == 2  # one direct, one to bob in lobby

    sent = "easyrtc_messages_sent_total"
    assert value(after, sent, msg_type="token") == 2
    assert value(after, sent, msg_type="error") == 2  # the refusal and the unknown command
    assert value(after, sent, msg_type="candidate") == 3
    assert value(after, sent, msg_type="other") == 2  # the two "chat" deliveries
    # acks: 3 candidates + 2 easyrtcMsg
    assert value(after, sent, msg_type="ack") == 5
    assert value(after, "easyrtc_errors_sent_total", code="LOGIN_BAD_AUTH") == 1
    assert value(after, "easyrtc_errors_sent_total", code="MSG_REJECT_BAD_TYPE") == 1
    assert value(after, "easyrtc_errors_sent_total", code="other") == 0

    hook_count = "easyrtc_hook_duration_seconds_count"
    assert value(after, hook_count, hook="authenticate") == 3
    assert value(after, hook_count, hook="connect") == 3
    assert value(after, "easyrtc_slow_consumer_closes_total") == 0
    assert "process_cpu_seconds_total" in text and "python_info" in text
    for secret in ("alice", "bob", "mallory", alice.easyrtcid, "127.0.0.1"):
        assert secret not in text  # no client data


async def test_metrics_on_their_own_port_or_off() -> None:
    port = free_port()
    async with served(metrics_port=port) as (_, url), aiohttp.ClientSession() as http:
        async with http.get(url + "/metrics") as response:
            assert response.status == 404
        _, samples = await scrape(f"http://127.0.0.1:{port}/metrics")
        assert value(samples, "easyrtc_connections", state="open") == 0
    async with (
        served(metrics_enable=False) as (_, url),
        aiohttp.ClientSession() as http,
        http.get(url + "/metrics") as response,
    ):
        assert response.status == 404


async def test_two_servers_in_one_process_count_apart() -> None:
    async with served() as (_, url_a), served() as (_, url_b), clients(url_a, 1) as (a,):
        await a.login()
        _, samples_a = await scrape(url_a + "/metrics")
        _, samples_b = await scrape(url_b + "/metrics")
    assert value(samples_a, "easyrtc_logins_total") == 1
    assert value(samples_b, "easyrtc_logins_total") == 0


class _FakeLink:
    """A transport link that the transport may close as a slow consumer."""

    remote_address = "127.0.0.1"
    transport = "websocket"

    def __init__(self) -> None:
        self.close_reason = ""

    async def send(self, event: str, data: Any) -> None:
        pass

    async def send_shared(self, event: SharedEvent, value: Any) -> None:
        await self.send(event.event, event.data_for(value))

    async def close(self) -> None:
        pass


class _Wrapper(_FakeLink):
    """A link wrapping another (as a batching layer may): it passes on the Link surface."""

    def __init__(self, inner: _FakeLink) -> None:
        self.inner = inner

    @property  # type: ignore[override]
    def close_reason(self) -> str:
        return self.inner.close_reason


async def test_slow_consumer_closes_are_counted() -> None:
    server = EasyRtcServer()
    metrics = Metrics(server)
    server.events.add(metrics)
    fast, slow = _FakeLink(), _FakeLink()
    fast_peer, slow_peer = await server.open(fast), await server.open(_Wrapper(slow))
    assert fast_peer is not None and slow_peer is not None
    slow.close_reason = "slow consumer"
    await server.close(slow_peer)
    await server.close(fast_peer)
    samples = _parse(metrics.exposition())
    assert samples["easyrtc_slow_consumer_closes_total", frozenset()] == 1
    assert samples["easyrtc_connections_opened_total", frozenset({("transport", "websocket")})] == 2


def test_member_list_catch_ups_in_a_relay_outcome_are_not_counted_as_relays() -> None:
    """With ``room_update_tick`` a relay's outcome may first carry the sender's pending
    member-list delta (a roomData push): a user counting relays must not see it (it once made
    3 candidates count 4 under load)."""
    metrics = Metrics(EasyRtcServer())
    catch_up = Push("a", "easyrtcCmd", {"msgType": "roomData", "msgData": {}})
    signal = Push("b", "easyrtcCmd", {"msgType": "candidate", "msgData": {"n": 1}})
    message = Push("b", "easyrtcMsg", {"msgType": "chat", "msgData": "hi"})
    metrics.received("easyrtcCmd", "candidate", Outcome([catch_up, signal, ACKED]))
    metrics.received("easyrtcMsg", "chat", Outcome([catch_up, message, ACKED]))
    samples = _parse(metrics.exposition())
    assert samples["easyrtc_relayed_signals_total", frozenset()] == 1
    assert samples["easyrtc_relayed_messages_total", frozenset()] == 1


async def test_event_loop_lag_is_measured() -> None:
    metrics = Metrics(EasyRtcServer())
    watcher = asyncio.create_task(metrics.watch_event_loop(interval=0.02))
    await asyncio.sleep(0)  # the watcher sets its timer
    time.sleep(0.3)  # noqa: ASYNC251 - the point: a blocking call holds the loop
    await asyncio.sleep(0.1)  # the timer fires late, once
    watcher.cancel()
    samples = _parse(metrics.exposition())
    assert samples["easyrtc_event_loop_lag_seconds_count", frozenset()] >= 1
    assert samples["easyrtc_event_loop_lag_seconds_sum", frozenset()] >= 0.2
    assert (
        samples["easyrtc_event_loop_lag_seconds_bucket", frozenset({("le", "0.1")})]
        < (samples["easyrtc_event_loop_lag_seconds_count", frozenset()])
    )


def _parse(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


async def test_connections_are_counted_by_transport() -> None:
    async with (
        served() as (_, url),
        clients(url, 1, transport="polling") as (polling,),
        clients(url, 2),
    ):
        await polling.login()
        _, samples = await scrape(url + "/metrics")
    by_transport = "easyrtc_connections_by_transport"
    assert value(samples, by_transport, transport="polling") == 1
    assert value(samples, by_transport, transport="websocket") == 2
    assert value(samples, "easyrtc_connections_opened_total", transport="polling") == 1
    assert value(samples, "easyrtc_connections", state="authenticated") == 1


async def test_bytes_in_and_out_are_counted() -> None:
    async with served() as (_, url), aiohttp.ClientSession() as session:
        _, before = await scrape(url + "/metrics")
        ws = await session.ws_connect(
            url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        )
        received = [await ws.receive_str(timeout=10)]  # the open packet
        login = (
            '421["easyrtcAuth",{"msgType":"authenticate","msgData":{"apiVersion":"1.1.1-beta"}}]'
        )
        sent = ["40", login]
        await ws.send_str(sent[0])
        received.append(await ws.receive_str(timeout=10))  # connected
        await ws.send_str(sent[1])
        received.append(await ws.receive_str(timeout=10))  # the token
        _, after = await scrape(url + "/metrics")
        await ws.close()
    bytes_in = value(after, "easyrtc_received_bytes_total") - value(
        before, "easyrtc_received_bytes_total"
    )
    bytes_out = value(after, "easyrtc_sent_bytes_total") - value(before, "easyrtc_sent_bytes_total")
    assert bytes_in == sum(len(text) for text in sent)
    payload = sum(len(text.encode()) for text in received)
    assert payload < bytes_out <= payload + 4 * len(received)  # each frame's header: 2 to 4 bytes


async def test_hook_calls_are_timed_without_touching_the_users_hooks() -> None:
    hooks = Hooks()
    async with served(hooks) as (_, url), clients(url, 1) as (a,):
        await a.login()
        await a.cmd("roomJoin", msgData={"roomJoin": {"r": {"roomName": "r"}}})
        _, samples = await scrape(url + "/metrics")
    assert not set(vars(hooks)) & set(HOOK_NAMES)  # no method shadowed on the instance
    hook_count = "easyrtc_hook_duration_seconds_count"
    assert value(samples, hook_count, hook="authenticated") == 1
    assert value(samples, hook_count, hook="room_create") == 1
    assert value(samples, hook_count, hook="room_join") == 2  # the default room, then "r"
