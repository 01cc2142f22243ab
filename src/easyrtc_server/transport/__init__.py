"""The seam between a socket.io transport and the EasyRTC server.

A transport (python-socketio, or the project's own Engine.IO/Socket.IO stack) owns sockets and
framing; it knows nothing of EasyRTC. For every socket.io connection it hands the server a `Link`
and calls, in this order and never concurrently for one socket:

- ``peer = await server.open(link)`` when the socket.io connection is established; ``None``
  means the server refuses the socket: refuse the connection (a CONNECT_ERROR) and call nothing
  else for it;
- ``await server.receive(peer, event, data, ack)`` for every event packet, in arrival order,
  where ``ack`` is an async callable taking the one acknowledgement argument, or ``None`` when
  the client asked for no acknowledgement;
- ``await server.close(peer)`` once, when the socket is gone (whoever closed it).

The server answers through ``ack`` and pushes to any socket through its ``Link.send``; an
event pushed to many sockets whose argument differs per socket only in its last key (a room
message, addressed to each recipient) goes through ``Link.send_shared``, so that the transport
can encode the common part once for all of them. A link whose client asked to confirm relayed
messages (``confirms``, ``delivery``) also has ``send_confirmed(event, data, confirmed)``: the
push asks for a Socket.IO acknowledgement, and ``confirmed()`` is called when it comes (the lean
transport; others have neither).

A transport that refuses an event before the server sees it (the lean one: JSON nested deeper
than its limit) but owes the client an acknowledgement acknowledges it with
``server.refused(reason)``: what the refusal means on the wire is the server's business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Ack = Callable[[Any], Awaitable[None]]
"""Sends the socket.io acknowledgement of one event, with a single argument."""


class SharedEvent:
    """One event for many sockets, its argument ``data`` with ``key: value`` added, the value
    each socket's own (`Link.send_shared`), then ``after``'s keys, the same for all. Nobody
    may change ``data`` or ``after`` while the event is being sent."""

    __slots__ = ("after", "data", "encoded", "event", "key")

    def __init__(
        self,
        event: str,
        data: dict[str, Any],
        key: str,
        after: dict[str, Any] | None = None,
    ) -> None:
        self.event = event
        self.data = data
        self.key = key
        self.after = after or None
        self.encoded: Any = None
        """Where a transport keeps its encoding of the common part, made by the first
        ``send_shared`` and used by the rest (None until then)."""

    def data_for(self, value: Any) -> dict[str, Any]:
        """The argument one socket gets."""
        if self.after:
            return {**self.data, self.key: value, **self.after}
        return {**self.data, self.key: value}


class Link(Protocol):
    """One client socket, as a transport exposes it to the server."""

    @property
    def remote_address(self) -> str | None:
        """The peer's address, for logs and authentication hooks."""
        ...

    @property
    def transport(self) -> str:
        """How the socket reaches the client, for metrics and the admin API: ``polling`` or
        ``websocket`` (our own Engine.IO), or the name of the binding that hides it."""
        ...

    @property
    def close_reason(self) -> str:
        """Why the transport closed the socket (e.g. ``slow consumer``), or ``""`` while open
        or when the binding does not say."""
        ...

    async def send(self, event: str, data: Any) -> None:
        """Push one event with one argument, asking for no acknowledgement.

        Must not wait for the network: it queues the frame and returns.
        """
        ...

    async def send_shared(self, event: SharedEvent, value: Any) -> None:
        """``send(event.event, event.data_for(value))``, the same on the wire, with what the
        sockets of ``event`` share encoded once. Must not wait for the network either."""
        ...

    async def close(self) -> None:
        """Close the socket from the server side; the transport then calls ``server.close``."""
        ...
