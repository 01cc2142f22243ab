"""Drive the protocol core directly, as a transport would, with readable results.

Decisions are answered as the stock hooks answer them (``decide``), without awaiting anything.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from easyrtc_server.options import Options
from easyrtc_server.protocol.core import Core
from easyrtc_server.protocol.decisions import (
    Answer,
    Decision,
    IceAnswer,
    IceRequested,
    JoinAnswer,
    JoinRequested,
    LoginAdmitted,
    LoginAnswer,
    LoginRequested,
    Refused,
    ServerMessage,
    TokenAnswer,
    UnknownCommand,
)
from easyrtc_server.protocol.errors import ErrorCode
from easyrtc_server.protocol.ice import ice_servers
from easyrtc_server.protocol.model import Peer
from easyrtc_server.protocol.outcome import Fanout, Outcome, Push, Reply


def stock_answer(core: Core, decision: Decision) -> Answer:
    """The answer the stock ``Hooks`` give, as a record."""
    match decision:
        case LoginRequested(request=r):
            return LoginAnswer(r.app_name, r.username, r.rooms)
        case JoinRequested():
            return JoinAnswer()
        case LoginAdmitted(conn=conn):
            servers = ice_servers(conn, core.options)
            return TokenAnswer(servers, conn.username, conn.presence, conn.fields)
        case IceRequested(conn=conn):
            return IceAnswer(ice_servers(conn, core.options))
        case ServerMessage() | UnknownCommand():
            return Refused(ErrorCode.MSG_REJECT_BAD_TYPE)


def decide(core: Core, step: Outcome | Decision) -> Outcome:
    """Answer every decision the way the stock ``Hooks`` do."""
    while not isinstance(step, Outcome):
        step = core.answer(step, stock_answer(core, step))
    return step


NOW = 1_700_000_000_000


@dataclass
class Result:
    """One event's outcome, split into the reply and the pushes per recipient."""

    outcome: Outcome

    @property
    def reply(self) -> Any:
        replies = [send.body for send in self.outcome.sends if isinstance(send, Reply)]
        assert len(replies) <= 1, replies
        return replies[0] if replies else None

    @property
    def code(self) -> str | None:
        reply = self.reply
        if reply and reply.get("msgType") == "error":
            return str(reply["msgData"]["errorCode"])
        return None

    @property
    def closes(self) -> bool:
        return self.outcome.close

    def pushes(self, to: Peer | str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``(event, body)`` pushed to one recipient, or ``(recipient, body)`` to all (a
        ``Fanout`` as the pushes it makes, one per recipient)."""
        pushes: list[Push] = []
        for send in self.outcome.sends:
            if isinstance(send, Push):
                pushes.append(send)
            elif isinstance(send, Fanout):
                pushes.extend(send.pushes())
        if to is None:
            return [(push.to, push.body) for push in pushes]
        target = to.easyrtcid if isinstance(to, Peer) else to
        return [(push.event, push.body) for push in pushes if push.to == target]


PER_CHANGE = Options(room_update_tick=0)
"""Each member-list change pushed in the outcome that makes it, as the reference does: what
these tests read. Coalesced updates (the default tick) are ``test_room_updates``' subject."""


class Harness:
    """A core with a clock that moves only when told (``now``, from ``NOW``) and readable
    easyrtcids (``id-1``, ``id-2`` …); ``PER_CHANGE`` options unless given others."""

    def __init__(self, options: Options | None = None, **changes: Any) -> None:
        counter = itertools.count(1)
        opts = (options or PER_CHANGE).replace(**changes) if changes else options or PER_CHANGE
        self.now = NOW
        self.core = Core(opts, clock=lambda: self.now, new_id=lambda: f"id-{next(counter)}")

    def open(self) -> Peer:
        return self.core.open()

    def send(self, peer: Peer, event: str, payload: Any, *, ack: bool = True) -> Result:
        return Result(decide(self.core, self.core.receive(peer, event, payload, ack)))

    def auth(self, peer: Peer, *, raw: Any = None, **msg_data: Any) -> Result:
        if raw is not None:
            return self.send(peer, "easyrtcAuth", raw)
        data = {"apiVersion": "1.1.1-beta", **msg_data}
        return self.send(peer, "easyrtcAuth", {"msgType": "authenticate", "msgData": data})

    def login(self, **msg_data: Any) -> Peer:
        peer = self.open()
        result = self.auth(peer, **msg_data)
        assert result.reply["msgType"] == "token", result.reply
        return peer

    def cmd(self, peer: Peer, msg_type: str, **fields: Any) -> Result:
        return self.send(peer, "easyrtcCmd", {"msgType": msg_type, **fields})

    def msg(self, peer: Peer, msg_type: str, **fields: Any) -> Result:
        return self.send(peer, "easyrtcMsg", {"msgType": msg_type, **fields})

    def join(self, peer: Peer, *rooms: str) -> Result:
        return self.cmd(peer, "roomJoin", msgData={"roomJoin": {r: {"roomName": r} for r in rooms}})

    def leave(self, peer: Peer, *rooms: str) -> Result:
        return self.cmd(
            peer, "roomLeave", msgData={"roomLeave": {r: {"roomName": r} for r in rooms}}
        )

    def close(self, peer: Peer) -> Result:
        return Result(self.core.close(peer))

    def members(self, room: str, app: str = "default") -> list[str]:
        return list(self.core.apps[app].rooms[room].members)
