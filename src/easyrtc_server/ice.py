"""ICE configuration handed to clients: in the token and on ``getIceConfig``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ErrorCode
from .model import Connection
from .outcome import Json, Outcome
from .validation import MISSING, is_empty_value

if TYPE_CHECKING:
    from .core import Core


def ice_servers(conn: Connection) -> list[dict[str, Any]]:
    """The ICE servers for ``conn``: its application's ``app_ice_servers``."""
    return conn.app.options.app_ice_servers


def ice_config_reply(servers: list[dict[str, Any]]) -> Json:
    return {"msgType": "iceConfig", "msgData": {"iceConfig": {"iceServers": servers}}}


def get_ice_config(core: Core, conn: Connection, msg: Json) -> Outcome:
    """``getIceConfig``: msgData may be absent or empty (the real client sends ``{}``)."""
    refused = check_ice_request(core, conn, msg)
    return refused or Outcome().reply(ice_config_reply(ice_servers(conn)))


def check_ice_request(core: Core, conn: Connection, msg: Json) -> Outcome | None:
    if not is_empty_value(msg.get("msgData", MISSING)):
        return core.reject(conn.easyrtcid, "getIceConfig", ErrorCode.MSG_REJECT_BAD_DATA)
    return None
