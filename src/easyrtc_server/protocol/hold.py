"""Holding a keyed connection whose socket dropped, so that a new socket can resume it.

A client may give a *resume key* when it connects (``easyrtcResumeKey``: 22 to 128 characters
of ``A-Z a-z 0-9 _ -``, at least 128 random bits). Its login binds the key's digest to its
connection (the key itself is never kept). When that socket drops without a goodbye, the
connection is *held* for ``resume_grace`` seconds: still in its rooms with its presence and
apiFields, nobody told. Messages relayed to it meanwhile are queued, bounded by
``resume_queue_messages`` and ``resume_queue_bytes``; past the bound their sender is refused as
for a gone peer. A new socket that gives the same key and logs in to the same application takes
the connection back (``auth`` does the login side): same easyrtcid, its rooms, the queue after
its token. When the grace runs out, the hold ends as an ordinary disconnect. One key names one
connection: a key given while its connection is still live (its socket dropped, unnoticed yet)
takes the connection over, and the older socket is closed.

A restarted process has no holds. For that case every keyed login also gets a *resume token*:
its application and easyrtcid with the time, signed (HMAC-SHA256 with ``resume_secret``) over
the key's digest as well. A socket that gives key and token to a process started after the
token was issued, within ``resume_grace`` of that start, gets that easyrtcid back, once.

Owns the key bindings, the holds and their queues, and the tokens. Knows nothing of sockets,
timers or hooks, and changes no room: the server calls ``hold`` when a socket closes, ``take``
for a push to a connection without a socket and ``expired`` when ``next_expiry`` is due; the
core builds and removes connections.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from ..options import Options
from .errors import ErrorCode
from .model import Peer
from .outcome import Push

KEY_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{22,128}")
"""A resume key: base64url characters; 22 of them carry 132 bits."""

TOKEN_MAX_LENGTH: Final = 512

RESUME_EVENT: Final = "easyrtcResume"
"""The push that gives a keyed client its resume token (after the login's token reply)."""

_RELAYED: Final = "senderEasyrtcid"
"""Key of every message a peer relayed (queued for a held connection; server pushes are not:
the token given at resume carries the current room state)."""


def key_digest(value: Any) -> bytes | None:
    """The digest of a well-formed key; None for anything else (then ignored)."""
    if not isinstance(value, str) or KEY_PATTERN.fullmatch(value) is None:
        return None
    return hashlib.sha256(value.encode()).digest()


def well_formed_token(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= TOKEN_MAX_LENGTH and value.isascii():
        return value
    return None


@dataclass(slots=True, eq=False)
class Held:
    """A connection whose socket dropped: its last peer, until when, what waits for it."""

    peer: Peer
    until: int
    queue: deque[Push] = field(default_factory=deque)
    size: int = 0


@dataclass(slots=True)
class HoldCounts:
    """Totals since start, for the metrics."""

    holds: int = 0
    resumes: int = 0
    restores: int = 0
    """Resumes from a previous process's token (after a restart)."""
    expiries: int = 0
    queued: int = 0
    overflows: int = 0


class Holds:
    """Every key binding and hold of one server, on the core's clock (ms)."""

    def __init__(self, options: Options, clock: Callable[[], int]) -> None:
        self.grace_ms = int(options.resume_grace * 1000)
        self.max_messages = options.resume_queue_messages
        self.max_bytes = options.resume_queue_bytes
        secret = options.resume_secret
        self._secret = secret.encode() if secret else secrets.token_bytes(32)
        self.now = clock
        self.started = clock()
        self.bound: dict[bytes, str] = {}
        """Key digest -> the easyrtcid it resumes (live or held)."""
        self.key_of: dict[str, bytes] = {}
        self.held: dict[str, Held] = {}
        self._restored: set[bytes] = set()
        """Digests whose token restored an easyrtcid in this process (each works once)."""
        self.counts = HoldCounts()

    # -- bindings ----------------------------------------------------------------------------

    def bind(self, easyrtcid: str, digest: bytes) -> None:
        """A keyed login: ``digest`` now resumes ``easyrtcid`` (and nothing else)."""
        old = self.key_of.get(easyrtcid)
        if old is not None and old != digest:
            self.bound.pop(old, None)
        previous = self.bound.get(digest)
        if previous is not None and previous != easyrtcid:
            self.key_of.pop(previous, None)
        self.bound[digest] = easyrtcid
        self.key_of[easyrtcid] = digest

    def unbind(self, easyrtcid: str) -> None:
        """The connection is gone for good."""
        digest = self.key_of.pop(easyrtcid, None)
        if digest is not None and self.bound.get(digest) == easyrtcid:
            del self.bound[digest]
        self.held.pop(easyrtcid, None)

    def resumes(self, peer: Peer) -> str | None:
        """The easyrtcid ``peer``'s key resumes, if any."""
        digest = peer.resume_key
        return self.bound.get(digest) if digest is not None else None

    # -- holds -------------------------------------------------------------------------------

    def hold(self, peer: Peer) -> bool:
        """``peer``'s socket dropped without a goodbye: hold its connection if it is keyed."""
        cid = peer.easyrtcid
        if self.grace_ms <= 0 or peer.connection is None or cid not in self.key_of:
            return False
        self.held[cid] = Held(peer, self.now() + self.grace_ms)
        self.counts.holds += 1
        return True

    def is_held(self, easyrtcid: str) -> bool:
        return easyrtcid in self.held

    def release(self, easyrtcid: str) -> Held | None:
        """The connection resumes (held, live or restored): its hold ends, if any (its queue
        is the caller's to deliver)."""
        self.counts.resumes += 1
        return self.held.pop(easyrtcid, None)

    def end(self, easyrtcid: str) -> Peer | None:
        """Server code ends the hold of ``easyrtcid`` now: its dropped socket, to close as
        usual, or None if it is not held."""
        held = self.held.pop(easyrtcid, None)
        return held.peer if held is not None else None

    def take(self, push: Push) -> ErrorCode | None:
        """A push for a connection without a socket: queued if it is held and relayed by a
        peer (other pushes are dropped). Past the bounds, the error its sender is refused
        with when it was sent to this connection alone, as for a gone peer."""
        held = self.held.get(push.to)
        if held is None:
            return None
        body = push.body
        if type(body) is not dict or _RELAYED not in body:
            return None
        direct = push.event == "easyrtcCmd" or "targetEasyrtcid" in body
        try:
            size = len(orjson.dumps(body))
        except orjson.JSONEncodeError:
            size = self.max_bytes + 1
        if len(held.queue) >= self.max_messages or held.size + size > self.max_bytes:
            self.counts.overflows += 1
            if not direct:
                return None
            if push.event == "easyrtcCmd":
                return ErrorCode.MSG_REJECT_TARGET_EASYRTCID
            return ErrorCode.MSG_REJECT_GEN_FAIL
        held.queue.append(push)
        held.size += size
        self.counts.queued += 1
        return None

    def requeue(self, easyrtcid: str, pushes: list[Push], *, first: bool = True) -> None:
        """Relayed messages its client had not confirmed when its socket dropped
        (``delivery``): queued past the bounds too (their senders were answered), first in the
        queue (``first``: they came before anything queued) or last."""
        held = self.held.get(easyrtcid)
        if held is None:
            return
        for push in reversed(pushes) if first else pushes:
            if first:
                held.queue.appendleft(push)
            else:
                held.queue.append(push)
            with contextlib.suppress(orjson.JSONEncodeError):
                held.size += len(orjson.dumps(push.body))
            self.counts.queued += 1

    def next_expiry(self) -> int | None:
        """When (clock ms) the first hold runs out, or None."""
        if not self.held:
            return None
        return min(held.until for held in self.held.values())

    def expired(self) -> list[Peer]:
        """The held sockets whose grace is over, their holds ended (the core removes them)."""
        now = self.now()
        gone = [cid for cid, held in self.held.items() if held.until <= now]
        peers = []
        for cid in gone:
            peers.append(self.held.pop(cid).peer)
            self.counts.expiries += 1
        return peers

    # -- resume tokens (across a restart) ----------------------------------------------------

    def token(self, app_name: str, easyrtcid: str, digest: bytes) -> str:
        """A token that lets the key of ``digest`` take ``easyrtcid`` back from a later process."""
        payload = _b64(orjson.dumps([app_name, easyrtcid, self.now()]))
        return f"{payload}.{self._sign(payload, digest)}"

    def restorable(self, peer: Peer, app_name: str, in_use: Callable[[str], bool]) -> str | None:
        """The easyrtcid ``peer``'s token gives back in ``app_name``, or None: a good signature
        over its key, issued before this process started, within the grace of that start,
        used once, for an easyrtcid nobody has."""
        token, digest = peer.resume_token, peer.resume_key
        if token is None or digest is None or self.grace_ms <= 0:
            return None
        now = self.now()
        if now >= self.started + self.grace_ms:
            self._restored.clear()
            return None
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload, digest).encode()):
            return None
        try:
            claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not (isinstance(claims, list) and len(claims) == 3):
            return None
        app, easyrtcid, issued = claims
        if (
            app != app_name
            or not isinstance(easyrtcid, str)
            or not isinstance(issued, int)
            or issued >= self.started
            or digest in self._restored
            or in_use(easyrtcid)
        ):
            return None
        return easyrtcid

    def restored(self, peer: Peer) -> None:
        """``peer``'s token was used: it works no more in this process."""
        if peer.resume_key is not None:
            self._restored.add(peer.resume_key)
            self.counts.restores += 1

    def _sign(self, payload: str, digest: bytes) -> str:
        mac = hmac.new(
            self._secret, b"easyrtc-resume-1|" + payload.encode() + b"|" + digest, hashlib.sha256
        )
        return _b64(mac.digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
