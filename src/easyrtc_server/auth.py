"""Authentication (``easyrtcAuth``): checking the request, then building the connection.

``parse_auth`` runs the reference's checks in the reference's order and either refuses with its
error code or yields an ``AuthRequest``. ``complete_auth`` then checks what depends on the state
(application, room capacity) before changing anything, so a refused login leaves no trace: no
half-built connection, no ghost in a room list. Every refusal closes the socket after the reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import rooms
from .errors import ErrorCode
from .ice import ice_servers
from .model import Application, Connection, Session, fields_from_obj, shared_fields
from .outcome import Json, Outcome
from .roomdata import join_state
from .validation import MISSING, is_nonempty_object, is_object

if TYPE_CHECKING:
    from .core import Core, Peer


@dataclass(slots=True)
class AuthRequest:
    """A structurally valid ``authenticate`` message."""

    app_name: str
    username: Any  # MISSING when the key was absent
    credential: Any  # MISSING when the key was absent
    easyrtcsid: str | None
    presence: dict[str, Any] | None
    rooms: dict[str, Any]  # room name -> roomParameter (None when absent)
    message: Json


def authenticate(core: Core, peer: Peer, msg: Any) -> Outcome:
    request = parse_auth(core, msg)
    if isinstance(request, ErrorCode):
        return core.reject(peer.easyrtcid, "authenticate", request, close=True)
    return complete_auth(core, peer, request)


def parse_auth(core: Core, msg: Any) -> AuthRequest | ErrorCode:
    """The reference's structural checks, in its order, each with its error code."""
    if not isinstance(msg, dict) or msg.get("msgType") != "authenticate":
        return ErrorCode.LOGIN_BAD_AUTH
    data = msg.get("msgData")
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("apiVersion"), str)
        or ("roomJoin" in data and not is_object(data["roomJoin"]))
    ):
        return ErrorCode.LOGIN_BAD_STRUCTURE
    bad = ErrorCode.MSG_REJECT_BAD_STRUCTURE
    server = core.options
    if not server.api_version_regexp.test(data["apiVersion"]):
        return bad
    app_name = data.get("applicationName", MISSING)
    if app_name is MISSING:
        app_name = server.app_default_name
    elif not (isinstance(app_name, str) and server.app_name_regexp.test(app_name)):
        return bad
    sid = data.get("easyrtcsid", MISSING)
    if sid is not MISSING and not (isinstance(sid, str) and server.easyrtcsid_regexp.test(sid)):
        return bad
    app = core.apps.get(app_name)
    opts = app.options if app is not None else server
    username = data.get("username", MISSING)
    if username is not MISSING and not (
        isinstance(username, str) and opts.username_regexp.test(username)
    ):
        return bad
    credential = data.get("credential", MISSING)
    if credential is not MISSING and not is_nonempty_object(credential):
        return bad
    if rooms.names_too_many_rooms(opts, data.get("roomJoin")):
        return ErrorCode.LOGIN_BAD_ROOM
    room_params = rooms.parse_room_map(opts, data.get("roomJoin", {}), strict_parameter=True)
    if room_params is None:
        return bad
    presence = data.get("setPresence", MISSING)
    if presence is not MISSING and not rooms.check_presence(opts, presence):
        return bad
    if presence is not MISSING and not rooms.presence_fits(opts, presence):
        return ErrorCode.MSG_REJECT_BAD_SIZE
    return AuthRequest(
        app_name=app_name,
        username=username,
        credential=credential,
        easyrtcsid=sid if sid is not MISSING else None,
        presence=presence if isinstance(presence, dict) else None,
        rooms=room_params,
        message=msg,
    )


@dataclass(slots=True)
class Admission:
    """A socket admitted into its application and rooms, before its token is sent."""

    conn: Connection
    out: Outcome
    """Pushes already due (peers of an application the socket moved away from)."""
    fresh: bool
    """The connection is new: no peer has heard of it yet."""


def complete_auth(core: Core, peer: Peer, request: AuthRequest) -> Outcome:
    """Admit the socket, then send the token and tell peers: the stock login."""
    admitted = admit(core, peer, request)
    if isinstance(admitted, Outcome):
        return admitted
    return finish(core, admitted, ice_servers(admitted.conn))


def rooms_to_join(core: Core, request: AuthRequest) -> dict[str, Any]:
    """The rooms a login enters: those requested, else the default room when enabled."""
    if request.rooms:
        return request.rooms
    app = core.apps.get(request.app_name)
    opts = app.options if app is not None else core.options
    return {opts.room_default_name: None} if opts.room_default_enable else {}


def admit(core: Core, peer: Peer, request: AuthRequest) -> Admission | Outcome:
    """Check what depends on the state, then build the connection and its memberships.

    Nothing changes unless every check passes, and nothing awaits in between.
    """
    cid = peer.easyrtcid
    app = core.apps.get(request.app_name)
    if app is None:
        server = core.options
        full = bool(server.max_apps) and len(core.apps) >= server.max_apps
        if not server.app_auto_create_enable or full:
            return core.reject(cid, "authenticate", ErrorCode.LOGIN_APP_AUTH_FAIL, close=True)
        app = core.create_app(request.app_name)
    names = list(rooms_to_join(core, request))
    if not request.rooms and names and names[0] not in app.rooms:
        # the default room was deleted by server code; it is never re-created here
        core.reclaim_app(app)
        return core.reject(cid, "authenticate", ErrorCode.LOGIN_GEN_FAIL, close=True)
    current = len(peer.connection.rooms) if peer.connection and peer.connection.app is app else 0
    refusal = rooms.check_joinable(core, cid, app, names, current)
    if refusal is not None:
        core.reclaim_app(app)
        code = ErrorCode.LOGIN_GEN_FAIL if refusal == "full" else ErrorCode.LOGIN_BAD_ROOM
        return core.reject(cid, "authenticate", code, close=True)

    out = Outcome()
    conn = peer.connection
    if conn is not None and conn.app is not app:  # moving to another application
        core.remove_connection(conn, out)
        conn = None
    fresh = conn is None
    if conn is None:
        fields = fields_from_obj(app.options.connection_default_field_obj)
        conn = Connection(cid, app, fields=fields)
        app.connections[cid] = conn
        peer.connection = conn
    _link_session(app, conn, request.easyrtcsid)
    if request.username is not MISSING:
        conn.username = request.username
    if request.credential is not MISSING:
        conn.credential = request.credential
    if request.presence is not None:
        rooms.apply_presence(conn, request.presence)
    for name in names:
        rooms.join(core, conn, name, None)
    return Admission(conn, out, fresh)


def finish(core: Core, admitted: Admission, servers: list[dict[str, Any]]) -> Outcome:
    """Send the token, then tell every member sharing a room with the newcomer."""
    out = admitted.out
    out.reply(token(core, admitted.conn, servers))
    rooms.tell_peers(core, admitted.conn, out, with_api_field=True)
    return out


def revoke(core: Core, peer: Peer, admitted: Admission) -> Outcome:
    """Undo an admission whose login failed later; the socket is closed after the reply."""
    out = admitted.out
    if peer.connection is admitted.conn:
        # peers never heard of a fresh connection: remove it without telling them
        core.remove_connection(admitted.conn, Outcome() if admitted.fresh else out)
        peer.connection = None
    return out


def token(core: Core, conn: Connection, servers: list[dict[str, Any]]) -> Json:
    """The ``token`` reply: everything the client needs to start."""
    app = conn.app
    application: Json = {"applicationName": app.name}
    app_field = shared_fields(app.fields)
    if app_field is not None:
        application["field"] = app_field
    data: Json = {
        "roomData": {name: join_state(member.room) for name, member in conn.rooms.items()},
        "application": application,
        "easyrtcid": conn.easyrtcid,
        "iceConfig": {"iceServers": servers},
        "serverTime": core.now(),
    }
    conn_field = shared_fields(conn.fields)
    if conn_field is not None:
        data["field"] = conn_field
    if conn.session is not None:
        session: Json = {"easyrtcsid": conn.session.easyrtcsid}
        session_field = shared_fields(conn.session.fields)
        if session_field is not None:
            session["field"] = session_field
        data["sessionData"] = session
    return {"msgType": "token", "msgData": data}


def _link_session(app: Application, conn: Connection, easyrtcsid: str | None) -> None:
    if easyrtcsid is None or (conn.session and conn.session.easyrtcsid == easyrtcsid):
        return
    old = conn.session
    if old is not None:
        old.connections.discard(conn.easyrtcid)
        if not old.connections and not old.fields:
            app.sessions.pop(old.easyrtcsid, None)
    session = app.sessions.get(easyrtcsid)
    if session is None:
        session = app.sessions[easyrtcsid] = Session(easyrtcsid)
    session.connections.add(conn.easyrtcid)
    conn.session = session
