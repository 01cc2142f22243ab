"""Authentication (``easyrtcAuth``): checking the request, then building the connection.

A login takes three decisions (``decisions``): ``authenticate`` runs the reference's checks in
its order and asks whether the login may proceed (``LoginRequested``); ``check_login`` checks
again what a hook may have written and asks about the rooms (``JoinRequested``); ``admit``
checks what depends on the state (application, room capacity) before changing anything, builds
the connection and asks whether it may stay (``LoginAdmitted``); ``finish`` sends the token, or
``revoke`` undoes it. A refused login leaves no trace: no half-built connection, no ghost in a
room list. Every refusal closes the socket after the reply.
"""

from __future__ import annotations

from typing import Any

from . import relay, rooms
from .decisions import AuthRequest, JoinPhase, JoinRequested, LoginAdmitted, LoginRequested
from .errors import ErrorCode
from .hold import RESUME_EVENT
from .model import (
    Application,
    Connection,
    Membership,
    Peer,
    Session,
    fields_from_obj,
    shared_fields,
)
from .outcome import Joined, Json, LoggedIn, Outcome, loggable, refusal
from .roomdata import client_entry, join_state, update_delta
from .state import State
from .validation import MISSING, is_nonempty_object, is_object

__all__ = [
    "AuthRequest",
    "admit",
    "authenticate",
    "check_login",
    "credential_of",
    "finish",
    "login_read",
    "revoke",
    "token",
]


def authenticate(state: State, peer: Peer, msg: Any) -> LoginRequested | Outcome:
    """``easyrtcAuth``: a structurally valid login is a decision to make; else refused."""
    request = parse_auth(state, msg)
    if isinstance(request, ErrorCode):
        return _refuse(state, peer, request)
    return LoginRequested(peer, request)


def parse_auth(state: State, msg: Any) -> AuthRequest | ErrorCode:
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
    server = state.options
    if not server.api_version_regexp.test(data["apiVersion"]):
        return bad
    app_name = data.get("applicationName", MISSING)
    app_name_given = app_name is not MISSING
    if not app_name_given:
        app_name = server.app_default_name
    elif not (isinstance(app_name, str) and server.app_name_regexp.test(app_name)):
        return bad
    app = state.apps.get(app_name)
    opts = app.options if app is not None else server
    sid = data.get("easyrtcsid", MISSING)
    if sid is not MISSING and not (isinstance(sid, str) and opts.easyrtcsid_regexp.test(sid)):
        return bad
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
        app_name_given=app_name_given,
    )


def login_read(request: AuthRequest) -> Json:
    """A checked login's message with only what ``authenticate`` reads after its checks, never
    the credential (it is the ``authenticate`` hook's alone): read back, it passes the same
    checks and gives the same request, but for ``credential`` and ``message``."""
    data: Json = {"apiVersion": request.message["msgData"]["apiVersion"]}
    if request.app_name_given:
        data["applicationName"] = request.app_name
    if request.easyrtcsid is not None:
        data["easyrtcsid"] = request.easyrtcsid
    if request.username is not MISSING:
        data["username"] = request.username
    if request.rooms:
        data["roomJoin"] = rooms.room_map(request.rooms)
    if request.presence is not None:
        presence = rooms.presence_read(request.presence)
        if isinstance(presence, dict):
            data["setPresence"] = presence
    return {"msgType": "authenticate", "msgData": data}


def credential_of(msg: Json) -> Any:
    """The credential of a checked login message (MISSING when absent)."""
    return msg["msgData"].get("credential", MISSING)


def check_login(state: State, login: LoginRequested) -> JoinRequested | Outcome:
    """The login as the ``authenticate`` hook left it: its values checked again (a hook may
    have written them), then the rooms it is to enter."""
    request = login.request
    server = state.options
    app_name = request.app_name
    if not (isinstance(app_name, str) and server.app_name_regexp.test(app_name)):
        return _refuse_written(state, login, "applicationName", app_name)
    app = state.apps.get(app_name)
    opts = app.options if app is not None else server
    username = request.username
    if username is not MISSING and not (
        isinstance(username, str) and opts.username_regexp.test(username)
    ):
        return _refuse_written(state, login, "username", username)
    requested = request.rooms
    if (
        not isinstance(requested, dict)
        or rooms.names_too_many_rooms(opts, requested)
        or not all(
            isinstance(name, str)
            and opts.room_name_regexp.test(name)
            and (parameter is None or is_object(parameter))
            for name, parameter in requested.items()
        )
    ):
        return _refuse_written(state, login, "rooms", requested)
    names = requested or ({opts.room_default_name: None} if opts.room_default_enable else {})
    existing = app.rooms if app is not None else {}
    creates = frozenset(name for name in names if name not in existing)
    return JoinRequested(JoinPhase.LOGIN, app_name, names, creates, login=login)


def _refuse_written(state: State, login: LoginRequested, what: str, value: Any) -> Outcome:
    return refusal(
        state.now(),
        login.peer.easyrtcid,
        f"login (the authenticate hook set an improper {what} {loggable(value)})",
        ErrorCode.LOGIN_BAD_AUTH,
        close=True,
    )


def _refuse(state: State, peer: Peer, code: ErrorCode) -> Outcome:
    return refusal(state.now(), peer.easyrtcid, "authenticate", code, close=True)


def admit(state: State, join: JoinRequested) -> LoginAdmitted | Outcome:
    """Check what depends on the state, then build the connection and its memberships.

    Nothing changes unless every check passes, and nothing awaits in between. No peer is told
    yet: ``finish`` does, after the token.
    """
    login = join.login
    assert login is not None
    peer, request = login.peer, login.request
    app = state.apps.get(join.app_name)
    if app is None:
        server = state.options
        full = bool(server.max_apps) and len(state.apps) >= server.max_apps
        if not server.app_auto_create_enable or full:
            return _refuse(state, peer, ErrorCode.LOGIN_APP_AUTH_FAIL)
        app = state.create_app(join.app_name)
    resume = _resume_target(state, peer, app)
    if resume is not None:
        return _admit_resume(state, login, join, app, *resume)
    names = list(join.rooms)
    if not request.rooms and names and names[0] not in app.rooms:
        # the default room was deleted by server code; it is never re-created here
        state.reclaim_app(app)
        return _refuse(state, peer, ErrorCode.LOGIN_GEN_FAIL)
    conn = peer.connection
    current = len(conn.rooms) if conn is not None and conn.app is app else 0
    refused = rooms.check_joinable(peer.easyrtcid, app, names, current)
    if refused is not None:
        state.reclaim_app(app)
        code = ErrorCode.LOGIN_GEN_FAIL if refused == "full" else ErrorCode.LOGIN_BAD_ROOM
        return _refuse(state, peer, code)

    out = Outcome()
    conn = peer.connection
    if conn is not None and conn.app is not app:  # moving to another application
        state.remove_connection(conn, out)
        conn = None
    fresh = conn is None
    if conn is None:
        fields = fields_from_obj(app.options.connection_default_field_obj)
        conn = Connection(peer.easyrtcid, app, fields=fields)
        app.connections[peer.easyrtcid] = conn
        peer.connection = conn
    _apply_login(state, app, conn, request)
    for name in names:
        state.join(conn, name, None, early=out)
    return LoginAdmitted(peer, conn, fresh, out)


def finish(state: State, admitted: LoginAdmitted, servers: list[dict[str, Any]]) -> Outcome:
    """Send the token, then tell every member sharing a room with the newcomer."""
    if admitted.resumes is not None:
        return _finish_resume(state, admitted, servers)
    out = admitted.out
    admitted.conn.entering_until = state.now() + relay.ENTRY_GRACE_MS
    state.refresh_entries(admitted.conn)  # the hooks may have changed its presence
    _answer_token(state, admitted.conn, servers, out)
    out.note(LoggedIn(admitted.conn))
    state.tell_peers(admitted.conn, out, with_api_field=True)
    if admitted.peer.resume_key is not None:
        _bind_key(state, admitted.peer, admitted.conn, out)
    return out


# -- resuming a held connection (``hold``) ----------------------------------------------------


def _resume_target(
    state: State, peer: Peer, app: Application
) -> tuple[str, Connection | None] | None:
    """The easyrtcid ``peer``'s resume key takes back in ``app`` (with its connection, held
    or still live; None when a token restores it after a restart), or None: a new login."""
    if peer.resume_key is None or peer.connection is not None:
        return None
    holds = state.holds
    easyrtcid = holds.resumes(peer)
    if easyrtcid is not None:
        other = state.peers.get(easyrtcid)
        conn = other.connection if other is not None else None
        if other is peer or conn is None or conn.app is not app:
            return None  # another application's key: an ordinary login
        return easyrtcid, conn
    restored = holds.restorable(peer, app.name, state.peers.__contains__)
    return (restored, None) if restored is not None else None


def _admit_resume(
    state: State,
    login: LoginRequested,
    join: JoinRequested,
    app: Application,
    easyrtcid: str,
    conn: Connection | None,
) -> LoginAdmitted | Outcome:
    """Check that the resumed connection can enter the rooms asked for; change nothing."""
    peer, request = login.peer, login.request
    names = list(request.rooms) if conn is not None else list(join.rooms)
    current = len(conn.rooms) if conn is not None else 0
    refused = rooms.check_joinable(easyrtcid, app, names, current)
    if refused is not None:
        state.reclaim_app(app)
        code = ErrorCode.LOGIN_GEN_FAIL if refused == "full" else ErrorCode.LOGIN_BAD_ROOM
        return _refuse(state, peer, code)
    fresh = conn is None
    if conn is None:  # the previous process's: made anew under the old easyrtcid
        fields = fields_from_obj(app.options.connection_default_field_obj)
        conn = Connection(easyrtcid, app, fields=fields)
    return LoginAdmitted(peer, conn, fresh, resumes=easyrtcid, request=request, rooms=names)


def _finish_resume(state: State, admitted: LoginAdmitted, servers: list[dict[str, Any]]) -> Outcome:
    """The socket takes the easyrtcid over; its peers hear only of what changed (a room it
    entered, a new presence or username); the messages queued meanwhile follow the token."""
    peer, conn, request = admitted.peer, admitted.conn, admitted.request
    easyrtcid = conn.easyrtcid
    assert request is not None and admitted.resumes == easyrtcid
    out = admitted.out
    app = conn.app
    previous = state.peers.get(easyrtcid)
    if state.peers.get(peer.easyrtcid) is peer:
        del state.peers[peer.easyrtcid]
    peer.easyrtcid = easyrtcid
    state.peers[easyrtcid] = peer
    if previous is not None and previous is not peer:
        previous.connection = None  # its socket (dropped, or about to be closed) is done
        previous.superseded = True
    held = state.holds.release(easyrtcid)
    peer.connection = conn
    if admitted.fresh:
        app.connections[easyrtcid] = conn
        state.holds.restored(peer)
    before = {name: m.room.entries.get(easyrtcid) for name, m in conn.rooms.items()}
    _apply_login(state, app, conn, request)
    for name in admitted.rooms:
        state.join(conn, name, None, early=out)
    _answer_token(state, conn, servers, out)
    for name, member in conn.rooms.items():
        if member.room.entries.get(easyrtcid) == before.get(name):
            continue  # held, unchanged: nobody needs to hear of it
        if state.coalescing:
            state.updates.mark_changed(member.room, easyrtcid)
        else:
            entry = client_entry(member, with_api_field=True)
            state.tell_room(member.room, easyrtcid, update_delta(name, entry), out)
    if held is not None:
        out.sends.extend(held.queue)
    if peer.resume_key is not None:
        _bind_key(state, peer, conn, out)
    return out


def _bind_key(state: State, peer: Peer, conn: Connection, out: Outcome) -> None:
    """Bind the socket's key to its connection and give it a token for a later process."""
    digest = peer.resume_key
    assert digest is not None
    holds = state.holds
    holds.bind(conn.easyrtcid, digest)
    body = {
        "resumeToken": holds.token(conn.app.name, conn.easyrtcid, digest),
        "resumeGrace": holds.grace_ms / 1000,
    }
    out.push(conn.easyrtcid, RESUME_EVENT, body)


def revoke(state: State, admitted: LoginAdmitted) -> Outcome:
    """Undo an admission whose login failed later; the socket is closed after the reply."""
    out = admitted.out
    if admitted.resumes is not None:
        return out  # a resume changes nothing before ``finish``
    peer = admitted.peer
    if peer.connection is admitted.conn:
        # peers never heard of a fresh connection: remove it without telling them
        fresh = admitted.fresh
        state.remove_connection(admitted.conn, Outcome() if fresh else out, tell=not fresh)
        peer.connection = None
        if fresh and out.happened:  # its rooms were never entered, as far as anyone knows
            out.happened = [
                e for e in out.happened if not (isinstance(e, Joined) and e.conn is admitted.conn)
            ]
    return out


def _answer_token(
    state: State, conn: Connection, servers: list[dict[str, Any]], out: Outcome
) -> None:
    """The token as the reply, where the client is (``State.scope``); elsewhere (another
    node's client) only its lists are marked current, as the token does."""
    if state.scope.answering():
        out.reply(token(state, conn, servers))
        return
    for member in conn.rooms.values():
        state.updates.mark_current(member)


def token(state: State, conn: Connection, servers: list[dict[str, Any]]) -> Json:
    """The ``token`` reply: everything the client needs to start."""
    app = conn.app
    application: Json = {"applicationName": app.name}
    app_field = shared_fields(app.fields)
    if app_field is not None:
        application["field"] = app_field
    data: Json = {
        "roomData": {name: _current_state(state, member) for name, member in conn.rooms.items()},
        "application": application,
        "easyrtcid": conn.easyrtcid,
        "iceConfig": {"iceServers": servers},
        "serverTime": state.now(),
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


def _current_state(state: State, member: Membership) -> Json:
    """A room's whole state for ``member``, whose list is then current."""
    state.updates.mark_current(member)
    return join_state(member.room, state.client_list(member.room))


def _apply_login(state: State, app: Application, conn: Connection, request: AuthRequest) -> None:
    """What a login sets on its connection: the session, username, credential and presence."""
    _link_session(app, conn, request.easyrtcsid)
    if request.username is not MISSING:
        conn.username = request.username
    if request.credential is not MISSING:
        conn.credential = request.credential
    if request.presence is not None:
        rooms.apply_presence(conn, request.presence)
    state.refresh_entries(conn)


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
