"""Holds in a partitioned cluster (``partitioned``): a held connection lives on one node, and
moves to the node its client comes back to.

In the log cluster every replica has every hold (``holds``). Here a keyed connection whose socket
dropped is held by its node alone, as one process holds it (``hold.Holds``): its rooms'
partitions keep its entries (no ``leave`` is posted), relays for it are queued there, from this
node's sockets and from other nodes' inboxes alike. What this module adds:

- **The hold directory**: one Redis key per hold, named by a digest of the resume key's digest
  (``hold_name``; never the key, which no node keeps), holding the id of the node that holds it,
  with a TTL of the grace. A node whose socket logs in with a key it does not know looks there.
- **The handover**: that node asks the holding one over its inbox (``HOLD_ASK``); the holder, if
  it still holds the connection, lets it go without telling anyone (``PartitionHolds.give``: its
  connection stays in its core as another node's member, a stub) and sends what it held
  (``Handover``: easyrtcid, application, username, presence, fields, rooms with their entries,
  the queue, the grace left, the login number) in a ``HOLD_GIVE``. The new node installs it as a
  hold of its own (``PartitionHolds.adopt``) and joins its rooms again with the next login
  number: each partition replaces the member's node and login (``partition``), so every node's
  stub follows it there and nobody sees it leave. Then its login resumes it as on one node.
- Relays that reach the old node after it gave the connection away are forwarded to the new one
  (the other nodes' stubs still point to the old node until they read the new join).

Only ``partitioned`` drives this; this module does the hold directory's I/O and the records'
wire form, and knows nothing of sockets, partitions or facts. (The hold directory is not
``directory``, the admin and push API's view of the cluster.)
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from ..protocol.hold import Held, Holds
from ..protocol.model import Connection, Peer
from ..protocol.outcome import Json, Push
from .health import ReaderHealth
from .keys import ClusterKeys
from .luascript import LuaScript
from .passbatch import PassBatch
from .redisclient import REDIS_ERRORS, AsyncClient

HOLD_ASK: Final = "hold-ask"
"""Inbox message ``{"n": name, "from": node}``: hand the hold named ``name`` over to ``node``."""
HOLD_GIVE: Final = "hold-give"
"""Inbox message: a ``Handover`` record, or ``{"n": name}`` alone when it is not held there."""
DIRECTORY_SLACK_MS: Final = 1000
"""A hold directory key outlives its grace by this much (a look just before the end finds it)."""

_DROP_IF_OWNER: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def hold_name(digest: bytes) -> str:
    """The hold directory's name of the hold of a resume key whose digest is ``digest``: a
    digest of it again (what Redis holds says nothing of the key, nor of the digest a node
    keeps)."""
    return hashlib.sha256(b"easyrtc-hold|" + digest).hexdigest()[:32]


class PartitionHolds(Holds):
    """One node's holds: as one process's, without resume tokens (a node restarted, or any other
    node, would restore an easyrtcid that still lives elsewhere in the cluster), and with a
    held connection that moves between nodes."""

    def token(self, app_name: str, easyrtcid: str, digest: bytes) -> str:
        return ""

    def restorable(self, peer: Peer, app_name: str, in_use: Any) -> str | None:
        return None

    def give(self, easyrtcid: str) -> Held | None:
        """Another node takes the held ``easyrtcid`` over: its hold and key binding end here,
        nobody told (not counted as an expiry or a resume)."""
        held = self.held.pop(easyrtcid, None)
        if held is not None:
            self.unbind(easyrtcid)
        return held

    def adopt(self, peer: Peer, digest: bytes, left_ms: int, queue: list[Push], size: int) -> Held:
        """A hold another node gave this one: ``peer`` (no socket) holds it for ``left_ms``."""
        self.bind(peer.easyrtcid, digest)
        held = Held(peer, self.now() + max(0, left_ms), deque(queue), size)
        self.held[peer.easyrtcid] = held
        self.counts.holds += 1
        return held


@dataclass(slots=True)
class Handover:
    """What a node gives with a held connection: all the next node needs to hold it."""

    name: str
    digest: bytes
    cid: str
    app: str
    login: int
    username: str | None
    presence: Json
    fields: Json
    """Its connection fields, as ``log.encode_fields`` writes them."""
    rooms: dict[str, Json]
    """Room name -> its entry as the partitions know it."""
    queue: list[tuple[str, Json]]
    size: int
    left_ms: int

    def to_json(self) -> Json:
        return {
            "n": self.name,
            "d": self.digest.hex(),
            "cid": self.cid,
            "app": self.app,
            "login": self.login,
            "username": self.username,
            "presence": self.presence,
            "fields": self.fields,
            "rooms": self.rooms,
            "queue": [[event, body] for event, body in self.queue],
            "size": self.size,
            "left": self.left_ms,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Handover | None:
        """A record read back; None for anything not one (a node never crashes on junk)."""
        if not isinstance(raw, dict):
            return None
        try:
            digest = bytes.fromhex(raw["d"])
            queue = [(str(event), body) for event, body in raw["queue"] if isinstance(body, dict)]
            record = cls(
                raw["n"],
                digest,
                raw["cid"],
                raw["app"],
                raw["login"],
                raw["username"],
                raw["presence"],
                raw["fields"],
                raw["rooms"],
                queue,
                raw["size"],
                raw["left"],
            )
        except (KeyError, TypeError, ValueError):
            return None
        texts = (record.name, record.cid, record.app)
        numbers = (record.login, record.size, record.left_ms)
        if (
            not all(isinstance(text, str) and text for text in texts)
            or not all(type(n) is int for n in numbers)
            or len(digest) != 32
            or not (record.username is None or isinstance(record.username, str))
            or not isinstance(record.presence, dict)
            or not isinstance(record.fields, dict)
            or not isinstance(record.rooms, dict)
            or not all(isinstance(e, dict) for e in record.rooms.values())
        ):
            return None
        return record


def detach(conn: Connection) -> None:
    """``conn`` leaves its session (not carried to another node). Its groups stay: its
    entries carry them (``stubs.GROUPS``), so it is a stub in them here and in them on the node
    it goes to."""
    app = conn.app
    session = conn.session
    if session is not None:
        session.connections.discard(conn.easyrtcid)
        if not session.connections and not session.fields:
            app.sessions.pop(session.easyrtcsid, None)
        conn.session = None


class HoldDirectory:
    """Which node holds each keyed connection: ``keys.hold(name)`` -> node id, with a TTL.
    What is asked in one event-loop pass goes in one pipeline (its owner runs ``run``): a
    storm of keyed logins or drops holds one connection, not one per client; the writes of
    one name keep their order (the last asked in a pass wins)."""

    def __init__(self, redis: AsyncClient, keys: ClusterKeys, health: ReaderHealth) -> None:
        self.redis = redis
        self.keys = keys
        self.health = health
        self._drop = LuaScript(redis, _DROP_IF_OWNER)
        self._writes: dict[str, tuple[str, int | None]] = {}
        """name -> (node, TTL ms) to set, or (node, None) to delete if it still names it."""
        self._reads: list[tuple[str, asyncio.Future[Any]]] = []
        self._batch = PassBatch(self._flush)

    def put(self, name: str, node: str, ttl_ms: int) -> asyncio.Future[None]:
        """Name ``node`` for ``name``, in this loop pass's batch: done once it was sent."""
        self._writes.pop(name, None)  # (re-inserted last: after the others of this pass)
        self._writes[name] = (node, max(1, ttl_ms + DIRECTORY_SLACK_MS))
        return self._batch.sent()

    def drop(self, name: str, node: str) -> None:
        """The connection ended at ``node``: its name goes, unless another node has it now."""
        self._writes.pop(name, None)
        self._writes[name] = (node, None)
        self._batch.due()

    async def owner(self, name: str) -> str | None:
        """The node named for ``name``, or None. Raises what Redis answered."""
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._reads.append((name, answered))
        self._batch.due()
        raw = await answered
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def run(self) -> None:
        """The hold directory's loop (the owner runs it as a task and cancels it)."""
        await self._batch.run()

    async def _flush(self) -> None:
        writes, self._writes = self._writes, {}
        reads, self._reads = self._reads, []
        await self._send(writes, reads)

    async def _send(
        self,
        writes: dict[str, tuple[str, int | None]],
        reads: list[tuple[str, asyncio.Future[Any]]],
    ) -> None:
        hold = self.keys.hold
        drops = [([hold(name)], [node]) for name, (node, ttl) in writes.items() if ttl is None]
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for name, (node, ttl) in writes.items():
                    if ttl is not None:
                        pipe.set(hold(name), node, px=ttl)
                for name, _ in reads:
                    pipe.get(hold(name))
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            if drops:
                replies.extend(await self._drop.run_all(drops))
        except REDIS_ERRORS as exc:
            replies = [exc] * (len(writes) + len(reads))
        failed = [reply for reply in replies if isinstance(reply, BaseException)]
        if failed:
            self.health.once("hold-directory", "the hold directory failed: %r", failed[0])
        got = replies[len(writes) - len(drops) :]
        for (_, answered), reply in zip(reads, got, strict=False):
            if answered.done():
                continue
            if isinstance(reply, BaseException):
                answered.set_exception(reply)
            else:
                answered.set_result(reply)
