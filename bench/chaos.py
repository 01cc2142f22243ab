"""Faults under churn, with an invariant checker (issue 21): ``bench/chaos.py``.

Not a test by itself (``tests/cluster/test_chaos.py`` runs a short version of it). Starts one
redis-server (or, with ``--sentinel``, a master, two replicas and three sentinels), 3 cluster
nodes and an nginx round-robin in front of them (``--direct``: clients spread over the node URLs
instead), all on loopback, and N python-socketio clients that keep logging in, joining and
leaving rooms, relaying messages to each other, and disconnecting and reconnecting. Every
``--fault-interval`` seconds one fault, in turn: ``kill -9`` of a node (then restarted), SIGSTOP
of a node past the alive TTL (then SIGCONT), Redis restarted empty (with ``--sentinel``: the
master the sentinels name, ``kill -9`` and at once started again empty, as a supervisor restarts
a Redis without persistence), and a Sentinel failover (``--sentinel`` only: ``kill -9`` of the
master the sentinels name, a replica promoted, the old master back as an empty replica).

After each fault the churn pauses, every client that lost its socket logs in again (one that
cannot within ``--converge`` seconds is *locked out*), and the checker compares, until they agree
or ``--converge`` seconds have passed:

- every client's own view (its room lists, built only from what it received: the token,
  ``roomData`` pushes and the ``roomJoin``/``roomLeave`` replies) with the truth (which clients
  are connected and logged in, which rooms each joined, as the clients themselves know it);
- every live node's replica (its admin API, ``/admin/api/applications/...``) with the truth.

Then every connected client must get an answer to a request (else it is *stuck*) and a relayed
message to a peer must arrive. RSS of the nodes and of Redis is sampled all along. Prints a
one-screen report, writes a JSON summary (``--json``), exits 1 on any violation. With
``--evidence DIR`` a check with violations leaves what explains it in ``DIR/<check>/``, and the
end of the run leaves every process's own log in ``DIR/logs/`` (each node's, each Redis
server's and each sentinel's, across restarts). Everything it starts is stopped by its pid;
``--duration`` bounds the run.

    .venv/bin/python bench/chaos.py --duration 300 --clients 200
    .venv/bin/python bench/chaos.py --duration 300 --clients 200 --sentinel
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.nginx import Nginx  # noqa: E402
from support.nodes import LISTENING, Node  # noqa: E402
from support.nodes import START_TIMEOUT as NODE_START_TIMEOUT  # noqa: E402
from support.redisserver import RedisServer  # noqa: E402
from support.sentinel import SentinelSetup, running_sentinels  # noqa: E402

APP = "chaos"
CALL_TIMEOUT = 10.0
"""Seconds a client waits for any one answer during churn (a fault may swallow a request)."""
FAILOVER_TIMEOUT = 60.0
REBUILT = "re-registered this node's connections"
FAULTS = ("kill", "sigstop", "redis", "failover")


@dataclass
class Config:
    clients: int = 200
    duration: float = 300.0
    fault_interval: float = 45.0
    converge: float = 10.0
    rooms: int = 10
    action_interval: float = 4.0
    """Mean seconds between two actions of one client."""
    alive_ttl: float = 2.0
    faults: tuple[str, ...] = ("kill", "sigstop", "redis")
    max_faults: int | None = None
    """Exactly this many faults, however long they take (None: as many as ``duration`` holds)."""
    sentinel: bool = False
    direct: bool = False
    nodes: int = 3
    seed: int | None = None
    evidence: Path | None = None
    """Where a check with violations, or one that took over half ``converge`` to agree, leaves
    its evidence (each node's log since the fault, the Redis servers' and sentinels' logs, the
    violations, each client's socket and last login error) and the run's end leaves every
    process's whole log (None: nowhere)."""
    log: Callable[[str], None] = print


@dataclass
class Violation:
    check: str
    kind: str
    """``ghost``, ``missing``, ``phantom-room``, ``replica-ghost``, ``replica-missing``,
    ``replica-count``, ``stuck``, ``relay-lost``, ``node-down``, ``no-rebuild``,
    ``locked-out``, ``no-failover``."""
    where: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "kind": self.kind, "where": self.where, "detail": self.detail}


@dataclass
class CheckResult:
    name: str
    at: float
    converged_after: float | None
    violations: list[Violation] = field(default_factory=list)
    connected: int = 0


# -- clients -----------------------------------------------------------------------------------


class ChaosClient:
    """One EasyRTC user: its own view of its rooms and what it knows it did (the truth)."""

    def __init__(self, index: int, rng: random.Random) -> None:
        self.index = index
        self.rng = rng
        self.sio: socketio.AsyncClient | None = None
        self.easyrtcid = ""
        self.logged_in = False
        self.rooms: set[str] = set()
        """Rooms this client joined, as its replies confirmed (the truth)."""
        self.view: dict[str, set[str]] = {}
        """Room lists as built from the messages it received (its own view)."""
        self.received: dict[str, int] = {}
        """Relayed texts received, by text."""
        self.got_message = asyncio.Event()
        self.last_error = ""
        """Why its last login failed (evidence for a *locked-out* client)."""

    def take_room_data(self, room_data: dict[str, Any]) -> None:
        for name, data in room_data.items():
            if data.get("roomStatus") == "leave":
                self.view.pop(name, None)
            elif "clientList" in data:
                self.view[name] = set(data["clientList"])
            elif "clientListDelta" in data:
                delta = data["clientListDelta"]
                listed = self.view.setdefault(name, set())
                listed |= set(delta.get("updateClient", {}))
                listed -= set(delta.get("removeClient", {}))

    def handlers(self, sio: socketio.AsyncClient) -> None:
        """Events of ``sio`` count only while it is this client's socket: a closed socket's
        late events must not touch the next session's view or truth."""

        def on_cmd(msg: dict[str, Any]) -> None:
            if sio is self.sio and msg.get("msgType") == "roomData":
                self.take_room_data(msg.get("msgData", {}).get("roomData", {}))

        def on_msg(msg: dict[str, Any]) -> None:
            text = msg.get("msgData")
            if sio is self.sio and isinstance(text, str):
                self.received[text] = self.received.get(text, 0) + 1
                self.got_message.set()

        def on_disconnect(*_: Any) -> None:
            if sio is self.sio:
                self.logged_in = False

        sio.on("easyrtcCmd", on_cmd)
        sio.on("easyrtcMsg", on_msg)
        sio.on("disconnect", on_disconnect)

    async def connect(self, url: str, rooms: list[str], transports: list[str]) -> None:
        """A new socket and a login that joins ``rooms``."""
        await self.close()
        sio = socketio.AsyncClient(reconnection=False)
        self.handlers(sio)
        self.sio = sio
        self.view = {}
        self.rooms = set()
        await sio.connect(url, transports=transports, wait_timeout=CALL_TIMEOUT)
        token = await sio.call(
            "easyrtcAuth",
            {
                "msgType": "authenticate",
                "msgData": {
                    "apiVersion": "1.1.1-beta",
                    "applicationName": APP,
                    "username": f"u{self.index}",
                    "roomJoin": {room: {"roomName": room} for room in rooms},
                },
            },
            timeout=CALL_TIMEOUT,
        )
        if token.get("msgType") != "token":
            raise RuntimeError(f"login refused: {token}")
        self.easyrtcid = token["msgData"]["easyrtcid"]
        self.take_room_data(token["msgData"].get("roomData", {}))
        self.rooms = set(token["msgData"].get("roomData", {}))
        self.logged_in = sio.connected

    async def close(self) -> None:
        sio, self.sio = self.sio, None
        self.logged_in = False
        self.rooms = set()
        self.view = {}
        if sio is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CALL_TIMEOUT):
                    await sio.disconnect()

    async def call(self, event: str, payload: Any, wait: float = CALL_TIMEOUT) -> Any:
        """``event`` with ``payload``; its answer, waited for at most ``wait`` seconds."""
        assert self.sio is not None
        return await self.sio.call(event, payload, timeout=wait)

    async def join(self, room: str) -> None:
        reply = await self.call(
            "easyrtcCmd",
            {"msgType": "roomJoin", "msgData": {"roomJoin": {room: {"roomName": room}}}},
        )
        if reply.get("msgType") == "roomData":
            self.take_room_data(reply["msgData"]["roomData"])
            self.rooms.add(room)

    async def leave(self, room: str) -> None:
        reply = await self.call(
            "easyrtcCmd",
            {"msgType": "roomLeave", "msgData": {"roomLeave": {room: {"roomName": room}}}},
        )
        if reply.get("msgType") == "roomData":
            self.take_room_data(reply["msgData"]["roomData"])
            self.rooms.discard(room)
            self.view.pop(room, None)

    async def send(self, target: str, text: str) -> dict[str, Any]:
        """Relay ``text`` to ``target``; the server's reply (an ``ack``, or an error)."""
        reply: dict[str, Any] = await self.call(
            "easyrtcMsg", {"msgType": "chat", "targetEasyrtcid": target, "msgData": text}
        )
        return reply


# -- the run -----------------------------------------------------------------------------------


class Chaos:
    """The processes, the clients, the churn, the faults and the checks of one run."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.admin_token = secrets.token_hex(24)
        self.rooms = [f"room{i}" for i in range(config.rooms)]
        self.nodes: list[Node] = []
        self.redis: RedisServer | None = None
        self.sentinels: SentinelSetup | None = None
        self.nginx: Nginx | None = None
        self.clients = [
            ChaosClient(i, random.Random(self.rng.random())) for i in range(config.clients)
        ]
        self.paused = asyncio.Event()
        self.resumed = asyncio.Event()
        self.busy = 0
        """Clients in the middle of an action."""
        self.idle = asyncio.Event()
        self.idle.set()
        self.stopping = asyncio.Event()
        self.checks: list[CheckResult] = []
        self.rss: list[dict[str, Any]] = []
        self.counts = {
            "logins": 0,
            "login_failures": 0,
            "joins": 0,
            "leaves": 0,
            "relays_acked": 0,
            "relays_refused": 0,
            "reconnects": 0,
            "timeouts": 0,
            "errors": 0,
        }
        self.pending: list[Violation] = []
        """Violations seen while a fault was undone, reported with the next check."""
        self.stopped: set[int] = set()
        """Indexes of nodes that are SIGSTOPped or killed right now."""
        self.failovers: list[float | None] = []
        """Seconds from each failover fault's kill to the sentinels' switch (None: none)."""
        self.switches_caused = 0
        """Sentinel switches the faults caused (the others the sentinels made on their own)."""
        self.load: dict[str, list[float]] = {}
        """Load averages (1, 5, 15 min) at the start and the end of the run."""

    # -- processes -----------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        if self.sentinels is not None:
            return self.sentinels.url
        assert self.redis is not None
        return self.redis.url

    def node_env(self) -> dict[str, str]:
        return {
            "EASYRTC_CLUSTER_ALIVE_TTL": str(self.config.alive_ttl),
            "EASYRTC_CLUSTER_CHECK_INTERVAL": "0.5",
            "EASYRTC_ADMIN_TOKEN": self.admin_token,
        }

    @asynccontextmanager
    async def processes(self) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if self.config.sentinel:
                self.sentinels = await stack.enter_async_context(running_sentinels())
            else:
                self.redis = RedisServer()
                await self.redis.start()
                stack.push_async_callback(self._stop_redis)
            self.nodes = [
                Node(self.redis_url, cluster="chaos", env=self.node_env())
                for _ in range(self.config.nodes)
            ]
            for node in self.nodes:
                stack.push_async_callback(self._stop_node, node)
            await asyncio.gather(*(node.start() for node in self.nodes))
            if not self.config.direct:
                self.nginx = Nginx([f"127.0.0.1:{node.port}" for node in self.nodes])
                await self.nginx.start()
                stack.push_async_callback(self.nginx.stop)
            yield

    async def _stop_redis(self) -> None:
        if self.redis is not None:
            await self.redis.stop(kill=True)

    @staticmethod
    async def _stop_node(node: Node) -> None:
        process = node.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
        await node.stop(kill=True)

    def url_for(self, client: ChaosClient) -> str:
        if self.nginx is not None:
            return self.nginx.url
        live = [n for i, n in enumerate(self.nodes) if i not in self.stopped] or self.nodes
        return client.rng.choice(live).url

    @property
    def transports(self) -> list[str]:
        return ["polling", "websocket"] if self.nginx is not None else ["websocket"]

    # -- churn ---------------------------------------------------------------------------------

    async def login(self, client: ChaosClient) -> None:
        rooms = client.rng.sample(self.rooms, client.rng.randint(1, 2))
        try:
            await client.connect(self.url_for(client), rooms, self.transports)
            self.counts["logins"] += 1
        except Exception as error:
            self.counts["login_failures"] += 1
            client.last_error = f"{time.strftime('%H:%M:%S')} {error!r}"[:300]
            await client.close()

    async def churn(self, client: ChaosClient) -> None:
        """One client's life: act, wait a random while, act again; pause when told."""
        rng = client.rng
        await asyncio.sleep(rng.uniform(0, self.config.action_interval))
        while not self.stopping.is_set():
            if self.paused.is_set():
                await self._wait_resumed()
                continue
            self.busy += 1
            self.idle.clear()
            try:
                await self.act(client)
            except TimeoutError:
                self.counts["timeouts"] += 1
                await client.close()  # its state is unknown after a lost answer: start afresh
            except Exception:
                self.counts["errors"] += 1
                await client.close()
            finally:
                self.busy -= 1
                if not self.busy:
                    self.idle.set()
            await asyncio.sleep(rng.expovariate(1 / self.config.action_interval))

    async def _wait_resumed(self) -> None:
        stopping = asyncio.ensure_future(self.stopping.wait())
        resumed = asyncio.ensure_future(self.resumed.wait())
        await asyncio.wait([stopping, resumed], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        resumed.cancel()

    async def act(self, client: ChaosClient) -> None:
        if not client.logged_in:
            if client.sio is not None:
                self.counts["reconnects"] += 1
            await self.login(client)
            return
        rng = client.rng
        roll = rng.random()
        if roll < 0.05:
            self.counts["reconnects"] += 1
            await client.close()
            await self.login(client)
        elif roll < 0.3:
            room = rng.choice(self.rooms)
            if room not in client.rooms:
                await client.join(room)
                self.counts["joins"] += 1
        elif roll < 0.5:
            if len(client.rooms) > 1:
                await client.leave(rng.choice(sorted(client.rooms)))
                self.counts["leaves"] += 1
        else:
            peers = sorted({p for r in client.rooms for p in client.view.get(r, ())})
            peers = [p for p in peers if p != client.easyrtcid]
            if not peers:
                return
            reply = await client.send(rng.choice(peers), f"m{client.index}-{time.time()}")
            self.counts["relays_acked" if reply.get("msgType") == "ack" else "relays_refused"] += 1

    # -- faults --------------------------------------------------------------------------------

    async def fault(self, kind: str) -> str:
        """Do one fault and undo it; returns what was done."""
        rng = self.rng
        if kind == "kill":
            index = rng.randrange(len(self.nodes))
            node = self.nodes[index]
            self.stopped.add(index)
            await node.kill()
            mark = len(node.lines)
            await node.start()  # waits for a "listening" line, but counts the first run's too
            async with asyncio.timeout(NODE_START_TIMEOUT):
                await node.wait_for_line(LISTENING, start=mark)
            self.stopped.discard(index)
            return f"kill -9 of node {index} (port {node.port}), restarted"
        if kind == "sigstop":
            index = rng.randrange(len(self.nodes))
            node = self.nodes[index]
            assert node.process is not None
            stopped_for = self.config.alive_ttl * 2 + 2
            self.stopped.add(index)
            os.kill(node.process.pid, signal.SIGSTOP)
            await asyncio.sleep(stopped_for)  # the fault itself is a duration
            os.kill(node.process.pid, signal.SIGCONT)
            self.stopped.discard(index)
            return (
                f"SIGSTOP of node {index} for {stopped_for:.0f} s (TTL {self.config.alive_ttl} s)"
            )
        if kind == "redis":
            if self.sentinels is not None:
                return await self.restart_master_empty()
            assert self.redis is not None
            marks = [len(node.lines) for node in self.nodes]
            await self.redis.stop(kill=True)
            await self.redis.start()
            took = await self.rebuilt(marks)
            return f"Redis killed and restarted empty, every node rebuilt after {took}"
        if kind == "failover":
            return await self.failover()
        raise ValueError(kind)

    async def rebuilt(self, marks: list[int]) -> str:
        """Wait (bounded by ``converge``) until every node logged that it re-registered its
        connections after Redis came back empty: the fault is over for the cluster then (relays
        in the gap are lost, as docs/cluster.md says)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.converge):
                for node, mark in zip(self.nodes, marks, strict=True):
                    await node.wait_for_line(REBUILT, start=mark)
        except TimeoutError:
            late = [
                i
                for i, (n, m) in enumerate(zip(self.nodes, marks, strict=True))
                if not any(REBUILT in line for line in n.lines[m:])
            ]
            self.pending.append(Violation("fault", "no-rebuild", f"nodes {late}", "after Redis"))
            return f"more than {self.config.converge:.0f} s (not every node)"
        return f"{time.monotonic() - started:.1f} s"

    async def failover(self) -> str:
        """``kill -9`` of the master the sentinels name, a wait for their ``+switch-master``
        away from it (bounded), and the killed server back, empty, as a replica of the new
        master, synced before the churn goes on (a later failover needs a replica in sync)."""
        if self.sentinels is None:
            return "no failover (run with --sentinel)"
        setup = self.sentinels
        starts = [len(s.lines) for s in setup.sentinels]
        killed_at = time.monotonic()
        old = await setup.kill_master()
        try:
            async with asyncio.timeout(FAILOVER_TIMEOUT):
                new = await setup.switched(starts, old)
        except TimeoutError:
            self.failovers.append(None)
            self.pending.append(
                Violation("fault", "no-failover", f"master {old}", f"{FAILOVER_TIMEOUT} s")
            )
            named = await setup.ask_master()
            await setup.start_server(old, replica_of=None if named == old else named)
            return (
                f"Sentinel failover: master {old} killed, no switch within {FAILOVER_TIMEOUT} s; "
                f"the sentinels name {named}; {old} started again"
            )
        took = time.monotonic() - killed_at
        self.failovers.append(took)
        self.switches_caused += 1
        await setup.rejoin_as_replica(old)
        synced = await self.replica_synced(old)
        return (
            f"Sentinel failover: master {old} killed, {new} promoted after {took:.1f} s, "
            f"{old} back as an empty replica ({synced})"
        )

    async def replica_synced(self, port: int) -> str:
        """Wait (bounded) for the restarted server on ``port`` to finish its full sync."""
        assert self.sentinels is not None
        server = self.sentinels.server(port)
        mark = next(
            (i for i in range(len(server.lines) - 1, -1, -1) if "started again" in server.lines[i]),
            0,
        )
        started = time.monotonic()
        try:
            async with asyncio.timeout(FAILOVER_TIMEOUT / 2):
                await server.wait_for("MASTER <-> REPLICA sync: Finished with success", start=mark)
        except (TimeoutError, RuntimeError):
            return f"not synced after {time.monotonic() - started:.0f} s"
        return f"synced after {time.monotonic() - started:.1f} s"

    async def restart_master_empty(self) -> str:
        """Redis restarted empty, behind Sentinel: ``kill -9`` of the master the sentinels
        name and at once a new empty master on its port. If it is back before the sentinels
        see it down, the replicas resync from it (empty) and every node rebuilds; otherwise the
        sentinels fail over and make it a replica. Either ends the fault; neither within
        ``converge`` is a *no-rebuild* violation."""
        assert self.sentinels is not None
        setup = self.sentinels
        marks = [len(node.lines) for node in self.nodes]
        starts = [len(s.lines) for s in setup.sentinels]
        started = time.monotonic()
        old = await setup.kill_master()
        await setup.start_server(old, replica_of=None)
        rebuilt = asyncio.ensure_future(
            asyncio.gather(
                *(n.wait_for_line(REBUILT, start=m) for n, m in zip(self.nodes, marks, strict=True))
            )
        )
        switched = asyncio.ensure_future(setup.switched(starts, old))
        try:
            waits: list[asyncio.Future[Any]] = [rebuilt, switched]
            done, _ = await asyncio.wait(
                waits, timeout=self.config.converge, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            rebuilt.cancel()
            switched.cancel()
            await asyncio.gather(rebuilt, switched, return_exceptions=True)
        took = time.monotonic() - started
        if switched in done and not switched.cancelled() and switched.exception() is None:
            self.switches_caused += 1
            return (
                f"Redis master {old} killed and started again empty; the sentinels failed over "
                f"to {switched.result()} after {took:.1f} s"
            )
        if rebuilt in done and not rebuilt.cancelled() and rebuilt.exception() is None:
            return (
                f"Redis master {old} killed and started again empty, the replicas resynced; "
                f"every node rebuilt after {took:.1f} s"
            )
        self.pending.append(Violation("fault", "no-rebuild", "nodes", "after Redis (sentinel)"))
        return f"Redis master {old} killed and started again empty; no rebuild nor switch"

    # -- checks --------------------------------------------------------------------------------

    def truth(self) -> tuple[dict[str, set[str]], set[str]]:
        """Room -> easyrtcids of connected clients that joined it; all connected easyrtcids."""
        rooms: dict[str, set[str]] = {room: set() for room in self.rooms}
        connected: set[str] = set()
        for client in self.clients:
            if client.logged_in:
                connected.add(client.easyrtcid)
                for room in client.rooms:
                    rooms[room].add(client.easyrtcid)
        return rooms, connected

    def view_violations(self, name: str) -> list[Violation]:
        rooms, _ = self.truth()
        found: list[Violation] = []
        for client in self.clients:
            if not client.logged_in:
                continue
            where = f"client {client.index} ({client.easyrtcid})"
            for room in client.rooms:
                seen = client.view.get(room, set())
                ghosts, missing = seen - rooms[room], rooms[room] - seen
                if ghosts:
                    found.append(Violation(name, "ghost", where, f"{room}: {sorted(ghosts)}"))
                if missing:
                    found.append(Violation(name, "missing", where, f"{room}: {sorted(missing)}"))
            for room in set(client.view) - client.rooms:
                found.append(Violation(name, "phantom-room", where, room))
        return found

    async def replica_violations(self, name: str, http: aiohttp.ClientSession) -> list[Violation]:
        rooms, connected = self.truth()
        found: list[Violation] = []
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        for index, node in enumerate(self.nodes):
            where = f"node {index}"
            api = f"{node.url}/admin/api/applications"
            try:
                async with http.get(api, headers=headers) as response:
                    apps = {a["name"]: a for a in (await response.json())["applications"]}
                count = apps.get(APP, {}).get("connections", 0)
                if count != len(connected):
                    detail = f"{count} connections, {len(connected)} connected"
                    found.append(Violation(name, "replica-count", where, detail))
                for room, members in rooms.items():
                    async with http.get(f"{api}/{APP}/rooms/{room}", headers=headers) as response:
                        body = await response.json() if response.status == 200 else {}
                    listed = {o["easyrtcid"] for o in body.get("occupants", [])}
                    if listed - members:
                        detail = f"{room}: {sorted(listed - members)}"
                        found.append(Violation(name, "replica-ghost", where, detail))
                    if members - listed:
                        detail = f"{room}: {sorted(members - listed)}"
                        found.append(Violation(name, "replica-missing", where, detail))
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as error:
                found.append(Violation(name, "node-down", where, repr(error)))
        return found

    async def probe(self, name: str) -> list[Violation]:
        """Every connected client answers a request; a relay to a peer arrives."""
        found: list[Violation] = []
        live = [c for c in self.clients if c.logged_in]
        timeout = self.config.converge

        async def ask(client: ChaosClient) -> None:
            try:
                reply = await client.call("easyrtcCmd", {"msgType": "getRoomList"}, timeout)
                if reply.get("msgType") != "roomList":
                    raise RuntimeError(str(reply)[:200])
            except Exception as error:
                where = f"client {client.index} ({client.easyrtcid})"
                found.append(Violation(name, "stuck", where, repr(error)[:200]))

        await asyncio.gather(*(ask(c) for c in live))
        by_id = {c.easyrtcid: c for c in live}

        async def relay(client: ChaosClient) -> None:
            peers = sorted(
                {p for r in client.rooms for p in client.view.get(r, ())} - {client.easyrtcid}
            )
            peers = [p for p in peers if p in by_id]
            if not peers or not client.logged_in:
                return
            target = by_id[client.rng.choice(peers)]
            text = f"probe-{name}-{client.index}"
            where = f"client {client.index} -> client {target.index}"
            try:
                reply = await client.send(target.easyrtcid, text)
                if reply.get("msgType") != "ack":
                    raise RuntimeError(f"not acked: {str(reply)[:150]}")
            except Exception as error:
                found.append(Violation(name, "relay-lost", where, f"no ack: {error!r}"[:200]))
                return
            try:
                async with asyncio.timeout(timeout):
                    while text not in target.received:
                        target.got_message.clear()
                        await target.got_message.wait()
            except Exception as error:
                found.append(Violation(name, "relay-lost", where, repr(error)[:200]))

        await asyncio.gather(*(relay(c) for c in live))
        return found

    async def log_back_in(self, name: str, deadline: float) -> None:
        """Every client that lost its socket (its node killed, an answer lost) logs in again,
        as a real client reconnects, retrying until ``deadline``; one that cannot is *locked
        out*. The check then covers every client."""
        while True:
            out = [c for c in self.clients if not c.logged_in]
            if not out:
                return
            if time.monotonic() >= deadline:
                self.pending.extend(
                    Violation(
                        name,
                        "locked-out",
                        f"client {c.index}",
                        f"cannot log in again; last error: {c.last_error}",
                    )
                    for c in out
                )
                return
            self.counts["reconnects"] += len(out)
            await asyncio.gather(*(self.login(c) for c in out))
            if any(not c.logged_in for c in out):
                await asyncio.sleep(0.25)  # a retry's backoff, as a client's

    async def check(self, name: str, http: aiohttp.ClientSession) -> CheckResult:
        """Pause the churn, log the lost clients back in, wait for agreement (bounded), probe,
        resume."""
        self.paused.set()
        self.resumed.clear()
        async with asyncio.timeout(CALL_TIMEOUT * 3):
            await self.idle.wait()
        started = time.monotonic()
        result = CheckResult(name, time.time(), None)
        deadline = started + self.config.converge
        await self.log_back_in(name, deadline)
        pending, self.pending = self.pending, []
        while True:
            violations = self.view_violations(name) + await self.replica_violations(name, http)
            if not violations:
                result.converged_after = time.monotonic() - started
                break
            if time.monotonic() >= deadline:
                result.violations = violations
                break
            await asyncio.sleep(0.25)
        result.violations += pending + await self.probe(name)
        result.connected = sum(c.logged_in for c in self.clients)
        self.checks.append(result)
        self.paused.clear()
        self.resumed.set()
        return result

    # -- RSS -----------------------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        found = {
            f"node{i}": n.process.pid
            for i, n in enumerate(self.nodes)
            if n.process is not None and n.process.returncode is None
        }
        if self.redis is not None and self.redis.process is not None:
            found["redis"] = self.redis.process.pid
        if self.sentinels is not None:
            master = self.sentinels.server(self.sentinels.master_port).process
            if master is not None and master.returncode is None:
                found["redis"] = master.pid
        return found

    async def sample_rss(self, every: float) -> None:
        started = time.monotonic()
        while not self.stopping.is_set():
            if self.sentinels is not None:
                await self.sentinels.ask_master()  # "redis" is the master, wherever it is now
            sample: dict[str, Any] = {"t": round(time.monotonic() - started, 1)}
            for name, pid in self.pids().items():
                if (mb := rss_mb(pid)) is not None:
                    sample[name] = mb
            self.rss.append(sample)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), every)

    # -- main ----------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        config = self.config
        faults = [f for f in config.faults if f != "failover" or config.sentinel]
        async with (
            self.processes(),
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT)) as http,
        ):
            self.load["start"] = list(os.getloadavg())
            config.log(
                f"started redis and {len(self.nodes)} nodes; {config.clients} clients; "
                f"load average {self.load['start']}"
            )
            started = time.monotonic()
            rss = asyncio.create_task(self.sample_rss(max(1.0, config.duration / 60)))
            workers = [asyncio.create_task(self.churn(c)) for c in self.clients]
            try:
                end = started + config.duration
                await self._sleep_until(min(end, time.monotonic() + config.fault_interval / 2))
                baseline = await self.check("baseline", http)
                self._report_check(baseline, "")
                turn = 0
                while faults and (
                    turn < config.max_faults
                    if config.max_faults is not None
                    else time.monotonic() + config.fault_interval / 2 < end
                ):
                    await self._sleep_until(min(end, time.monotonic() + config.fault_interval / 2))
                    kind = faults[turn % len(faults)]
                    turn += 1
                    marks = [len(node.lines) for node in self.nodes]
                    what = await self.fault(kind)
                    result = await self.check(f"{turn}:{kind}", http)
                    self._report_check(result, what)
                    slow = (result.converged_after or 0.0) > config.converge / 2
                    if result.violations or slow:  # a slow one is evidence too
                        self.keep_evidence(result, what, marks)
                    await self._sleep_until(min(end, time.monotonic() + config.fault_interval / 2))
                final = await self.check("final", http)
                self._report_check(final, "")
            finally:
                self.stopping.set()
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                await asyncio.gather(*(c.close() for c in self.clients))
                await rss
                self.load["end"] = list(os.getloadavg())
                self.keep_logs()
        return self.summary(time.monotonic() - started)

    async def _sleep_until(self, when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.monotonic()))

    def _report_check(self, result: CheckResult, what: str) -> None:
        took = (
            "not converged" if result.converged_after is None else f"{result.converged_after:.1f} s"
        )
        self.config.log(
            f"[{result.name}] {what + '; ' if what else ''}converged: {took}, "
            f"{result.connected} connected, {len(result.violations)} violations"
        )
        for violation in result.violations[:5]:
            self.config.log(f"    {violation.kind} at {violation.where}: {violation.detail}")

    def keep_evidence(self, result: CheckResult, what: str, marks: list[int]) -> None:
        """The nodes' logs since the fault, the violations and every client's socket, in
        ``evidence/<check>/``: what a violation needs to be explained."""
        if self.config.evidence is None:
            return
        folder = self.config.evidence / re.sub(r"[^\w.-]+", "_", result.name)
        folder.mkdir(parents=True, exist_ok=True)
        for index, (node, mark) in enumerate(zip(self.nodes, marks, strict=False)):
            (folder / f"node{index}.log").write_text("\n".join(node.lines[mark:]) + "\n")
        lines = [what, *(f"{v.kind} at {v.where}: {v.detail}" for v in result.violations)]
        (folder / "violations.txt").write_text("\n".join(lines) + "\n")
        clients = []
        for client in self.clients:
            sio = client.sio
            engine = getattr(sio, "eio", None)
            clients.append(
                f"client {client.index} {client.easyrtcid} logged_in={client.logged_in} "
                f"rooms={sorted(client.rooms)} sid={getattr(engine, 'sid', None)} "
                f"transport={sio.transport() if sio is not None else None} "
                f"last_login_error={client.last_error or None}"
            )
        (folder / "clients.txt").write_text("\n".join(clients) + "\n")
        self.write_redis_logs(folder)
        self.config.log(f"    evidence: {folder}")

    def write_redis_logs(self, folder: Path) -> None:
        """Each Redis server's (and sentinel's) own output so far, in ``folder``."""
        if self.sentinels is not None:
            self.sentinels.write_logs(folder)
        elif self.redis is not None:
            (folder / "redis.log").write_text("\n".join(self.redis.lines) + "\n")

    def keep_logs(self) -> None:
        """Every process's whole log in ``evidence/logs/`` at the end of the run."""
        if self.config.evidence is None:
            return
        folder = self.config.evidence / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        for index, node in enumerate(self.nodes):
            (folder / f"node{index}-{node.port}.log").write_text("\n".join(node.lines) + "\n")
        self.write_redis_logs(folder)
        self.config.log(f"logs: {folder}")

    def sentinel_switches(self) -> list[str]:
        """Every ``+switch-master`` one sentinel logged (the one that logged most)."""
        if self.sentinels is None:
            return []
        found = [
            [line for line in s.lines if "+switch-master" in line] for s in self.sentinels.sentinels
        ]
        return max(found, key=len)

    def summary(self, elapsed: float) -> dict[str, Any]:
        violations = [v.as_dict() for c in self.checks for v in c.violations]
        rss_by_process: dict[str, dict[str, float]] = {}
        for key in sorted({k for s in self.rss for k in s if k != "t"}):
            values = [s[key] for s in self.rss if key in s]
            if values:
                third = max(1, len(values) // 3)
                rss_by_process[key] = {
                    "first_mb": values[0],
                    "max_mb": max(values),
                    "last_mb": values[-1],
                    "first_third_mean_mb": round(sum(values[:third]) / third, 1),
                    "last_third_mean_mb": round(sum(values[-third:]) / third, 1),
                }
        return {
            "config": {
                "clients": self.config.clients,
                "duration_s": self.config.duration,
                "fault_interval_s": self.config.fault_interval,
                "converge_s": self.config.converge,
                "rooms": self.config.rooms,
                "nodes": self.config.nodes,
                "sentinel": self.config.sentinel,
                "front": "direct" if self.config.direct else "nginx round-robin",
                "alive_ttl_s": self.config.alive_ttl,
            },
            "elapsed_s": round(elapsed, 1),
            "checks": [
                {
                    "name": c.name,
                    "converged_after_s": None
                    if c.converged_after is None
                    else round(c.converged_after, 2),
                    "connected": c.connected,
                    "violations": len(c.violations),
                }
                for c in self.checks
            ],
            "violations": violations,
            "failovers": {
                "kill_to_switch_s": [None if t is None else round(t, 1) for t in self.failovers],
                "switches_caused": self.switches_caused,
                "switches_logged": len(switches := self.sentinel_switches()),
                "switch_lines": switches,
            },
            "load_average": self.load,
            "counts": self.counts,
            "rss": rss_by_process,
            "rss_samples": self.rss,
        }


def rss_mb(pid: int) -> float | None:
    """The resident set size of process ``pid`` in MB (None: gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def text_report(summary: dict[str, Any]) -> str:
    config = summary["config"]
    lines = [
        f"chaos: {config['clients']} clients, {config['nodes']} nodes ({config['front']}), "
        f"{'sentinel' if config['sentinel'] else 'one redis'}, {summary['elapsed_s']} s",
        "checks:",
    ]
    for check in summary["checks"]:
        took = check["converged_after_s"]
        lines.append(
            f"  {check['name']:<14} converged {'-' if took is None else f'{took:.1f} s':>7}  "
            f"connected {check['connected']:>4}  violations {check['violations']}"
        )
    lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in summary["counts"].items()))
    failovers = summary["failovers"]
    if config["sentinel"]:
        lines.append(
            f"failovers: kill -> switch {failovers['kill_to_switch_s']} s; switches "
            f"{failovers['switches_logged']} logged, {failovers['switches_caused']} by faults"
        )
    load = summary["load_average"]
    lines.append(f"load average: start {load.get('start')}, end {load.get('end')}")
    lines.append("RSS (MB, first -> last; max; mean of first third -> last third):")
    for name, rss in summary["rss"].items():
        lines.append(
            f"  {name:<6} {rss['first_mb']:>6} -> {rss['last_mb']:>6}; max {rss['max_mb']:>6}; "
            f"{rss['first_third_mean_mb']:>6} -> {rss['last_third_mean_mb']:>6}"
        )
    kinds: dict[str, int] = {}
    for violation in summary["violations"]:
        kinds[violation["kind"]] = kinds.get(violation["kind"], 0) + 1
    lines.append(
        "violations: "
        + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) if kinds else "none")
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (bound)")
    parser.add_argument("--fault-interval", type=float, default=45.0, help="seconds, 30-60")
    parser.add_argument("--converge", type=float, default=10.0, help="seconds to agree")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--action-interval", type=float, default=4.0)
    parser.add_argument("--faults", default="kill,sigstop,redis,failover")
    parser.add_argument("--sentinel", action="store_true", help="Redis behind Sentinel")
    parser.add_argument("--direct", action="store_true", help="no nginx: clients pick nodes")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", type=Path, help="write the JSON summary here")
    parser.add_argument(
        "--evidence",
        type=Path,
        help="a check with violations leaves its evidence here, the run every process's log",
    )
    args = parser.parse_args()
    faults = tuple(f for f in args.faults.split(",") if f)
    if unknown := set(faults) - set(FAULTS):
        parser.error(f"unknown faults {sorted(unknown)}")
    config = Config(
        clients=args.clients,
        duration=args.duration,
        fault_interval=args.fault_interval,
        converge=args.converge,
        rooms=args.rooms,
        action_interval=args.action_interval,
        faults=faults,
        sentinel=args.sentinel,
        direct=args.direct,
        seed=args.seed,
        evidence=args.evidence,
        log=lambda line: print(line, flush=True),
    )
    summary = asyncio.run(Chaos(config).run())
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    print(text_report(summary))
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
