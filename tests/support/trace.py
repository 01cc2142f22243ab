"""Scripted EasyRTC clients that record what a server says to them, for differential tests.

This module owns the recording side of the differential tests: `TraceClient` speaks the EasyRTC
wire protocol over a real socket.io connection (python-socketio's `AsyncClient`), `Trace` collects
what every client of one scenario run received, and `normalize` / `render` turn a trace into
something two runs (reference vs. ours, or reference vs. reference) can be compared on.

It knows nothing about which server it talks to, nor about the scenarios themselves.

Recording rules
- Every ack reply a client gets is an ``ack`` event; every server push is a ``push`` event
  (pushes are answered with ``{"msgType":"ack"}`` when the server asked for an ack, as the real
  client does).
- ``closed`` marks a server-side disconnect, ``sync`` marks the point where a barrier round trip
  came back, ``noack`` an emit whose ack never came (recorded when the trace is closed),
  ``timeout`` a wait that gave up, ``error`` a local problem (e.g. emitting on a closed socket).
- Events are kept per client, in arrival order. Across clients there is no order to compare.

Barriers (no sleeps)
A server handles one socket's messages in order and emits the pushes an action causes before it
acks that action. So after an action, one no-state round trip (``getIceConfig`` with
``msgData {}``) per authenticated client proves that every push the action caused has reached that
client. Barrier traffic is never recorded; only a ``sync`` marker is, so that a push arriving one
step late shows up in the diff. After a disconnect, a peer of the same application first probes
(``hangup`` to the gone id) until the server reports the id offline, then the barrier runs.

Cluster barriers
On a cluster the round trip above is answered by the client's node at once, and two kinds of
push reach a client beside its socket, from other nodes: a relay (acked once it is queued for the
target's node, then published to that node's inbox) and a push of a state change another node
appended to the log (sent when this node applies the entry). With ``cluster_barrier`` a barrier
first waits for both, when an action since the last barrier may have caused them:
- after a relay, for each client, one unrecorded ``easyrtcMsg`` probe (msgType `RELAY_PROBE`)
  from a client on every other node of its application, until each has arrived: one node's
  relays to another keep their order, so every relay acked before has arrived by then;
- after a state change (a login, a room change, presence, a field, a disconnect), for each
  client, an unrecorded empty ``roomLeave`` (`LOG_BARRIER_CMD`): a state change that changes
  nothing, answered once the client's node has applied it, so after every entry appended before
  it, their pushes to the client sent first.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import itertools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final

import socketio

API_VERSION: Final = "1.1.1-beta"
TIME_PLACEHOLDER: Final = "<time>"
TIME_KEYS: Final = frozenset({"serverTime", "roomJoinTime"})
# Dict keys below these parents are easyrtcids; string values of these keys are easyrtcids.
ID_MAP_PARENTS: Final = frozenset({"clientList", "updateClient", "removeClient"})
ID_VALUE_KEYS: Final = frozenset({"easyrtcid", "senderEasyrtcid", "targetEasyrtcid"})
# What the reference generates: 16 characters from an alphanumeric alphabet.
_ID_SHAPE: Final = re.compile(r"[A-Za-z0-9]{16}")

BARRIER_CMD: Final = {"msgType": "getIceConfig", "msgData": {}}
RELAY_PROBE: Final = "traceRelayBarrierProbe"
"""msgType of a cluster barrier's relay probe: never recorded."""
LOG_BARRIER_CMD: Final = {"msgType": "roomLeave", "msgData": {"roomLeave": {}}}
"""A state change that changes nothing (a cluster barrier's log round trip)."""
RELAYED_COMMANDS: Final = frozenset({"offer", "answer", "candidate", "reject", "hangup"})
"""The ``easyrtcCmd`` types a server relays to a peer (every ``easyrtcMsg`` is relayed too)."""
READ_COMMANDS: Final = frozenset({"getIceConfig", "getRoomList"})
"""The ``easyrtcCmd`` types that only read; every other command may change the state."""


class _Omit:
    """Marker for "leave this key out" in payload builders (distinct from JSON null)."""

    _instance: _Omit | None = None

    def __new__(cls) -> _Omit:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "OMIT"


OMIT: Final = _Omit()


def drop_omitted(mapping: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``mapping`` without the keys whose value is `OMIT`."""
    return {k: v for k, v in mapping.items() if v is not OMIT}


def payload(msg_type: Any = OMIT, msg_data: Any = OMIT, **extra: Any) -> dict[str, Any]:
    """Build ``{"msgType":..., "msgData":..., **extra}``, leaving out `OMIT` values."""
    return drop_omitted({"msgType": msg_type, "msgData": msg_data, **extra})


@dataclass(frozen=True)
class Event:
    """One thing a client observed.

    kind: ``ack`` | ``push`` | ``noack`` | ``closed`` | ``sync`` | ``timeout`` | ``error`` |
    ``connect_error``. ``event`` is the socket.io event name ("" for markers); ``request`` is the
    ``msgType`` of the emit an ack/noack/timeout belongs to (None when the payload had none).
    """

    kind: str
    client: str
    event: str
    data: Any = None
    request: str | None = None

    def header(self) -> str:
        what = self.event + (f"/{self.request}" if self.request is not None else "")
        return f"{self.kind} {what}".rstrip()


@dataclass
class _Pending:
    event: str
    request: str | None
    future: asyncio.Future[Any]


class ScenarioError(RuntimeError):
    """A scenario could not continue (e.g. it needs the easyrtcid of a client that has none)."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list | tuple) else "object"


def _request_label(data: Any) -> str | None:
    """The request's msgType; ``<TYPE>`` for a non-string msgType or a non-object payload."""
    if data is OMIT:
        return "<absent>"
    if not isinstance(data, dict):
        return f"<{_json_type(data)}>"
    msg_type = data.get("msgType")
    if isinstance(msg_type, str):
        return msg_type
    if "msgType" in data:
        return f"<msgType {_json_type(msg_type)}>"
    return None


def _first_arg(args: tuple[Any, ...]) -> Any:
    if len(args) == 1:
        return args[0]
    return list(args) if args else "<no argument>"


class Trace:
    """Everything the clients of one scenario run observed, plus the id ↔ name mapping.

    ``app`` is the application name the scenario's clients use by default; `app_name` gives further
    distinct ones. They are unique per `Trace` (``prefix``) so that runs can share one server, and
    `normalize` maps them back to ``<app>`` / ``<app:TAG>``.
    """

    def __init__(
        self,
        prefix: str = "t",
        *,
        ack_timeout: float = 5.0,
        close_timeout: float = 3.0,
        sync_markers: bool = True,
        cluster_barrier: bool = False,
        log_rounds: int = 1,
    ) -> None:
        self.prefix = prefix
        self.ack_timeout = ack_timeout
        self.close_timeout = close_timeout
        self.sync_markers = sync_markers
        self.cluster_barrier = cluster_barrier
        self.log_rounds = log_rounds
        """Rounds of log round trips a cluster barrier makes after a state change: 2 on a
        partitioned cluster, whose nodes answer one once they wrote what they acked before and
        read their clients' partitions up to what was written then (the first round has every
        node write, the second reads it all)."""
        self.relayed = False
        """A relay was sent since the last barrier (a cluster barrier then probes the relays)."""
        self.changed = False
        """The state may have changed since the last barrier (a cluster barrier then waits for
        the log)."""
        self.clients: list[TraceClient] = []
        self.events: dict[str, list[Event]] = {}
        self.ids: dict[str, str] = {}  # easyrtcid -> client name (from tokens)
        self.apps: dict[str, str] = {}  # real application name -> placeholder
        self.notes: list[str] = []
        self._frozen = False
        self.app = self.app_name()

    # -- names -------------------------------------------------------------------------------
    def app_name(self, tag: str = "") -> str:
        """A distinct application name for this run; ``tag`` tells several apart."""
        name = f"{self.prefix}{'-' + tag if tag else ''}"
        if len(name) > 32:
            raise ValueError(f"application name too long: {name!r}")
        self.apps[name] = f"<app:{tag}>" if tag else "<app>"
        return name

    def client(self, name: str, *, transport: str = "websocket") -> TraceClient:
        """A new (not yet connected) client recording into this trace."""
        if name in self.events:
            raise ValueError(f"duplicate client name {name!r}")
        c = TraceClient(name, self, transport=transport)
        self.clients.append(c)
        self.events[name] = []
        return c

    # -- recording ---------------------------------------------------------------------------
    def record(
        self, client: str, kind: str, event: str = "", data: Any = None, request: str | None = None
    ) -> None:
        if not self._frozen:
            self.events[client].append(Event(kind, client, event, data, request))

    def learn_id(self, easyrtcid: str, client: str) -> None:
        owner = self.ids.setdefault(easyrtcid, client)
        if owner != client:
            self.notes.append(f"easyrtcid of {client} was already given to {owner}")

    # -- synchronisation ---------------------------------------------------------------------
    async def barrier(self) -> None:
        """Return once every push caused by earlier actions has reached its client."""
        targets = [c for c in self.clients if c.can_sync]
        if self.cluster_barrier:
            relayed, changed = self.relayed, self.changed
            self.relayed = self.changed = False
            if relayed:
                await asyncio.gather(*(self._relays_arrived(t, targets) for t in targets))
            for _ in range(self.log_rounds if changed else 0):
                await asyncio.gather(*(c.log_round_trip() for c in targets))
        await asyncio.gather(*(c.sync() for c in targets))

    async def _relays_arrived(self, target: TraceClient, clients: list[TraceClient]) -> None:
        """Every relay to ``target`` acked so far has reached it: a probe from one client on
        each other node (``TraceClient.url``) of its application has."""
        senders: dict[str, TraceClient] = {}
        for c in clients:
            if c is not target and c.app == target.app and c.url not in (None, target.url):
                senders.setdefault(c.url or "", c)
        await asyncio.gather(*(sender.probe(target) for sender in senders.values()))

    async def await_gone(self, gone: TraceClient) -> None:
        """Wait until the server treats ``gone``'s easyrtcid as offline (seen by a peer)."""
        if gone.easyrtcid is None:
            return
        probers = [c for c in self.clients if c.can_sync and c is not gone and c.app == gone.app]
        if not probers:
            return
        prober = probers[0]
        deadline = asyncio.get_running_loop().time() + self.close_timeout
        probe = {"msgType": "hangup", "targetEasyrtcid": gone.easyrtcid}
        while True:
            reply = await prober.silent_call("easyrtcCmd", probe)
            if isinstance(reply, dict) and reply.get("msgType") == "error":
                return
            if reply is None or asyncio.get_running_loop().time() > deadline:
                self.record(prober.name, "timeout", "", f"{gone.name} still online")
                return
            # Nothing to await on: the server closes the socket on its own schedule. Poll gently.
            await asyncio.sleep(0.002)

    async def close(self) -> None:
        """Final barrier, mark acks that never came as ``noack``, stop recording, disconnect."""
        await self.barrier()
        for c in self.clients:
            for p in list(c.pending):
                self.record(c.name, "noack", p.event, None, p.request)
        self._frozen = True
        await asyncio.gather(*(c.shutdown() for c in self.clients))

    # -- views ---------------------------------------------------------------------------------
    def normalized(self) -> list[Event]:
        return normalize(self)

    def lines(self) -> list[str]:
        return render(normalize(self))


class TraceClient:
    """One scripted EasyRTC client. Every action waits for its ack (with a timeout) and then, by
    default, runs the trace's barrier (``sync=False`` skips it)."""

    def __init__(self, name: str, trace: Trace, *, transport: str = "websocket") -> None:
        self.name = name
        self.trace = trace
        self.transport = transport
        self.url: str | None = None  # the server (a cluster's node) it connected to
        self.easyrtcid: str | None = None  # from the last token
        self.app: str | None = None  # application of the last token
        self.authenticated = False
        self.pending: list[_Pending] = []
        self._probes: dict[str, asyncio.Future[None]] = {}  # relay probes awaited
        self._probe_ids = itertools.count(1)
        self._closing = False
        self._closed = asyncio.Event()
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self.sio.on("easyrtcCmd", self._on_cmd)
        self.sio.on("easyrtcMsg", self._on_msg)
        self.sio.on("*", self._on_other)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("connect_error", self._on_connect_error)

    # -- state ---------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return bool(self.sio.connected) and not self._closed.is_set()

    @property
    def can_sync(self) -> bool:
        return self.connected and self.authenticated

    @property
    def id(self) -> str:
        """This client's easyrtcid; raises `ScenarioError` if it never got a token."""
        if self.easyrtcid is None:
            raise ScenarioError(f"{self.name} has no easyrtcid (no token received)")
        return self.easyrtcid

    # -- handlers (run in message order; they record before any await) ----------------------------
    def _push(self, event: str, args: tuple[Any, ...]) -> None:
        if not self._closing:  # after our own disconnect nothing may count any more
            self.trace.record(self.name, "push", event, _first_arg(args))

    def _on_cmd(self, *args: Any) -> dict[str, str]:
        self._push("easyrtcCmd", args)
        return {"msgType": "ack"}

    def _on_msg(self, *args: Any) -> dict[str, str]:
        data = _first_arg(args)
        if isinstance(data, dict) and data.get("msgType") == RELAY_PROBE:
            probe = self._probes.pop(str(data.get("msgData")), None)
            if probe is not None and not probe.done():
                probe.set_result(None)
        else:
            self._push("easyrtcMsg", args)
        return {"msgType": "ack"}

    def _on_other(self, event: str, *args: Any) -> None:
        self._push(event, args)

    def _on_disconnect(self, *_reason: Any) -> None:
        self.trace.changed = True  # its node appends the close: peers get removeClient
        if not self._closing:
            self.trace.record(self.name, "closed")
        self._closed.set()

    def _on_connect_error(self, *args: Any) -> None:
        self.trace.record(self.name, "connect_error", "", _first_arg(args))

    # -- actions -------------------------------------------------------------------------------
    async def connect(self, url: str) -> None:
        self.url = url
        await self.sio.connect(url, transports=[self.transport], wait_timeout=5)

    def auth_payload(self, msg_data: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """``{"msgType":"authenticate","msgData":{apiVersion, applicationName, ...}}``.

        Defaults: the real client's apiVersion and the trace's application; ``msg_data`` and
        ``fields`` override them, `OMIT` removes a key (e.g. ``applicationName=OMIT``).
        """
        data: dict[str, Any] = {"apiVersion": API_VERSION, "applicationName": self.trace.app}
        data.update(msg_data or {})
        data.update(fields)
        return {"msgType": "authenticate", "msgData": drop_omitted(data)}

    async def auth(
        self,
        msg_data: dict[str, Any] | None = None,
        *,
        raw: Any = OMIT,
        ack: bool = True,
        sync: bool = True,
        **fields: Any,
    ) -> Any:
        """Send ``easyrtcAuth`` (built by `auth_payload`, or ``raw`` as is) and wait for the reply.

        A token teaches the trace this client's easyrtcid. After an error (or with ``ack=False``)
        it waits for the server to close the socket; the close is recorded as ``closed``.
        """
        data = self.auth_payload(msg_data, **fields) if raw is OMIT else raw
        reply = await self.emit("easyrtcAuth", data, ack=ack, sync=False)
        if isinstance(reply, dict) and reply.get("msgType") == "token":
            msg_data_in = reply.get("msgData")
            if isinstance(msg_data_in, dict) and isinstance(msg_data_in.get("easyrtcid"), str):
                if self.easyrtcid is not None and self.easyrtcid != msg_data_in["easyrtcid"]:
                    self.trace.notes.append(f"easyrtcid of {self.name} changed on re-auth")
                self.easyrtcid = msg_data_in["easyrtcid"]
                self.trace.learn_id(self.easyrtcid, self.name)
                application = msg_data_in.get("application")
                if isinstance(application, dict):
                    self.app = application.get("applicationName")
                self.authenticated = True
        elif self.connected:
            await self.wait_closed()
        if not self.connected:
            await self.trace.await_gone(self)
        if sync:
            await self.trace.barrier()
        return reply

    async def cmd(
        self, data: Any, *, ack: bool = True, wait: bool = True, sync: bool = True
    ) -> Any:
        """Send ``easyrtcCmd`` with ``data`` as is."""
        return await self.emit("easyrtcCmd", data, ack=ack, wait=wait, sync=sync)

    async def msg(
        self, data: Any, *, ack: bool = True, wait: bool = True, sync: bool = True
    ) -> Any:
        """Send ``easyrtcMsg`` with ``data`` as is (``wait=False`` when no ack is expected)."""
        return await self.emit("easyrtcMsg", data, ack=ack, wait=wait, sync=sync)

    async def emit(
        self,
        event: str,
        data: Any = OMIT,
        *,
        ack: bool = True,
        wait: bool = True,
        sync: bool = True,
    ) -> Any:
        """Emit ``event`` (no argument at all when ``data`` is `OMIT`).

        With ``ack`` the reply is recorded when it arrives; with ``wait`` it is also awaited
        (up to ``trace.ack_timeout``) and returned. Without ``wait`` an ack still gets recorded
        if it comes later; one that never comes is recorded as ``noack`` by `Trace.close`.
        """
        request = _request_label(data)
        if event == "easyrtcMsg" or (event == "easyrtcCmd" and request in RELAYED_COMMANDS):
            self.trace.relayed = True
        elif not (event == "easyrtcCmd" and request in READ_COMMANDS):
            self.trace.changed = True
        if not self.connected:
            self.trace.record(self.name, "error", event, "not connected", request)
            return None
        args: Any = None if data is OMIT else (data,)
        future: asyncio.Future[Any] | None = None
        if ack:
            future = asyncio.get_running_loop().create_future()
            pending = _Pending(event, request, future)
            self.pending.append(pending)

            def callback(*reply_args: Any) -> None:
                if pending in self.pending:
                    self.pending.remove(pending)
                reply = _first_arg(reply_args)
                self.trace.record(self.name, "ack", event, reply, request)
                if not pending.future.done():
                    pending.future.set_result(reply)

            await self.sio.emit(event, args, callback=callback)
        else:
            await self.sio.emit(event, args)
        reply = None
        if future is not None and wait:
            reply = await self._wait_reply(future, event, request)
        if sync:
            await self.trace.barrier()
        return reply

    async def _wait_reply(
        self, future: asyncio.Future[Any], event: str, request: str | None
    ) -> Any:
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait(
                {future, closed},
                timeout=self.trace.ack_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            closed.cancel()
        if future in done:
            return future.result()
        if not done:
            self.trace.record(self.name, "timeout", event, "no ack", request)
        return None

    async def disconnect(self, *, sync: bool = True) -> None:
        """Close the socket from the client side; peers' cleanup pushes are awaited."""
        self._closing = True
        self.trace.changed = True  # its node appends the close: peers get removeClient
        if not await self._close_socket(self.trace.close_timeout):
            self.trace.record(self.name, "timeout", "", "client disconnect not completed")
        self._closed.set()
        await self.trace.await_gone(self)
        if sync:
            await self.trace.barrier()

    async def wait_closed(self) -> bool:
        """Wait (up to ``trace.close_timeout``) for the server to close this socket."""
        try:
            await asyncio.wait_for(self._closed.wait(), self.trace.close_timeout)
        except TimeoutError:
            self.trace.record(self.name, "timeout", "", "socket still open")
            return False
        return True

    async def sync(self) -> None:
        """One barrier round trip on this socket (not recorded, apart from a ``sync`` marker)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def callback(*_args: Any) -> None:
            if self.trace.sync_markers:
                self.trace.record(self.name, "sync")
            if not future.done():
                future.set_result(None)

        try:
            await self.sio.emit("easyrtcCmd", BARRIER_CMD, callback=callback)
        except socketio.exceptions.SocketIOError:
            return
        try:
            await asyncio.wait_for(future, self.trace.ack_timeout)
        except TimeoutError:
            self.trace.record(self.name, "timeout", "", "barrier")

    async def log_round_trip(self) -> None:
        """A cluster barrier's state change that changes nothing (not recorded): answered once
        this client's node has applied every entry appended before it."""
        if await self.silent_call("easyrtcCmd", LOG_BARRIER_CMD) is None and self.connected:
            self.trace.record(self.name, "timeout", "", "log barrier")

    async def probe(self, target: TraceClient) -> None:
        """A cluster barrier's relay probe to ``target``, awaited until it arrives (not recorded; a
        probe the server refuses, e.g. to a target it does not know yet, is not waited for)."""
        token = f"{self.name}>{target.name}#{next(self._probe_ids)}"
        arrived = target.expect_probe(token)
        data = {"msgType": RELAY_PROBE, "msgData": token, "targetEasyrtcid": target.id}
        try:
            reply = await self.silent_call("easyrtcMsg", data)
            if reply != {"msgType": "ack"}:
                return
            await asyncio.wait_for(arrived, self.trace.ack_timeout)
        except TimeoutError:
            self.trace.record(target.name, "timeout", "", f"relay barrier probe from {self.name}")
        finally:
            target.forget_probe(token)

    def expect_probe(self, token: str) -> asyncio.Future[None]:
        """The future that the relay probe ``token`` to this client has arrived."""
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probes[token] = arrived
        return arrived

    def forget_probe(self, token: str) -> None:
        self._probes.pop(token, None)

    async def silent_call(self, event: str, data: Any) -> Any:
        """An unrecorded emit-and-wait (for probes); None on timeout or closed socket."""
        try:
            return await self.sio.call(event, data, timeout=self.trace.ack_timeout)
        except socketio.exceptions.SocketIOError:
            return None

    async def shutdown(self) -> None:
        """Disconnect without recording anything and release the client's resources."""
        self._closing = True
        await self._close_socket(min(self.trace.close_timeout, 2.0))
        self._closed.set()

    async def _close_socket(self, within: float) -> bool:
        """Disconnect; False when the client could not finish ``within`` seconds.

        python-socketio waits for its read loop to end, and over long-polling that loop sits in
        a GET the server may keep open after our close packet; then the loop is cancelled.
        """
        if not self.sio.connected:
            return True
        task = asyncio.ensure_future(self.sio.disconnect())
        done, _ = await asyncio.wait({task}, timeout=within)
        if task in done:
            with contextlib.suppress(Exception):
                task.result()
            return True
        eio = self.sio.eio
        read_loop: asyncio.Task[Any] | None = getattr(eio, "read_loop_task", None)
        if read_loop is not None:
            read_loop.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if task not in done:
            task.cancel()
        elif not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()
        http = getattr(eio, "http", None)
        if http is not None and not http.closed:
            await http.close()
        return False


# ---------------------------------------------------------------------------------------------
# Normalisation


class _Labeller:
    def __init__(self, trace: Trace) -> None:
        self.known = {
            eid: f"@{name}" if _ID_SHAPE.fullmatch(eid) else f"@{name}(odd id {eid!r})"
            for eid, name in trace.ids.items()
        }
        self.apps = dict(trace.apps)
        self.unknown = 0

    def id_label(self, value: str, *, register: bool) -> str:
        label = self.known.get(value)
        if label is None and register:
            self.unknown += 1
            label = f"@?{self.unknown}"
            self.known[value] = label
        return label if label is not None else value

    def string(self, value: str) -> str:
        label = self.known.get(value)
        if label is not None:
            return label
        return self.apps.get(value, value)

    def walk(self, value: Any, parent: str | None = None) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                new_key = (
                    self.id_label(key, register=True)
                    if parent in ID_MAP_PARENTS
                    else self.string(key)
                )
                if key in TIME_KEYS:
                    out[new_key] = _time(item)
                elif key in ID_VALUE_KEYS and isinstance(item, str):
                    out[new_key] = self.id_label(item, register=True)
                else:
                    out[new_key] = self.walk(item, key)
            return out
        if isinstance(value, list):
            return [self.walk(item, parent) for item in value]
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 1.0 and 1 are the same JSON number to a JavaScript client
        return value


def _time(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**12:
        return TIME_PLACEHOLDER
    return {"<bad time>": value}


def normalize(trace: Trace) -> list[Event]:
    """The trace's events, client by client (in creation order), with easyrtcids replaced by
    ``@name`` (from tokens) or ``@?N`` (ids no token explained, in order of first appearance),
    application names by ``<app>`` / ``<app:TAG>``, and ``serverTime`` / ``roomJoinTime`` by
    ``<time>``. Key order is left alone; `render` sorts keys."""
    labeller = _Labeller(trace)
    out: list[Event] = []
    for client in trace.clients:
        for event in trace.events[client.name]:
            out.append(replace(event, data=labeller.walk(event.data)))
    for note in trace.notes:
        out.append(Event("note", "", "", note))
    return out


def render(events: Iterable[Event]) -> list[str]:
    """Readable, diffable lines: a ``== client ==`` header per client, one header line per
    event, then its data as key-sorted, indented JSON, every line prefixed with the client."""
    lines: list[str] = []
    current: str | None = None
    for event in events:
        if event.client != current:
            current = event.client
            lines.append(f"== {current} ==")
        prefix = f"{event.client} |"
        lines.append(f"{prefix} {event.header()}")
        if event.data is not None or event.kind in {"ack", "push"}:
            text = json.dumps(
                event.data, sort_keys=True, indent=2, ensure_ascii=False, default=repr
            )
            lines.extend(f"{prefix}     {line}" for line in text.splitlines())
    return lines


def parse(lines: Iterable[str]) -> list[Event]:
    """The events of a rendering (`render`'s inverse: ``render(parse(lines)) == lines``), for
    traces kept as text (the differential tests' golden traces)."""
    events: list[Event] = []
    data: list[str] = []

    def close() -> None:
        if data:
            last = events[-1]
            events[-1] = replace(last, data=json.loads("\n".join(data)))
            data.clear()

    for line in lines:
        if line.startswith("== ") and line.endswith(" =="):
            continue
        if line.startswith(" | "):  # a note: no client
            client, rest = "", line[3:]
        else:
            client, _, rest = line.partition(" | ")
        if rest.startswith("    "):
            data.append(rest[4:])
            continue
        close()
        kind, _, what = rest.partition(" ")
        event, slash, request = what.partition("/")
        events.append(Event(kind, client, event, None, request if slash else None))
    close()
    return events


def diff(
    expected: list[str], actual: list[str], *, names: tuple[str, str] = ("expected", "actual")
) -> str:
    """A unified diff of two renderings ("" when equal)."""
    return "\n".join(
        difflib.unified_diff(expected, actual, fromfile=names[0], tofile=names[1], lineterm="", n=6)
    )


EventTransform = Callable[[list[Event]], list[Event]]
