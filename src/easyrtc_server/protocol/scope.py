"""Which sends a state change builds: the pushes to this process's sockets, and the reply
when the event's client is here (``SendScope``).

The state is told at construction (``State``). One process holds every socket and answers
every event: ``AllSockets``, everything is built. A cluster node applies every change of the
cluster to its replica, but sends only to its own sockets and answers only its own clients'
events: its scope (``cluster.replica.NodeSockets``) says so, and the rules build no push for
another node's socket and no reply (a login's token holds a whole room list) for another
node's client. The state itself changes alike everywhere; only what is built differs, so a
change costs each node in proportion to its own clients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol


class SendScope(Protocol):
    """Whose sends the state builds (``State.scope``)."""

    @property
    def here(self) -> Callable[[str], bool] | None:
        """Whether an easyrtcid's socket is this process's (pushes are built for those
        only); None: every socket is."""

    def answering(self) -> bool:
        """Whether the reply to the event being applied is built (its client is here)."""


class AllSockets:
    """One process: every socket is here, every reply its own."""

    __slots__ = ()

    @property
    def here(self) -> Callable[[str], bool] | None:
        return None

    def answering(self) -> bool:
        return True


def local(scope: SendScope, easyrtcids: Iterable[str]) -> list[str]:
    """Of ``easyrtcids``, those whose sockets are here (in their order)."""
    here = scope.here
    return list(easyrtcids) if here is None else [cid for cid in easyrtcids if here(cid)]
