"""Runs the protocol core behind a transport: feeds it socket events, carries out its outcomes.

This is the only place that turns the core's ``Outcome`` into I/O: acknowledgements through the
transport's ack callable, pushes through the recipients' ``Link``, and the closing of sockets
that failed to authenticate. Transports call ``open``, ``receive`` and ``close`` (see
``transport/__init__.py``); they serialise the calls of one socket, which keeps a client's
messages in arrival order.
"""

from __future__ import annotations

import logging
from typing import Any

from .core import Core, Peer
from .errors import ErrorCode, error_message
from .options import Options
from .outcome import Outcome
from .transport import Ack, Link

log = logging.getLogger("easyrtc_server")


class EasyRtcServer:
    """One EasyRTC server: the core plus the links of its open sockets."""

    def __init__(self, options: Options | None = None, *, core: Core | None = None) -> None:
        self.core = core or Core(options)
        self.options = self.core.options
        self.links: dict[str, Link] = {}

    def open(self, link: Link) -> Peer:
        peer = self.core.open()
        self.links[peer.easyrtcid] = link
        return peer

    async def receive(self, peer: Peer, event: str, data: Any, ack: Ack | None) -> None:
        try:
            out = self.core.receive(peer, event, data, ack is not None)
        except Exception:  # a bug in the core must cost one reply, not the connection
            log.exception("failed to handle %s from %s", event, peer.easyrtcid)
            login = event == "easyrtcAuth"
            code = ErrorCode.LOGIN_GEN_FAIL if login else ErrorCode.MSG_REJECT_GEN_FAIL
            out = Outcome(close=login).reply(error_message(code, self.core.now()))
        await self.deliver(peer, out, ack)

    async def close(self, peer: Peer) -> None:
        if self.links.get(peer.easyrtcid) is not None:
            del self.links[peer.easyrtcid]
        await self.deliver(peer, self.core.close(peer), None)

    async def deliver(self, peer: Peer, out: Outcome, ack: Ack | None) -> None:
        """Carry out ``out`` for an event of ``peer``: sends in order, then maybe close."""
        links = self.links
        undeliverable = False
        for to, event, body in out.sends:
            if to is None:
                if ack is not None and peer.easyrtcid in links:
                    if undeliverable:
                        body = error_message(ErrorCode.MSG_REJECT_BAD_DATA, self.core.now())
                    await ack(body)
                continue
            link = links.get(to)
            if link is None:
                continue
            try:
                await link.send(event, body)
            except (TypeError, ValueError, RecursionError) as exc:  # not encodable (too deep)
                log.warning("could not send %s to %s: %s", body.get("msgType"), to, exc)
                undeliverable = True
        if out.close:
            link = links.get(peer.easyrtcid)
            if link is not None:
                await link.close()
