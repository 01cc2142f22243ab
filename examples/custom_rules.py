"""Server rules written as hooks: a room allowlist and an echo bot.

- Only the rooms in ``ALLOWED_ROOMS`` exist; asking for another one is refused
  (``LOGIN_BAD_ROOM`` at login, ``MSG_REJECT_BAD_ROOM`` for a later ``roomJoin``).
- An ``easyrtcMsg`` with no target is for the server: the bot answers it with the same message
  (``easyrtc.sendServerMessage("hello", {...}, onSuccess)`` gets ``("hello", {...})`` back), and
  tells the sender's rooms how many messages it has answered, with the push API.

Run: ``python examples/custom_rules.py`` (http://localhost:8080/).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from easyrtc_server.app import create_app
from easyrtc_server.hooks import Hooks, JoinPhase
from easyrtc_server.options import Options
from easyrtc_server.protocol.errors import EasyRtcError, ErrorCode
from easyrtc_server.protocol.model import Connection, Peer
from easyrtc_server.server import EasyRtcServer

ALLOWED_ROOMS = frozenset(("default", "lobby", "support"))


class CustomRules(Hooks):
    def __init__(self) -> None:
        self.answered = 0

    async def room_join(
        self, peer: Peer, app_name: str, room_name: str, parameter: Any, phase: JoinPhase
    ) -> None:
        if room_name not in ALLOWED_ROOMS:
            login = phase is JoinPhase.LOGIN
            raise EasyRtcError(ErrorCode.LOGIN_BAD_ROOM if login else ErrorCode.MSG_REJECT_BAD_ROOM)
        await super().room_join(peer, app_name, room_name, parameter, phase)

    async def server_message(self, conn: Connection, msg: dict[str, Any]) -> dict[str, Any]:
        self.answered += 1
        for room in conn.rooms:  # self.server: the server these hooks were given to
            await self.server.send_message(
                "botStats", {"answered": self.answered}, app=conn.app.name, room=room
            )
        return {"msgType": msg["msgType"], "msgData": msg.get("msgData")}


def build_app(options: Options | None = None) -> web.Application:
    return create_app(server=EasyRtcServer(options, hooks=CustomRules()))


if __name__ == "__main__":
    web.run_app(build_app(), port=8080)
