"""Server code's changes (``server.change``, ``control``) made for the whole partitioned cluster
(issue 23).

A partitioned node's core holds its own connections only (``partitioned``), so a change made
there alone misses the other nodes' clients. Each change goes where its object lives:

- a connection's field or groups (``set_connection_field``, ``add_to_group``,
  ``remove_from_group``): made on this node if the connection is its own, else asked of every
  node (``clusterqueries``, op ``change``): the one whose connection it is makes it and tells
  the connection's rooms, as for its own changes. KeyError when no node has it;
- an EasyRTC session's field (``set_session_field``): written first to the session's hash in
  Redis (``keys.session``, named by a digest of the application and ``easyrtcsid``, never the
  ``easyrtcsid`` itself; its TTL ``SESSION_TTL`` renewed by each write and each login that reads
  it), then every node gives its connections of that session the whole set and tells them
  (``sessionData``, as one server sends it). A login on any node reads the hash before its
  token is made. KeyError when no node has a connection of that session and Redis no field;
- an application's field or creation (``set_app_field``, ``create_app``): written to Redis
  (``keys.apps`` with the options, ``keys.app_fields``), then made on every node; a node that
  starts later loads them once it hears the others' questions (``load``); the first login into
  an application a node has not read yet (one a client created there) reads its fields;
- a room field (``set_room_field``): to the room's partition (``PartitionedNode.set_room_field``);
- a room's creation or deletion (``create_room``, ``delete_room``): checked here as one process
  checks them (the application known, the name its options allow), then decided in the room's
  partition (``PartitionedNode.create_room``, ``delete_room``);
- any other ``control`` change: on this node, as before.

Nodes that did not answer within ``clusterqueries.QUERY_TIMEOUT`` miss the push of a session
field (their later logins still read it) or of an application field (until it restarts).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ..engine import Carrier, EngineUnavailable
from ..protocol import control
from ..protocol.core import Core
from ..protocol.model import Application, Connection, Fields, Room, Session
from ..protocol.outcome import Outcome
from .clusterqueries import ClusterQueries
from .health import ReaderHealth
from .keys import ClusterKeys
from .log import decode_fields, encode_fields
from .passbatch import PassBatch
from .redisclient import REDIS_ERRORS, AsyncClient, text

log = logging.getLogger("easyrtc_server.cluster")

SESSION_TTL: Final = 7 * 24 * 3600
"""Seconds a session's fields stay in Redis after the last write or login that read them."""
CONNECTION_CHANGES: Final = frozenset(("set_connection_field", "add_to_group", "remove_from_group"))
APPS_READ_MAX: Final = 10_000
"""Applications whose fields a node remembers having read whole (``ClusterChanges.apps_read``);
past it, it forgets them all and reads each again at its next login."""
ERRORS: Final[dict[str, type[Exception]]] = {"ValueError": ValueError, "TypeError": TypeError}
"""What a node's refusal of a connection change is raised as on the asking node."""

SetRoomField = Callable[[str, str, str, Any, bool], Awaitable[None]]
CreateRoom = Callable[[str, str], Awaitable[Room]]
DeleteRoom = Callable[[str, str], Awaitable[None]]


def session_name(app: str, easyrtcsid: str) -> str:
    """The name of a session in Redis and between nodes: says nothing of its ``easyrtcsid``."""
    digest = hashlib.sha256(f"easyrtc-session|{app}|{easyrtcsid}".encode())
    return digest.hexdigest()[:32]


@dataclass(slots=True)
class _LoginRead:
    """A login's fields to read (its application's too when ``read_app``): ``found``, the
    replies, once read (None: not read)."""

    conn: Connection
    read_app: bool
    found: list[Any] | None = None


class ClusterChanges:
    """This node's side of server code's changes: it makes them and answers the others'."""

    def __init__(
        self,
        core: Core,
        carrier: Carrier,
        redis: AsyncClient,
        keys: ClusterKeys,
        *,
        tell: Callable[[str], None],
        set_room_field: SetRoomField,
        create_room: CreateRoom,
        delete_room: DeleteRoom,
        health: ReaderHealth,
    ) -> None:
        """``tell``: the partitions told what changed for this node's connection;
        ``set_room_field``, ``create_room``, ``delete_room``: made in a room's partition."""
        self.core = core
        self.carrier = carrier
        self.redis = redis
        self.keys = keys
        self._tell = tell
        self._set_room_field = set_room_field
        self._create_room = create_room
        self._delete_room = delete_room
        self.health = health
        self.queries: ClusterQueries | None = None
        """Set once the node made its directory (``PartitionedNode.directory``)."""
        self._logins: list[_LoginRead] = []
        """Logins whose fields are to be read in the next batch."""
        self._login_reads = PassBatch(self._read_logins)
        self.apps_read: set[str] = set()
        """Applications whose fields this node has had whole from Redis (at start, in a
        change, at a login): a login into one of them reads none (one round trip less)."""

    # -- server code's side ------------------------------------------------------------------

    async def change(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``control.<name>(state, *args, **kwargs)`` for the whole cluster; raises what one
        process raises (KeyError: no such connection, session or application)."""
        if name in CONNECTION_CHANGES:
            return await self._connection_change(name, list(args), kwargs)
        match name:
            case "set_session_field":
                return await self._set_session_field(*args, **kwargs)
            case "set_app_field":
                return await self._set_app_field(*args, **kwargs)
            case "create_app":
                return await self._create_app(*args, **kwargs)
            case "set_room_field":
                await self._room_field(*args, **kwargs)
                return Outcome()
            case "create_room":
                return await self._room_created(*args, **kwargs)
            case "delete_room":
                return await self._delete_room(*args, **kwargs)
        result = getattr(control, name)(self.core.state, *args, **kwargs)
        if isinstance(result, Outcome):
            await self.carrier.deliver(None, result, None)
        return result

    async def _connection_change(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        try:
            return self._connection_here(name, args, kwargs)
        except KeyError:
            pass  # not a connection of this node
        found = await self._ask(["conn", name, args, kwargs])
        for answer in found.value:
            if answer == {"ok": True}:
                return None
            if isinstance(answer, dict) and isinstance(answer.get("e"), str):
                raise ERRORS.get(answer["e"], ValueError)(str(answer.get("m")))
        if found.missing:
            raise EngineUnavailable(f"no node that answered has {args[0]!r}: {found.missing}")
        raise KeyError(f"no authenticated connection {args[0]!r}")

    def _connection_here(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        result = getattr(control, name)(self.core.state, *args, **kwargs)
        self._tell(str(args[0]))
        return result

    async def _set_session_field(
        self, app: str, easyrtcsid: str, name: str, value: Any, *, shared: bool = True
    ) -> Outcome:
        self._check_field_name(app, name)
        named = session_name(app, easyrtcsid)
        key = self.keys.session(named)
        encoded = orjson.dumps([value, shared])  # not JSON: TypeError, before any write
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(key)
                pipe.hset(key, name, encoded)
                pipe.expire(key, SESSION_TTL)
                pipe.hgetall(key)
                existed, _, _, stored = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise EngineUnavailable(f"the session's fields could not be written: {exc!r}") from None
        fields = _fields(stored)
        here, out = self._session_here(app, named, fields)
        await self.carrier.deliver(None, out, None)
        found = await self._ask(["session", app, named, encode_fields(fields)])
        if not (existed or here or any(answer is True for answer in found.value)):
            if found.missing:  # the session may be there: its field is kept
                raise EngineUnavailable(f"no node that answered has the session: {found.missing}")
            try:  # nobody has it: one process refuses it, and keeps nothing
                await self.redis.delete(key)
            except REDIS_ERRORS as exc:
                self.health.once("session-undo", "a session key was left: %r", exc)
            raise KeyError(f"no session {easyrtcsid!r} in application {app!r}")
        return out

    def _session_here(self, app: str, named: str, fields: Fields) -> tuple[bool, Outcome]:
        """This node's connections of the session named ``named`` given ``fields`` and told."""
        session = self._session(app, named)
        if session is None:
            return False, Outcome()
        session.fields.update(fields)
        return True, control.session_told(self.core.state, session)

    def _session(self, app: str, named: str) -> Session | None:
        application = self.core.apps.get(app)
        if application is None:
            return None
        for easyrtcsid, session in application.sessions.items():
            if session_name(app, easyrtcsid) == named:
                return session
        return None

    async def _set_app_field(self, app: str, name: str, value: Any, *, shared: bool = True) -> None:
        self._check_field_name(app, name)
        encoded = orjson.dumps([value, shared])
        if app not in self.core.apps and not await self._known_app(app):
            raise KeyError(f"no application {app!r}")
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hsetnx(self.keys.apps, app, b"{}")
                pipe.hset(self.keys.app_fields(app), name, encoded)
                pipe.hget(self.keys.apps, app)
                pipe.hgetall(self.keys.app_fields(app))
                _, _, options, stored = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise EngineUnavailable(f"the application could not be written: {exc!r}") from None
        await self._app_everywhere(app, _options(options), _fields(stored))

    async def _known_app(self, app: str) -> bool:
        try:
            if await self.redis.hexists(self.keys.apps, app):
                return True
        except REDIS_ERRORS as exc:
            raise EngineUnavailable(f"the applications could not be read: {exc!r}") from None
        found = await self._ask(["app?", app])
        return any(answer is True for answer in found.value)

    async def _create_app(self, app: str, **options: Any) -> Application:
        state = self.core.state
        if not state.options.app_name_regexp.test(app):
            raise ValueError(f"improper application name {app!r}")
        state.options.protocol.replace(**options)  # an unknown option: TypeError, unwritten
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hsetnx(self.keys.apps, app, orjson.dumps(options))
                pipe.hget(self.keys.apps, app)
                pipe.hgetall(self.keys.app_fields(app))
                _, stored_options, stored = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise EngineUnavailable(f"the application could not be written: {exc!r}") from None
        await self._app_everywhere(app, _options(stored_options), _fields(stored))
        return control.create_app(state, app)  # made above; kept when empty

    async def _app_everywhere(self, app: str, options: dict[str, Any], fields: Fields) -> None:
        self._app_here(app, options, fields)
        await self._ask(["app", app, options, encode_fields(fields)])

    def _app_here(self, app: str, options: dict[str, Any], fields: Fields) -> bool:
        """The application made here (with ``options``) if it is not, kept when empty, given
        ``fields``; True if it was here."""
        application = self.core.apps.get(app)
        had = application is not None
        if application is None:
            application = control.create_app(self.core.state, app, **options)
        application.persistent = True
        application.fields.update(fields)
        self._read(app)
        return had

    def _read(self, app: str) -> None:
        if len(self.apps_read) >= APPS_READ_MAX:
            self.apps_read.clear()
        self.apps_read.add(app)

    async def _room_field(
        self, app: str, room: str, name: str, value: Any, *, shared: bool = True
    ) -> None:
        await self._set_room_field(app, room, name, value, shared)

    async def _room_created(self, app: str, room: str) -> Room:
        """``control.create_room``'s checks (KeyError: an application no node knows;
        ValueError: a name its options refuse), then the room's partition makes it."""
        if app not in self.core.apps and not await self._known_app(app):
            raise KeyError(f"no application {app!r}")
        application = self.core.apps.get(app)
        options = application.options if application is not None else self.core.options.protocol
        if not options.room_name_regexp.test(room):
            raise ValueError(f"improper room name {room!r}")
        return await self._create_room(app, room)

    def _check_field_name(self, app: str, name: str) -> None:
        application = self.core.apps.get(app)
        options = application.options if application is not None else self.core.options.protocol
        if not options.field_name_regexp.test(name):
            raise ValueError(f"improper field name {name!r}")

    async def _ask(self, args: list[Any]) -> Any:
        if self.queries is None:
            raise EngineUnavailable("this node does not ask the others yet")
        return await self.queries.ask("change", args)

    # -- the other nodes' side ---------------------------------------------------------------

    async def here(self, args: list[Any]) -> Any:
        """Another node's change, made on this node's connections (``clusterqueries``' op
        ``change``): an answer for the asking node."""
        match args:
            case ["conn", str(name), list(change_args), dict(kwargs)] if (
                name in CONNECTION_CHANGES and change_args
            ):
                try:
                    self._connection_here(name, change_args, kwargs)
                except KeyError:
                    return None  # not a connection of this node
                except (ValueError, TypeError) as exc:
                    return {"e": type(exc).__name__, "m": str(exc)}
                return {"ok": True}
            case ["session", str(app), str(named), dict(fields)]:
                here, out = self._session_here(app, named, decode_fields(fields))
                await self.carrier.deliver(None, out, None)
                return here
            case ["app?", str(app)]:
                return app in self.core.apps
            case ["app", str(app), dict(options), dict(fields)]:
                try:
                    return self._app_here(app, options, decode_fields(fields))
                except (ValueError, TypeError) as exc:
                    self.health.once("app-change", "an application could not be made: %r", exc)
                    return None
        raise ValueError("not a change")

    async def load(self) -> None:
        """The applications server code made or gave fields, made on this node (started, or
        hearing the others' changes from now on)."""
        try:
            apps = await self.redis.hgetall(self.keys.apps)
            names = [text(name) for name in apps]
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self.keys.app_fields(name))
                fields = await pipe.execute() if names else []
        except REDIS_ERRORS as exc:
            self.health.once("apps-load", "the applications could not be loaded: %r", exc)
            return
        for name, options, stored in zip(names, apps.values(), fields, strict=True):
            try:
                self._app_here(name, _options(options), _fields(stored))
            except (ValueError, TypeError) as exc:
                self.health.once("app-load", "application %r could not be made: %r", name, exc)

    async def run(self) -> None:
        """The logins' reads, a pipeline per event-loop pass (the owner runs it as a task and
        cancels it, then calls ``release``)."""
        await self._login_reads.run()

    def release(self) -> None:
        """This node stops: a login waiting for its fields goes on without them."""
        self._login_reads.release()

    async def _read_logins(self) -> None:
        batch, self._logins = self._logins, []
        if not batch:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for asked in batch:
                    if asked.read_app:
                        pipe.hgetall(self.keys.app_fields(asked.conn.app.name))
                    session = asked.conn.session
                    if session is not None:
                        key = self.keys.session(
                            session_name(asked.conn.app.name, session.easyrtcsid)
                        )
                        pipe.hgetall(key)
                        pipe.expire(key, SESSION_TTL)
                found = await pipe.execute()
        except REDIS_ERRORS as exc:
            self.health.once("login-fields", "a login's fields could not be read: %r", exc)
            return
        at = 0
        for asked in batch:
            size = asked.read_app + 2 * (asked.conn.session is not None)
            asked.found = found[at : at + size]
            at += size

    async def at_login(self, conn: Connection) -> None:
        """Before ``conn``'s token: its session's fields as Redis has them (set from any node),
        and its application's, the first time this node sees a login into it. The reads of
        one event-loop pass's logins go in one pipeline (``run``): a storm of logins each
        holding a pooled connection ran out of redis-py's and lost their fields."""
        app = conn.app
        session = conn.session
        read_app = app.name not in self.apps_read
        if session is None and not read_app:
            return
        asked = _LoginRead(conn, read_app)
        self._logins.append(asked)
        await asyncio.shield(self._login_reads.sent())  # shared with the batch's others
        found = asked.found
        if found is None:  # Redis failed: logged once by the batch
            return
        if read_app:
            app_fields = _fields(found.pop(0))
            if app_fields:
                app.fields.update(app_fields)
                app.persistent = True
            self._read(app.name)
        if session is not None:
            session.fields.update(_fields(found[0]))


def _fields(stored: Any) -> Fields:
    """A Redis hash of ``[value, shared]`` pairs as fields; junk left out."""
    raw: dict[str, Any] = {}
    for name, value in (stored or {}).items():
        try:
            raw[text(name)] = orjson.loads(value)
        except (orjson.JSONDecodeError, TypeError):
            continue
    return decode_fields(raw)


def _options(stored: Any) -> dict[str, Any]:
    try:
        options = orjson.loads(stored) if stored is not None else {}
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return options if isinstance(options, dict) else {}
