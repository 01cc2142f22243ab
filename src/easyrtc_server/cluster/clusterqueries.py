"""The partitioned cluster's ``Directory``: the admin API and the push API answered for the
whole cluster by asking every node (issue 23).

A partitioned node's core holds its own connections and, as stubs, the other nodes' members of
the rooms it reads (``partitioned``); no node knows every connection. So a question about the
whole state (the applications, a room's occupants, where a connection is) and an action on
connections (a kick, a server message to a connection, room or group) goes to every node alive
(``registry``), each answering for its own connections (``directory.LocalDirectory``'s
``*_here``): its occupants with their address, transport and time connected, which only their
node knows; its members of a room told the message. The asking node merges the answers: counts
summed, rooms and applications by name, occupants listed node after node.

Server code's changes of the other nodes' connections, sessions and applications are asked
the same way (op ``change``, answered by ``clusterchanges``).

A room field is not a question: it is the room's state, so it goes to the room's partition
(``PartitionedNode.set_room_field``): every node with members there applies it and tells them.

**Wire.** Each node subscribes to its own channel (``keys.queries``, beside its inbox: same
hash tag, so the same master on a Redis Cluster) and publishes there questions to another node
and answers to the node that asked:

- question ``{"q": ID, "from": NODE, "op": OP, "a": [ARGS]}``, OP one of ``OPS``;
- answer ``{"r": ID, "from": NODE, "v": VALUE, "t": CUT}`` (``t``: the node cut a list at
  ``ANSWER_MAX_ITEMS``).

A node that does not answer within ``QUERY_TIMEOUT`` (or that no subscriber heard: gone, or a
version without queries) is *missing*: the answer says so (``Found.missing``; the admin API's
``missingNodes``, or 503 where the thing asked for may be there). A question or answer a node
cannot use is dropped, logged once. Nothing secret travels: what the admin API shows, and the
message server code sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from ..directory import Found, Json, LocalDirectory, Target
from ..engine import EngineUnavailable
from .channels import Channels, Subscription, listen
from .health import ReaderHealth
from .keys import ClusterKeys
from .redisclient import REDIS_ERRORS

log = logging.getLogger("easyrtc_server.cluster")

QUERY_TIMEOUT: Final = 2.0
"""Seconds the asking node waits for the other nodes' answers; those that did not answer by
then are named missing."""
SUBSCRIBE_WAIT: Final = 5.0
RETRY_DELAY: Final = 0.5
OPS: Final = frozenset(("apps", "rooms", "room", "conn", "kick", "msg", "change"))
TARGETS: Final = frozenset(("easyrtcid", "room", "group"))

SetRoomField = Callable[[str, str, str, Any, bool], Awaitable[None]]
Change = Callable[[list[Any]], Awaitable[Any]]


@dataclass(slots=True, eq=False)
class _Asked:
    """One question in flight: the nodes it waits for, their answers so far."""

    waiting: set[str]
    done: asyncio.Future[None]
    answers: dict[str, Any] = field(default_factory=dict)
    cut: bool = False


class ClusterQueries:
    """This node's side of the queries: it asks the others and answers them."""

    def __init__(
        self,
        local: LocalDirectory,
        *,
        node_id: str,
        keys: ClusterKeys,
        channels: Channels,
        alive: Callable[[], Awaitable[Iterable[str]]],
        set_room_field: SetRoomField,
        health: ReaderHealth | None = None,
        change: Change | None = None,
        subscribed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``alive``: the ids of the nodes alive now (this one among them or not);
        ``set_room_field``: the node's way to set a field in a room's partition; ``change``:
        its answer to another node's change of server code (``clusterchanges``);
        ``subscribed``: awaited once this node hears the others' questions."""
        self.local = local
        self.node_id = node_id
        self.keys = keys
        self.channels = channels
        self._alive = alive
        self._set_room_field = set_room_field
        self._change = change
        self._on_subscribed = subscribed
        self.health = health or ReaderHealth()
        self._asked: dict[str, _Asked] = {}
        self._ids = itertools.count(1)
        self._subscription: Subscription | None = None
        self._subscribed = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._answering: set[asyncio.Task[None]] = set()

    # -- lifetime --------------------------------------------------------------------------

    async def start(self) -> None:
        self._subscription = self.channels.subscription()
        self._listener = asyncio.create_task(
            listen(
                self._subscription,
                self.keys.queries(self.node_id),
                self._take,
                self._subscribed,
                RETRY_DELAY,
            ),
            name="cluster-queries",
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SUBSCRIBE_WAIT):
                await self._subscribed.wait()
        if self._on_subscribed is not None:
            await self._on_subscribed()

    async def stop(self) -> None:
        tasks = [t for t in (self._listener, *self._answering) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, *REDIS_ERRORS):
                await task
        self._listener = None
        if self._subscription is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._subscription.aclose()
            self._subscription = None

    # -- the Directory -----------------------------------------------------------------------

    async def applications(self) -> Found[list[Json]]:
        mine, cut = self.local.applications_here()
        found = await self._ask("apps", [])
        by_name: dict[str, tuple[int, set[str]]] = {}
        for answer in [mine, *found.value]:
            for app in _items(answer):
                name, conns, rooms = app.get("name"), app.get("connections"), app.get("rooms")
                if not (isinstance(name, str) and type(conns) is int and type(rooms) is list):
                    continue
                count, names = by_name.get(name, (0, set()))
                names.update(room for room in rooms if isinstance(room, str))
                by_name[name] = (count + conns, names)
        apps = [
            {"name": name, "rooms": len(names), "connections": conns}
            for name, (conns, names) in by_name.items()
        ]
        return Found(apps, found.missing, cut or found.truncated)

    async def rooms(self, app: str) -> Found[list[Json] | None]:
        mine, cut = self.local.rooms_here(app)
        found = await self._ask("rooms", [app])
        answers = [answer for answer in [mine, *found.value] if answer is not None]
        if not answers:
            return Found(None, found.missing)
        merged: dict[str, Json] = {}
        for answer in answers:
            for room in _items(answer):
                _merge_room(merged, room)
        return Found(list(merged.values()), found.missing, cut or found.truncated)

    async def room(self, app: str, room: str) -> Found[Json | None]:
        mine, cut = self.local.room_here(app, room)
        found = await self._ask("room", [app, room])
        merged: dict[str, Json] = {}
        occupants: list[Json] = []
        for answer in [mine, *found.value]:
            if isinstance(answer, dict) and answer.get("name") == room:
                _merge_room(merged, answer)
                listed = answer.get("occupants")
                occupants.extend(o for o in listed or () if isinstance(o, dict))
        if not merged:
            return Found(None, found.missing)
        body = merged[room]
        body["occupants"] = occupants
        return Found(body, found.missing, cut or found.truncated)

    async def connection(self, easyrtcid: str) -> Found[Json | None]:
        mine = self.local.connection_here(easyrtcid)
        if mine is not None:
            return Found(mine)
        found = await self._ask("conn", [easyrtcid])
        for answer in found.value:
            if isinstance(answer, dict) and answer.get("easyrtcid") == easyrtcid:
                return Found(answer)
        return Found(None, found.missing)

    async def disconnect(self, easyrtcid: str) -> Found[bool]:
        if await self.local.disconnect_here(easyrtcid):
            return Found(True)
        found = await self._ask("kick", [easyrtcid])
        if any(answer is True for answer in found.value):
            return Found(True)
        return Found(False, found.missing)

    async def send_message(
        self, msg_type: str, msg_data: Any, app: str, target: Target, name: str
    ) -> Found[int]:
        """Each node sends it to its own recipients. KeyError: no node that answered knows
        the application (or room), and none is missing."""
        args = [msg_type, msg_data, app, target, name]
        orjson.dumps(args)  # not JSON (TypeError): refused here, before any node sends it
        mine = await self.local.send_message_here(msg_type, msg_data, app, target, name)
        if target == "easyrtcid" and mine:  # its one connection is here
            return Found(mine)
        found = await self._ask("msg", args)
        counts = [n for n in [mine, *found.value] if type(n) is int and n >= 0]
        if not counts and not found.missing:
            raise KeyError(f"no application {app!r}" if target != "room" else f"no room {name!r}")
        return Found(sum(counts), found.missing)

    async def set_room_field(
        self, app: str, room: str, name: str, value: Any, *, shared: bool
    ) -> None:
        await self._set_room_field(app, room, name, value, shared)

    # -- asking ------------------------------------------------------------------------------

    async def ask(self, op: str, args: list[Any]) -> Found[list[Any]]:
        """``op`` (one of ``OPS``) asked of every other node alive (``_ask``)."""
        return await self._ask(op, args)

    async def _ask(self, op: str, args: list[Any]) -> Found[list[Any]]:
        """``op`` asked of every other node alive: their answers (in node order) and those
        that did not answer in time. EngineUnavailable: Redis did not answer."""
        try:
            others = sorted(set(await self._alive()) - {self.node_id})
        except REDIS_ERRORS as exc:
            raise EngineUnavailable(f"the cluster's nodes could not be listed: {exc!r}") from None
        if not others:
            return Found([])
        rid = f"{next(self._ids)}"
        question = orjson.dumps({"q": rid, "from": self.node_id, "op": op, "a": args})
        asked = _Asked(set(others), asyncio.get_running_loop().create_future())
        self._asked[rid] = asked
        try:
            try:
                heard = await self.channels.publish(
                    [(self.keys.queries(node), question) for node in others]
                )
            except REDIS_ERRORS as exc:
                raise EngineUnavailable(f"the question could not be sent: {exc!r}") from None
            for node, listeners in zip(others, heard, strict=True):
                if not listeners:  # nobody subscribed: gone, or a node without queries
                    asked.waiting.discard(node)
            if asked.waiting - asked.answers.keys():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(QUERY_TIMEOUT):
                        await asyncio.shield(asked.done)
        finally:
            del self._asked[rid]
        answers = [asked.answers[node] for node in others if node in asked.answers]
        missing = [node for node in others if node not in asked.answers]
        return Found(answers, missing, asked.cut)

    # -- answering ---------------------------------------------------------------------------

    async def _take(self, data: bytes) -> None:
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        """A question (answered in a task of its own) or an answer; junk dropped."""
        try:
            message = orjson.loads(data)
            if not isinstance(message, dict) or not isinstance(message.get("from"), str):
                raise TypeError("not a query message")
            if "r" in message:
                self._answered(message)
                return
            rid, op, args = message.get("q"), message.get("op"), message.get("a")
            if not (isinstance(rid, str) and op in OPS and isinstance(args, list)):
                raise TypeError("not a question")
        except (ValueError, TypeError) as exc:
            self.health.once("query-in", "unusable query message to %s: %r", self.node_id, exc)
            return
        task = asyncio.create_task(self._answer(message["from"], rid, op, args))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    def _answered(self, message: Json) -> None:
        asked = self._asked.get(message.get("r"))  # type: ignore[arg-type]
        node = message["from"]
        if asked is None or node not in asked.waiting or node in asked.answers:
            return  # late (timed out), or not asked
        asked.answers[node] = message.get("v")
        asked.cut = asked.cut or message.get("t") is True
        if asked.waiting <= asked.answers.keys() and not asked.done.done():
            asked.done.set_result(None)

    async def _answer(self, asker: str, rid: str, op: str, args: list[Any]) -> None:
        try:
            value, cut = await self._here(op, args)
        except (TypeError, ValueError, KeyError, IndexError) as exc:  # a question of junk
            self.health.once("query-args", "unusable query %s to %s: %r", op, self.node_id, exc)
            value, cut = None, False
        answer = {"r": rid, "from": self.node_id, "v": value}
        if cut:
            answer["t"] = True
        try:
            await self.channels.publish([(self.keys.queries(asker), orjson.dumps(answer))])
        except REDIS_ERRORS as exc:
            self.health.once("query-out", "a query's answer could not be sent: %r", exc)

    async def _here(self, op: str, args: list[Any]) -> tuple[Any, bool]:
        """This node's answer to ``op``, for its own connections."""
        local = self.local
        match op:
            case "apps":
                return local.applications_here()
            case "rooms":
                return local.rooms_here(_str(args[0]))
            case "room":
                return local.room_here(_str(args[0]), _str(args[1]))
            case "conn":
                return local.connection_here(_str(args[0])), False
            case "kick":
                return await local.disconnect_here(_str(args[0])), False
            case "change":
                if self._change is None:
                    raise ValueError("this node makes no changes for others")
                return await self._change(args), False
            case _:  # "msg"
                msg_type, msg_data, app, target, name = args
                if target not in TARGETS:
                    raise ValueError("no such target")
                sent = await local.send_message_here(
                    _str(msg_type), msg_data, _str(app), target, _str(name)
                )
                return sent, False


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a string expected")
    return value


def _items(answer: Any) -> list[Json]:
    """The objects of a node's list answer (anything else in it skipped)."""
    if not isinstance(answer, list):
        return []
    return [item for item in answer if isinstance(item, dict)]


def _merge_room(merged: dict[str, Json], room: Json) -> None:
    """One node's ``{name, members, fields}`` of a room into ``merged``: members summed,
    fields as any reader of the room's partition has them."""
    name, members, fields = room.get("name"), room.get("members"), room.get("fields")
    if not (isinstance(name, str) and type(members) is int and isinstance(fields, dict)):
        return
    known = merged.get(name)
    if known is None:
        merged[name] = {"name": name, "members": members, "fields": dict(fields)}
        return
    known["members"] += members
    for key, value in fields.items():
        known["fields"].setdefault(key, value)
