"""A cluster node with hooks, for the behaviour tests: ``python -m cluster.hooked_node ARGS``.

The command line is the server's (``easyrtc_server.cli``); only the hooks differ. They log where
they run (``room_join``, ``room_left``, ``disconnect``), refuse rooms named ``forbidden…``, give
each connection a shared field naming the process that admitted it, and answer commands that
reach the push API and the queries
(``server.change``, ``send_message``, ``set_session_field``, ``disconnect``, ``directory``…;
``change_command``: changes of other clients, sessions and applications),
so a client on one node can make the server act on clients of other nodes.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from easyrtc_server import cli
from easyrtc_server.hooks import Hooks, JoinPhase
from easyrtc_server.options import Options
from easyrtc_server.protocol.errors import EasyRtcError, ErrorCode
from easyrtc_server.protocol.model import Connection, Field, Peer
from easyrtc_server.protocol.outcome import Json

log = logging.getLogger("easyrtc_server")


class BehaviourHooks(Hooks):
    async def room_join(
        self, peer: Peer, app_name: str, room_name: str, room_parameter: Any, phase: JoinPhase
    ) -> None:
        log.info("hook room_join of %s to %s ran here", peer.easyrtcid, room_name)
        if room_name.startswith("forbidden"):
            raise EasyRtcError(ErrorCode.MSG_REJECT_BAD_ROOM, "not this room")

    async def room_left(self, conn: Connection, room_name: str) -> None:
        log.info("hook room_left of %s from %s ran here", conn.easyrtcid, room_name)

    async def disconnect(self, conn: Connection) -> None:
        log.info("hook disconnect of %s ran here", conn.easyrtcid)

    async def authenticated(self, conn: Connection) -> None:
        conn.fields["admittedBy"] = Field(os.getpid(), shared=True)

    async def command(self, conn: Connection, msg: Json) -> Json | None:
        server = self.server
        data = msg.get("msgData") or {}
        app = conn.app.name
        match msg["msgType"]:
            case "joinGroup":
                await server.change("add_to_group", conn.easyrtcid, data["group"])
            case "setSessionField":
                assert conn.session is not None
                await server.set_session_field(app, conn.session.easyrtcsid, "note", data["note"])
            case "setRoomField":
                await server.set_room_field(app, data["room"], "topic", data["topic"])
            case "tellRoom":
                count = await server.send_message("news", data["text"], app=app, room=data["room"])
                return {"msgType": "told", "msgData": count}
            case "tellClient":
                await server.send_message("news", data["text"], easyrtcid=data["to"])
            case "kick":
                done = await server.disconnect(data["to"])
                return {"msgType": "kicked", "msgData": done}
            case "occupants":  # the whole cluster's (``server.directory``)
                room = (await server.directory.room(app, data["room"])).value or {}
                found = sorted(o["easyrtcid"] for o in room.get("occupants", ()))
                return {"msgType": "occupants", "msgData": found}
            case "hog":  # a long, blocking piece of work: the event loop starves meanwhile
                time.sleep(float(data["seconds"]))  # noqa: ASYNC251 (the point)
            case "rooms":
                return {"msgType": "rooms", "msgData": server.rooms(app)}
            case "connection":
                other = (await server.directory.connection(data["id"])).value
                user = other["username"] if other is not None else None
                return {"msgType": "connection", "msgData": user}
            case _:
                return await self.change_command(conn, msg["msgType"], data)
        return None

    async def change_command(self, conn: Connection, msg_type: str, data: Json) -> Json | None:
        """Server code's changes of other clients, sessions and applications: ``refused`` with
        the exception's name when the change raised."""
        server = self.server
        app = conn.app.name
        try:
            match msg_type:
                case "setSessionFieldOf":
                    await server.set_session_field(app, data["sid"], "note", data["note"])
                case "groupOf":
                    await server.change("add_to_group", data["id"], data["group"])
                case "ungroupOf":
                    await server.change("remove_from_group", data["id"], data["group"])
                case "fieldOf":
                    await server.change(
                        "set_connection_field", data["id"], data["name"], data["value"]
                    )
                case "tellGroup":
                    count = await server.send_message(
                        "news", data["text"], app=app, group=data["group"]
                    )
                    return {"msgType": "told", "msgData": count}
                case "setAppField":
                    await server.change("set_app_field", app, data["name"], data["value"])
                case "setAppFieldOf":
                    await server.change("set_app_field", data["app"], "motd", data["value"])
                case "createApp":
                    await server.change("create_app", data["name"], **data["options"])
                case "createRoom":
                    await server.change("create_room", app, data["room"])
                case "deleteRoom":
                    await server.change("delete_room", app, data["room"])
                case "myFields":  # read on the client's own node
                    return {
                        "msgType": "fields",
                        "msgData": {k: f.value for k, f in conn.fields.items()},
                    }
                case _:
                    raise EasyRtcError(ErrorCode.MSG_REJECT_BAD_TYPE)
        except (KeyError, ValueError, EasyRtcError) as exc:
            return {"msgType": "refused", "msgData": type(exc).__name__}
        return None


class _HooksFactory:
    @staticmethod
    def from_options(options: Options) -> Hooks:
        return BehaviourHooks()


if __name__ == "__main__":
    cli.JwtAuth = _HooksFactory  # type: ignore[assignment,misc]
    cli.main()
