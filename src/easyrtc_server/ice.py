"""ICE configuration handed to clients: in the token and on ``getIceConfig``.

The stock list is the application's ``app_ice_servers``, plus one TURN entry with credentials
made afresh for each call when ``turn_urls`` is set (``turn.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ErrorCode
from .model import Connection
from .outcome import Json, Outcome
from .turn import turn_server
from .validation import MISSING, is_empty_value

if TYPE_CHECKING:
    from .core import Core


def ice_servers(conn: Connection) -> list[dict[str, Any]]:
    """The ICE servers for ``conn``: its application's ``app_ice_servers``, then TURN.

    The TURN credential's user part is the connection's username, else its easyrtcid.
    """
    options = conn.app.options
    if not options.turn_urls or options.turn_secret is None:
        return options.app_ice_servers
    user = conn.username if conn.username is not None else conn.easyrtcid
    turn = turn_server(options.turn_urls, options.turn_secret, user, options.turn_ttl)
    return [*options.app_ice_servers, turn]


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
