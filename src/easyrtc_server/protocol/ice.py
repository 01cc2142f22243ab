"""ICE configuration handed to clients: in the token and on ``getIceConfig``.

The stock list is the application's ``app_ice_servers``, plus one TURN entry with credentials
made afresh for each call when the server's ``turn_urls`` is set (``turn.py``). Which servers a
connection gets is the server's decision (the ``ice_servers`` hook), so ``getIceConfig`` asks
for it (``IceRequested``).
"""

from __future__ import annotations

from typing import Any

from ..options import Options
from .decisions import IceRequested
from .errors import ErrorCode
from .model import Connection
from .outcome import Json, Outcome, refusal
from .state import State
from .turn import turn_server
from .validation import MISSING, is_empty_value


def ice_servers(conn: Connection, options: Options) -> list[dict[str, Any]]:
    """The ICE servers for ``conn``: its application's ``app_ice_servers``, then TURN from the
    server's ``options``. A new list of new entries, so the caller may change it.

    The TURN credential's user part is the connection's username, else its easyrtcid.
    """
    servers = [dict(server) for server in conn.app.options.app_ice_servers]
    if options.turn_urls and options.turn_secret is not None:
        user = conn.username if conn.username is not None else conn.easyrtcid
        servers.append(turn_server(options.turn_urls, options.turn_secret, user, options.turn_ttl))
    return servers


def ice_config_reply(servers: list[dict[str, Any]]) -> Json:
    return {"msgType": "iceConfig", "msgData": {"iceConfig": {"iceServers": servers}}}


def get_ice_config(state: State, conn: Connection, msg: Json) -> IceRequested | Outcome:
    """``getIceConfig``: msgData may be absent or empty (the real client sends ``{}``)."""
    if not is_empty_value(msg.get("msgData", MISSING)):
        return refusal(state.now(), conn.easyrtcid, "getIceConfig", ErrorCode.MSG_REJECT_BAD_DATA)
    return IceRequested(conn)
