"""Holds in a cluster: part of the replicated state, so that a client resumes on any node.

Every replica keeps the same key bindings (digests only), holds and queues (``hold.Holds``),
because every change to them comes from an entry of the log, applied in order with the entry's
time (``replica``): a keyed login's digest rides in its ``recv`` entry; a dropped socket's
``hold``, a relayed message for a held connection (``queue``), a hold whose grace ran out
(``expire``) and a dead node's keyed clients (``node-gone``) are entries too. So the grace is
decided by the log's clock, not by any node's timer (a node's timer only appends ``expire``).

Two things of the one-process holds do not apply: the server's own expiry timer (the log
decides: ``next_expiry`` and ``expired`` give nothing to the server, ``due`` and
``expire_due`` serve the replica) and restoring from a resume token after a restart (the
holds outlive any one node; each replica started at its own time and would decide a token
differently): a keyed login's ``easyrtcResume`` push carries an empty token.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ..protocol.hold import Held, Holds
from ..protocol.model import Peer
from ..protocol.outcome import Push


class ReplicatedHolds(Holds):
    """The holds of one replica, changed only by the log's entries."""

    def next_expiry(self) -> int | None:
        """The server's timer is not the one that ends holds here (``due``)."""
        return None

    def expired(self) -> list[Peer]:
        return []

    def restorable(self, peer: Peer, app_name: str, in_use: Any) -> str | None:
        return None

    def token(self, app_name: str, easyrtcid: str, digest: bytes) -> str:
        """No token: nothing restores from one here (and every replica computes the same
        resume push)."""
        return ""

    def end(self, easyrtcid: str) -> Peer | None:
        """Not here: every replica ends it alike, through the log (``ClusterNode.disconnect``
        appends its ``release``)."""
        return None

    def end_now(self, easyrtcid: str) -> Peer | None:
        """A ``release`` entry: the held socket of ``easyrtcid``, its hold ended, or None."""
        held = self.held.pop(easyrtcid, None)
        return held.peer if held is not None else None

    def due(self) -> int | None:
        """When (log ms) the first hold runs out, or None: then a node appends ``expire``."""
        return super().next_expiry()

    def expire_due(self, easyrtcid: str) -> Peer | None:
        """An ``expire`` entry: the held socket of ``easyrtcid`` if its grace is over by the
        entry's time (its hold ended), else None (resumed meanwhile, or expired already)."""
        held = self.held.get(easyrtcid)
        if held is None or held.until > self.now():
            return None
        del self.held[easyrtcid]
        self.counts.expiries += 1
        return held.peer

    # -- the snapshot ------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "bound": {digest.hex(): cid for digest, cid in self.bound.items()},
            "held": {
                cid: [held.until, held.size, [[p.to, p.event, p.body] for p in held.queue]]
                for cid, held in self.held.items()
            },
        }

    def load(self, data: dict[str, Any], peers: dict[str, Peer]) -> None:
        self.bound = {bytes.fromhex(digest): cid for digest, cid in data.get("bound", {}).items()}
        self.key_of = {cid: digest for digest, cid in self.bound.items()}
        self.held = {}
        for cid, (until, size, queue) in data.get("held", {}).items():
            peer = peers.get(cid)
            if peer is not None:
                pushes = deque(Push(to, event, body) for to, event, body in queue)
                self.held[cid] = Held(peer, until, pushes, size)
