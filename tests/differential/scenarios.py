"""Scripted EasyRTC sessions for the differential tests (server-behavior.md §2 to §5).

Each scenario is ``async def scenario_x(url, trace)``: it drives 1 to 3 `TraceClient`s against the
server at ``url`` (a cluster's nodes, the clients spread over them: `node_url`) and lets the trace
record what they observe; it asserts nothing. The test module
runs every scenario against two servers and compares the normalised traces.

Rules for scenarios
- Use the trace's own application (the default of `TraceClient.auth`) so that scenario runs can
  share one server; a scenario that needs the default application (no ``applicationName``) is
  ``fresh`` and gets a server of its own.
- Every action waits for its ack and runs the barrier, so pushes land in a fixed place.
- Never send what crashes the reference (§9.1): no null/absent payloads, no ``roomJoin`` command
  with an empty map or array, no ``constructor``/``__proto__``/``toString``/``hasOwnProperty``
  names, no absurdly deep nesting.
- Scenario names say what a user sees; they are the pytest ids.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from support.trace import OMIT, Trace, TraceClient, drop_omitted, payload

ScenarioFn = Callable[[str, Trace], Awaitable[None]]

# Server option sets (camelCase EasyRTC option names, as both servers take them).
DEFAULT: Mapping[str, Any] = MappingProxyType({})
MAX2: Mapping[str, Any] = MappingProxyType({"roomMaxConnection": 2})
NO_APP_CREATE: Mapping[str, Any] = MappingProxyType({"appAutoCreateEnable": False})
NO_ROOM_CREATE: Mapping[str, Any] = MappingProxyType({"roomAutoCreateEnable": False})
STRICT: Mapping[str, Any] = MappingProxyType({"strictErrors": True})
"""Ours answers with errors where the reference is silent; the reference ignores the name."""


@dataclass(frozen=True)
class Scenario:
    name: str
    run: ScenarioFn
    options: Mapping[str, Any] = field(default_factory=lambda: DEFAULT)
    fresh: bool = False  # needs a server of its own (touches the shared default application)
    doc: str = ""


SCENARIOS: dict[str, Scenario] = {}


def _register(
    name: str, fn: ScenarioFn, options: Mapping[str, Any], fresh: bool, doc: str | None
) -> None:
    if name in SCENARIOS:
        raise ValueError(f"duplicate scenario {name!r}")
    SCENARIOS[name] = Scenario(name, fn, options, fresh, (doc or "").strip())


def scenario(
    *, options: Mapping[str, Any] = DEFAULT, fresh: bool = False
) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register ``scenario_NAME`` under ``NAME``."""

    def register(fn: ScenarioFn) -> ScenarioFn:
        _register(fn.__name__.removeprefix("scenario_"), fn, options, fresh, fn.__doc__)
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# Builders

UNKNOWN_ID = "AAAAAAAAAAAAAAAA"  # well-formed, never allocated in practice
ROOM_LIST = payload("getRoomList")
ICE = payload("getIceConfig", {})
OFFER_SDP = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
CANDIDATE = {
    "type": "candidate",
    "label": 0,
    "id": "0",
    "candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host",
}


def rooms(*names: str, **params: Any) -> dict[str, dict[str, Any]]:
    """``{NAME: {"roomName": NAME}}``; ``params[NAME]`` becomes that room's roomParameter."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        entry: dict[str, Any] = {"roomName": name}
        if name in params:
            entry["roomParameter"] = params[name]
        out[name] = entry
    return out


def join(*names: str, **params: Any) -> dict[str, Any]:
    return payload("roomJoin", {"roomJoin": rooms(*names, **params)})


def leave(*names: str) -> dict[str, Any]:
    return payload("roomLeave", {"roomLeave": rooms(*names)})


def presence(**fields: Any) -> dict[str, Any]:
    return payload("setPresence", {"setPresence": fields})


def api_field(room: Any = OMIT, fields: Any = OMIT) -> dict[str, Any]:
    return payload(
        "setRoomApiField", {"setRoomApiField": drop_omitted({"roomName": room, "field": fields})}
    )


def api_fields(**values: Any) -> dict[str, dict[str, Any]]:
    return {k: {"fieldName": k, "fieldValue": v} for k, v in values.items()}


def relay(msg_type: str, target: Any = OMIT, msg_data: Any = OMIT, **extra: Any) -> dict[str, Any]:
    return payload(msg_type, msg_data, targetEasyrtcid=target, **extra)


def app_msg(msg_type: Any = "chat", msg_data: Any = OMIT, **targets: Any) -> dict[str, Any]:
    return payload(msg_type, msg_data, **targets)


def node_url(url: str, trace: Trace, client: TraceClient) -> str:
    """The URL ``client`` connects to. A cluster's ``url`` is its nodes' URLs separated by spaces:
    a scenario's clients are spread over them round-robin, in the order they were created."""
    nodes = url.split()
    return nodes[trace.clients.index(client) % len(nodes)]


async def connected(
    url: str, trace: Trace, *names: str, transport: str = "websocket"
) -> list[TraceClient]:
    clients = [trace.client(name, transport=transport) for name in names]
    for c in clients:
        await c.connect(node_url(url, trace, c))
    return clients


async def online(url: str, trace: Trace, *names: str, **auth_fields: Any) -> list[TraceClient]:
    """Connect and authenticate clients one after the other (same auth fields for all)."""
    clients = await connected(url, trace, *names)
    for c in clients:
        await c.auth(**auth_fields)
    return clients


async def each_cmd(client: TraceClient, *payloads: Any) -> None:
    for p in payloads:
        await client.cmd(p)


async def each_msg(client: TraceClient, *payloads: Any) -> None:
    for p in payloads:
        await client.msg(p)


# ---------------------------------------------------------------------------------------------
# §2 Authentication: successes


@scenario(fresh=True)
async def scenario_auth_default_app_and_room(url: str, trace: Trace) -> None:
    """No applicationName: the default application and its default room; peers see the newcomer."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(applicationName=OMIT)
    await bob.auth(applicationName=OMIT)
    await alice.cmd(ROOM_LIST)


@scenario(options=NO_APP_CREATE, fresh=True)
async def scenario_auth_default_app_without_app_autocreate(url: str, trace: Trace) -> None:
    """appAutoCreateEnable false still lets clients into the default application."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(applicationName=OMIT)
    await bob.auth(applicationName="default")
    await bob.cmd(ROOM_LIST)


@scenario()
async def scenario_auth_custom_app(url: str, trace: Trace) -> None:
    """A new application is created with its default room, which getRoomList lists."""
    (alice,) = await online(url, trace, "alice")
    await alice.cmd(ROOM_LIST)


@scenario()
async def scenario_auth_username(url: str, trace: Trace) -> None:
    """Usernames (unicode, 64 characters) appear in clientLists and deltas."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(username="Älice ☃ Smith")
    await bob.auth(username="b" * 64)


@scenario()
async def scenario_auth_presence(url: str, trace: Trace) -> None:
    """setPresence in auth: show, status and type are kept, other keys ignored."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(setPresence={"show": "away", "status": "back soon", "type": "x", "other": 1})
    await bob.auth(setPresence={"status": ""})


@scenario()
async def scenario_auth_presence_show_only(url: str, trace: Trace) -> None:
    """setPresence with only show keeps status null."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(setPresence={"show": "dnd"})
    await bob.auth(setPresence={"show": "xa", "status": "s" * 255})


@scenario()
async def scenario_auth_room_join(url: str, trace: Trace) -> None:
    """roomJoin in auth replaces the default room; roomParameter is accepted."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("r1", "r2", r2={"x": 1}))
    await bob.auth(roomJoin=rooms("r2"))
    await carol.auth()
    await carol.cmd(ROOM_LIST)


@scenario()
async def scenario_auth_room_join_empty_map(url: str, trace: Trace) -> None:
    """An empty roomJoin map in auth means the default room."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(roomJoin={})
    await bob.auth()


@scenario()
async def scenario_auth_room_join_numeric_and_array_form(url: str, trace: Trace) -> None:
    """Numeric room names; a roomJoin given as an array (keys "0", "1") is accepted."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(roomJoin=rooms("123", "abc"))
    await bob.auth(roomJoin=[{"roomName": "0"}, {"roomName": "1"}])
    await bob.cmd(ROOM_LIST)


@scenario()
async def scenario_auth_shared_rooms_deltas(url: str, trace: Trace) -> None:
    """End-of-auth deltas: each peer hears only about the rooms it shares with the newcomer."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("r1", "r2"))
    await bob.auth(roomJoin=rooms("r1"))
    await carol.auth(roomJoin=rooms("r1", "r2", "r3"))


@scenario()
async def scenario_auth_easyrtcsid(url: str, trace: Trace) -> None:
    """An easyrtcsid links a session: sessionData in the token, shared by two connections."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(easyrtcsid="sess%20one.A-b_c")
    await bob.auth(easyrtcsid="sess%20one.A-b_c")
    await carol.auth(easyrtcsid="s" * 100)


@scenario()
async def scenario_auth_credential_accepted(url: str, trace: Trace) -> None:
    """A non-empty credential object is accepted and shown to nobody."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(credential={"token": "secret"})
    await bob.auth(credential=["x"])


@scenario()
async def scenario_auth_set_user_cfg_ignored(url: str, trace: Trace) -> None:
    """setUserCfg in auth is not validated and never shown."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(
        setUserCfg={
            "userSettings": {
                "sharingAudio": True,
                "sharingVideo": True,
                "sharingData": False,
                "nativeVideoWidth": 640,
                "nativeVideoHeight": 480,
                "windowWidth": 1024,
                "windowHeight": 768,
                "screenWidth": 1920,
                "screenHeight": 1080,
                "cookieEnabled": True,
                "language": "en",
            },
            "p2pList": {},
        }
    )
    await bob.auth(setUserCfg=5)


@scenario()
async def scenario_auth_api_version_forms(url: str, trace: Trace) -> None:
    """apiVersion is only checked for syntax (``+`` allowed, up to 32 characters)."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(apiVersion="1.1.1-beta+build.5")
    await bob.auth(apiVersion="X" * 32)


@scenario()
async def scenario_auth_full_real_client_shape(url: str, trace: Trace) -> None:
    """The real 2.1.8 client's auth message with every optional key."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(
        setUserCfg={
            "userSettings": {"sharingAudio": False, "cookieEnabled": True},
            "p2pList": {"AAAAAAAAAAAAAAAB": {"connectTime": 1, "isInitiator": True}},
        },
        setPresence={"show": "chat", "status": "hello"},
        username="alice",
        roomJoin=rooms("lobby", lobby={"topic": "x"}),
        easyrtcsid="abc123",
        credential={"password": "pw"},
    )
    await bob.auth(username="bob", roomJoin=rooms("lobby"))


@scenario()
async def scenario_auth_polling_transport(url: str, trace: Trace) -> None:
    """A long-polling client and a websocket client signal each other."""
    (alice,) = await connected(url, trace, "alice", transport="polling")
    (bob,) = await connected(url, trace, "bob")
    await alice.auth(username="poller")
    await bob.auth()
    await alice.cmd(relay("offer", bob.id, OFFER_SDP))
    await bob.cmd(relay("answer", alice.id, {"type": "answer", "sdp": "x"}))
    await bob.msg(app_msg("chat", {"text": "hi"}, targetRoom="default"))


# ---------------------------------------------------------------------------------------------
# §2.2 Authentication: every reject row (each reply is followed by a server-side close)


def _auth_reject(
    name: str, doc: str, *, raw: Any = OMIT, options: Mapping[str, Any] = DEFAULT, **fields: Any
) -> None:
    async def run(url: str, trace: Trace) -> None:
        (alice,) = await connected(url, trace, "alice")
        if raw is OMIT:
            await alice.auth(**fields)
        else:
            await alice.auth(raw=raw)

    _register(f"auth_reject_{name}", run, options, False, doc)


@scenario()
async def scenario_auth_reject_without_ack(url: str, trace: Trace) -> None:
    """Check 0: an auth emitted without ack callback gets no reply and the socket is closed."""
    (alice,) = await connected(url, trace, "alice")
    await alice.auth(ack=False)


_auth_reject("payload_string", "Check 1: a string payload.", raw="authenticate")
_auth_reject("payload_number", "Check 1: a number payload.", raw=42)
_auth_reject("payload_boolean", "Check 1: a boolean payload.", raw=True)
_auth_reject("payload_array", "Check 1: an array payload.", raw=[])
_auth_reject("msgtype_missing", "Check 1: no msgType.", raw={"msgData": {"apiVersion": "1.0"}})
_auth_reject(
    "msgtype_wrong",
    "Check 1: another msgType.",
    raw={"msgType": "authenticated", "msgData": {"apiVersion": "1.0"}},
)
_auth_reject(
    "msgtype_case",
    "Check 1: msgType is case-sensitive.",
    raw={"msgType": "Authenticate", "msgData": {"apiVersion": "1.0"}},
)
_auth_reject(
    "msgtype_number",
    "Check 1: numeric msgType.",
    raw={"msgType": 1, "msgData": {"apiVersion": "1.0"}},
)
_auth_reject("msgtype_before_msgdata", "Checks 1 before 2.", raw={"msgType": "x"})
_auth_reject("msgdata_missing", "Check 2: no msgData.", raw={"msgType": "authenticate"})
_auth_reject(
    "msgdata_string",
    "Check 2: msgData a string.",
    raw={"msgType": "authenticate", "msgData": "1.1.1-beta"},
)
_auth_reject(
    "msgdata_array",
    "Check 2: msgData an array (no apiVersion).",
    raw={"msgType": "authenticate", "msgData": []},
)
_auth_reject("api_version_missing", "Check 2: no apiVersion.", apiVersion=OMIT)
_auth_reject("api_version_number", "Check 2: numeric apiVersion.", apiVersion=11)
_auth_reject("room_join_null", "Check 2: roomJoin null.", roomJoin=None)
_auth_reject("room_join_string", "Check 2: roomJoin a string.", roomJoin="lobby")
_auth_reject(
    "structure_before_api_version", "Check 2 before 3.", apiVersion="bad version", roomJoin=None
)
_auth_reject("api_version_bad_chars", "Check 3: a space in apiVersion.", apiVersion="1.1 beta")
_auth_reject("api_version_empty", "Check 3: empty apiVersion.", apiVersion="")
_auth_reject("api_version_too_long", "Check 3: 33-character apiVersion.", apiVersion="1" * 33)
_auth_reject("app_name_bad_chars", "Check 4: a space in applicationName.", applicationName="my app")
_auth_reject(
    "app_name_too_long", "Check 4: 33-character applicationName.", applicationName="a" * 33
)
_auth_reject("app_name_empty", "Check 4: empty applicationName.", applicationName="")
_auth_reject("app_name_number", "Check 4: numeric applicationName.", applicationName=7)
_auth_reject("app_name_null", "Check 4: applicationName null.", applicationName=None)
_auth_reject("easyrtcsid_bad_chars", "Check 5: a space in easyrtcsid.", easyrtcsid="a b")
_auth_reject("easyrtcsid_too_long", "Check 5: 101-character easyrtcsid.", easyrtcsid="s" * 101)
_auth_reject("easyrtcsid_number", "Check 5: numeric easyrtcsid.", easyrtcsid=5)
_auth_reject("easyrtcsid_null", "Check 5: easyrtcsid null.", easyrtcsid=None)
_auth_reject("username_too_long", "Check 6: 65-character username.", username="u" * 65)
_auth_reject("username_empty", "Check 6: empty username.", username="")
_auth_reject("username_newline", "Check 6: a line break in username.", username="a\nb")
_auth_reject("username_null", "Check 6: username null.", username=None)
_auth_reject("username_number", "Check 6: numeric username.", username=5)
_auth_reject("credential_string", "Check 7: credential a string.", credential="secret")
_auth_reject("credential_empty_object", "Check 7: credential {}.", credential={})
_auth_reject("credential_empty_array", "Check 7: credential [].", credential=[])
_auth_reject("credential_null", "Check 7: credential null.", credential=None)
_auth_reject("credential_number", "Check 7: numeric credential.", credential=5)
_auth_reject(
    "room_join_bad_name",
    "Check 8: a space in a room name.",
    roomJoin={"bad room": {"roomName": "bad room"}},
)
_auth_reject(
    "room_join_name_too_long", "Check 8: 33-character room name.", roomJoin=rooms("r" * 33)
)
_auth_reject(
    "room_join_name_mismatch",
    "Check 8: roomName differs from its key.",
    roomJoin={"a": {"roomName": "b"}},
)
_auth_reject("room_join_roomname_missing", "Check 8: no roomName.", roomJoin={"a": {}})
_auth_reject("room_join_value_not_object", "Check 8: entry is a string.", roomJoin={"a": "a"})
_auth_reject("room_join_value_null", "Check 8: entry is null.", roomJoin={"a": None})
_auth_reject(
    "room_join_parameter_string",
    "Check 8: roomParameter a string.",
    roomJoin={"a": {"roomName": "a", "roomParameter": "x"}},
)
_auth_reject(
    "room_join_one_bad_of_two",
    "Check 8: one good and one bad room.",
    roomJoin={"good": {"roomName": "good"}, "b!": {"roomName": "b!"}},
)
_auth_reject("presence_empty", "Check 9: setPresence {}.", setPresence={})
_auth_reject("presence_string", "Check 9: setPresence a string.", setPresence="away")
_auth_reject("presence_null", "Check 9: setPresence null.", setPresence=None)
_auth_reject(
    "presence_bad_show", "Check 9: show not in away/chat/dnd/xa.", setPresence={"show": "busy"}
)
_auth_reject("presence_show_case", "Check 9: show is case-sensitive.", setPresence={"show": "Away"})
_auth_reject("presence_show_number", "Check 9: numeric show.", setPresence={"show": 1})
_auth_reject("presence_status_null", "Check 9: status null.", setPresence={"status": None})
_auth_reject(
    "presence_status_too_long", "Check 9: 256-character status.", setPresence={"status": "s" * 256}
)
_auth_reject(
    "presence_status_newline", "Check 9: a line break in status.", setPresence={"status": "a\nb"}
)
_auth_reject(
    "unknown_app",
    "Check 12: unknown application without appAutoCreateEnable.",
    options=NO_APP_CREATE,
    applicationName="nosuchapp",
)
_auth_reject(
    "structure_before_unknown_app",
    "Check 9 before 12.",
    options=NO_APP_CREATE,
    applicationName="nosuchapp",
    setPresence={"show": "busy"},
)
_auth_reject(
    "missing_room",
    "Check 13b: unknown room without roomAutoCreateEnable.",
    options=NO_ROOM_CREATE,
    roomJoin=rooms("nosuch"),
)


@scenario(options=NO_ROOM_CREATE)
async def scenario_auth_reject_missing_room_after_joining_another(url: str, trace: Trace) -> None:
    """Check 13b after a first room was joined: the half-joined connection stays behind."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await bob.auth()
    await alice.auth(roomJoin=rooms("default", "nosuch"))
    await carol.auth()
    await carol.cmd(ROOM_LIST)


@scenario(options=NO_ROOM_CREATE)
async def scenario_room_join_missing_room_without_autocreate(url: str, trace: Trace) -> None:
    """roomJoin of a missing room without roomAutoCreateEnable: MSG_REJECT_BAD_ROOM."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.cmd(join("nosuch"))
    await alice.cmd(join("default"))
    await alice.cmd(leave("default"))
    await alice.cmd(join("default", "nosuch"))
    await bob.cmd(ROOM_LIST)


@scenario(options=MAX2)
async def scenario_auth_reject_default_room_full(url: str, trace: Trace) -> None:
    """Check 13: the default room already holds roomMaxConnection members: LOGIN_GEN_FAIL."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth()
    await bob.auth()
    await carol.auth()
    await alice.cmd(ROOM_LIST)


@scenario(options=MAX2)
async def scenario_auth_reject_room_full_after_joining_another(url: str, trace: Trace) -> None:
    """Check 13 after a first room was joined: the half-joined connection stays behind."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("full", "free"))
    await bob.auth(roomJoin=rooms("full"))
    await carol.auth(roomJoin=rooms("free", "full"))
    await alice.cmd(ROOM_LIST)
    await bob.cmd(join("free"))


@scenario(options=MAX2)
async def scenario_auth_reject_room_full_before_another(url: str, trace: Trace) -> None:
    """Check 13 on the first of two rooms: the reference still joins the second one afterwards."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("full", "free"))
    await bob.auth(roomJoin=rooms("full"))
    await carol.auth(roomJoin=rooms("full", "free"))
    await alice.cmd(ROOM_LIST)


@scenario(options=NO_ROOM_CREATE)
async def scenario_auth_reject_missing_room_before_existing(url: str, trace: Trace) -> None:
    """Check 13b on the first of two rooms: the reference still joins the second one afterwards."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await bob.auth()
    await alice.auth(roomJoin=rooms("nosuch", "default"))
    await carol.auth()
    await carol.cmd(ROOM_LIST)


@scenario(options=MAX2)
async def scenario_max_connection_room_join_full_first(url: str, trace: Trace) -> None:
    """roomMaxConnection 2: roomJoin of a full then a free room; the free one is still joined."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("full"))
    await bob.auth(roomJoin=rooms("full", "free"))
    await carol.auth(roomJoin=rooms("own"))
    await carol.cmd(join("full", "free"))
    await carol.cmd(ROOM_LIST)


@scenario(options=MAX2)
async def scenario_reauth_failure_full_room_before_another(url: str, trace: Trace) -> None:
    """roomMaxConnection 2: a re-auth failing on a full room, with a second room after it."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("full"))
    await bob.auth(roomJoin=rooms("full"))
    await carol.auth(roomJoin=rooms("free"))
    await alice.auth(roomJoin=rooms("full", "free"))
    await carol.cmd(ROOM_LIST)
    await carol.cmd(relay("offer", alice.id, OFFER_SDP))
    await carol.msg(app_msg("chat", "x", targetRoom="free"))


@scenario(options=MAX2)
async def scenario_max_connection_auto_created_room(url: str, trace: Trace) -> None:
    """roomMaxConnection 2: fresh rooms are created without a size check, the third is refused."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("r"))
    await bob.auth(roomJoin=rooms("r"))
    await carol.auth(roomJoin=rooms("other"))
    await carol.cmd(join("r"))
    await alice.cmd(leave("r"))
    await carol.cmd(join("r"))
    await alice.cmd(join("r"))


@scenario(options=MAX2)
async def scenario_max_connection_rejoin_counts_self(url: str, trace: Trace) -> None:
    """roomMaxConnection 2: re-joining a full room one is already in is refused."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(roomJoin=rooms("r"))
    await bob.auth(roomJoin=rooms("r"))
    await alice.cmd(join("r"))
    await alice.cmd(ROOM_LIST)


@scenario(options=MAX2)
async def scenario_max_connection_partial_room_join(url: str, trace: Trace) -> None:
    """roomMaxConnection 2: a roomJoin of a free and a full room keeps the free one joined."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("full"))
    await bob.auth(roomJoin=rooms("full"))
    await carol.auth(roomJoin=rooms("own"))
    await bob.cmd(join("free"))
    await carol.cmd(join("free", "full"))
    await carol.cmd(ROOM_LIST)
    await carol.msg(app_msg("chat", "hi", targetRoom="free"))


@scenario(options=MAX2)
async def scenario_reauth_in_full_room(url: str, trace: Trace) -> None:
    """roomMaxConnection 2: re-auth while in a full room fails (LOGIN_GEN_FAIL) and disconnects."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.auth()
    await bob.cmd(ROOM_LIST)


# ---------------------------------------------------------------------------------------------
# §2.7 Re-authentication on the same socket (same application)


@scenario()
async def scenario_reauth_same_app(url: str, trace: Trace) -> None:
    """A second auth keeps the easyrtcid, replaces the username, merges presence."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(username="first", setPresence={"show": "away", "status": "one"})
    await bob.auth()
    await alice.auth(username="second", setPresence={"status": "two"})
    await alice.auth()
    await alice.cmd(ROOM_LIST)


@scenario()
async def scenario_reauth_adds_rooms(url: str, trace: Trace) -> None:
    """Rooms requested on re-auth (or the default room) are joined in addition to current ones."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(roomJoin=rooms("r1"))
    await bob.auth(roomJoin=rooms("r1", "r2"))
    await alice.cmd(api_field("r1", api_fields(kept=True)))
    await alice.auth(roomJoin=rooms("r2"))
    await alice.auth()


@scenario()
async def scenario_reauth_then_signal(url: str, trace: Trace) -> None:
    """After a re-auth, relays and messages (the reference handles each once per auth)."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.auth()
    await alice.cmd(relay("offer", bob.id, OFFER_SDP))
    await alice.msg(app_msg("chat", "hello", targetEasyrtcid=bob.id))
    await alice.msg(app_msg("chat", "room", targetRoom="default"))
    await alice.cmd(presence(show="away"))


@scenario()
async def scenario_reauth_failure_disconnects(url: str, trace: Trace) -> None:
    """A failed re-auth closes the socket; peers then see the connection leave."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.auth(apiVersion="bad version")
    await bob.cmd(relay("offer", UNKNOWN_ID, OFFER_SDP))
    await bob.cmd(ROOM_LIST)


# ---------------------------------------------------------------------------------------------
# §2.1 / §3.1 / §4.1 Before authentication, missing acks, bad payloads


async def _before_auth(url: str, trace: Trace) -> None:
    alice, bob = await connected(url, trace, "alice", "bob")
    await bob.auth()
    await alice.cmd(ROOM_LIST, wait=False, sync=False)
    await alice.cmd(relay("offer", bob.id, OFFER_SDP), wait=False, sync=False)
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=bob.id), wait=False, sync=False)
    await alice.auth()
    await alice.cmd(ROOM_LIST)


@scenario()
async def scenario_before_auth_no_reply(url: str, trace: Trace) -> None:
    """Commands and messages before auth are not handled at all: no ack, no error."""
    await _before_auth(url, trace)


@scenario(options=STRICT)
async def scenario_before_auth_refused_with_strict_errors(url: str, trace: Trace) -> None:
    """strictErrors (ours alone): MSG_REJECT_NO_AUTH before auth instead of silence."""
    await _before_auth(url, trace)


@scenario()
async def scenario_unauthenticated_disconnect_is_silent(url: str, trace: Trace) -> None:
    """Closing a socket that never authenticated has no visible effect."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await bob.auth()
    await alice.disconnect()
    await bob.cmd(ROOM_LIST)


@scenario()
async def scenario_cmd_without_ack_is_ignored(url: str, trace: Trace) -> None:
    """An easyrtcCmd without ack callback is neither answered nor relayed."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.cmd(relay("offer", bob.id, OFFER_SDP), ack=False)
    await alice.cmd(presence(show="away"), ack=False)
    await alice.cmd(join("r"), ack=False)
    await alice.cmd(ROOM_LIST)


@scenario()
async def scenario_msg_without_ack_is_ignored(url: str, trace: Trace) -> None:
    """An easyrtcMsg without ack callback is not delivered."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=bob.id), ack=False)
    await alice.msg(app_msg("chat", "x", targetRoom="default"), ack=False)
    await alice.msg(app_msg("chat", "delivered", targetEasyrtcid=bob.id))


@scenario()
async def scenario_cmd_bad_payloads(url: str, trace: Trace) -> None:
    """§3.1: non-object payloads, missing or bad msgType."""
    (alice,) = await online(url, trace, "alice")
    await each_cmd(
        alice,
        "getRoomList",
        5,
        0,
        True,
        False,
        "",
        [],
        [{"msgType": "getRoomList"}],
        {},
        {"msgData": {}},
        {"msgType": 5},
        {"msgType": None},
        {"msgType": ["offer"]},
        {"msgType": "nosuch"},
        {"msgType": "OFFER"},
        {"msgType": ""},
        {"msgType": "token"},
        {"msgType": "ack"},
    )


@scenario()
async def scenario_still_alive(url: str, trace: Trace) -> None:
    """§3.11: stillAlive passes validation, then MSG_REJECT_BAD_TYPE."""
    (alice,) = await online(url, trace, "alice")
    await each_cmd(
        alice, payload("stillAlive"), payload("stillAlive", {}), payload("stillAlive", "x")
    )


# ---------------------------------------------------------------------------------------------
# §3.2 / §3.3 Relays


@scenario()
async def scenario_relay_offer_answer_candidate(url: str, trace: Trace) -> None:
    """offer / answer / candidate are pushed to the target, then acked."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.cmd(relay("offer", bob.id, OFFER_SDP))
    await bob.cmd(relay("answer", alice.id, {"type": "answer", "sdp": "v=0\r\n"}))
    await alice.cmd(relay("candidate", bob.id, CANDIDATE))
    await bob.cmd(relay("candidate", alice.id, CANDIDATE))


@scenario()
async def scenario_relay_reject_hangup(url: str, trace: Trace) -> None:
    """reject / hangup carry no msgData and are pushed without it."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.cmd(relay("reject", bob.id))
    await bob.cmd(relay("hangup", alice.id))


@scenario()
async def scenario_relay_to_self(url: str, trace: Trace) -> None:
    """Signalling oneself is allowed for commands."""
    (alice,) = await online(url, trace, "alice")
    await alice.cmd(relay("offer", alice.id, OFFER_SDP))
    await alice.cmd(relay("candidate", alice.id, CANDIDATE))
    await alice.cmd(relay("hangup", alice.id))


@scenario()
async def scenario_relay_msgdata_passthrough(url: str, trace: Trace) -> None:
    """msgData is relayed untouched: arrays, unicode, nesting, extra top-level keys dropped."""
    alice, bob = await online(url, trace, "alice", "bob")
    nested: Any = {"leaf": True}
    for i in range(40):
        nested = {f"l{i}": nested, "n": [i, None, "x"]}
    await alice.cmd(relay("offer", bob.id, [1, "two", {"three": 3}]))
    await alice.cmd(relay("answer", bob.id, {"sdp": "ünï ☃ \u2028 \n", "id": alice.id}))
    await alice.cmd(relay("candidate", bob.id, nested))
    await alice.cmd(
        relay("offer", bob.id, {"a": 1}, foo="bar", targetRoom="default", senderEasyrtcid=alice.id)
    )


@scenario()
async def scenario_relay_unknown_target(url: str, trace: Trace) -> None:
    """A well-formed id that is not online: MSG_REJECT_TARGET_EASYRTCID."""
    (alice,) = await online(url, trace, "alice")
    await each_cmd(
        alice,
        relay("offer", UNKNOWN_ID, OFFER_SDP),
        relay("answer", UNKNOWN_ID, OFFER_SDP),
        relay("candidate", UNKNOWN_ID, CANDIDATE),
        relay("reject", UNKNOWN_ID),
        relay("hangup", UNKNOWN_ID),
        relay("offer", "a" * 32, OFFER_SDP),
    )


@scenario()
async def scenario_relay_bad_target(url: str, trace: Trace) -> None:
    """A malformed or missing targetEasyrtcid: MSG_REJECT_BAD_STRUCTURE."""
    (alice,) = await online(url, trace, "alice")
    for target in (OMIT, None, "", "not an id!", "a" * 33, 5, ["x"], {"id": "x"}):
        await alice.cmd(relay("offer", target, OFFER_SDP))
        await alice.cmd(relay("hangup", target))


@scenario()
async def scenario_relay_offer_msgdata_rules(url: str, trace: Trace) -> None:
    """offer/answer/candidate need a non-empty object (or array) msgData, else BAD_DATA."""
    alice, bob = await online(url, trace, "alice", "bob")
    for data in (OMIT, None, {}, [], "sdp", 5, 0, True, False, [0], {"k": None}):
        await alice.cmd(relay("offer", bob.id, data))
    await alice.cmd(relay("answer", bob.id, "x"))
    await alice.cmd(relay("candidate", bob.id, {}))


@scenario()
async def scenario_relay_reject_hangup_msgdata_rules(url: str, trace: Trace) -> None:
    """reject/hangup: any msgData, even null or {}, is MSG_REJECT_BAD_DATA."""
    alice, bob = await online(url, trace, "alice", "bob")
    for data in (None, {}, [], "", 0, False, {"reason": "busy"}):
        await alice.cmd(relay("reject", bob.id, data))
        await alice.cmd(relay("hangup", bob.id, data))


@scenario()
async def scenario_relay_check_order(url: str, trace: Trace) -> None:
    """msgData is checked before the target syntax, which is checked before the lookup."""
    (alice,) = await online(url, trace, "alice")
    await each_cmd(
        alice,
        relay("offer", "bad id!", {}),
        relay("hangup", "bad id!", {}),
        relay("offer", UNKNOWN_ID, {}),
        relay("reject", UNKNOWN_ID, None),
        relay("answer", "bad id!", OFFER_SDP),
    )


@scenario()
async def scenario_relay_other_application(url: str, trace: Trace) -> None:
    """Connections of another application cannot be signalled or messaged."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth()
    await bob.auth(applicationName=trace.app_name("other"))
    await alice.cmd(relay("offer", bob.id, OFFER_SDP))
    await bob.cmd(relay("hangup", alice.id))
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=bob.id))
    await alice.cmd(ROOM_LIST)
    await bob.cmd(ROOM_LIST)


@scenario()
async def scenario_relay_ignores_rooms(url: str, trace: Trace) -> None:
    """Connections in different rooms (or none) of one application still reach each other."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(roomJoin=rooms("r1"))
    await bob.auth(roomJoin=rooms("r2"))
    await alice.cmd(relay("offer", bob.id, OFFER_SDP))
    await bob.msg(app_msg("chat", "direct", targetEasyrtcid=alice.id))
    await bob.cmd(leave("r2"))
    await alice.cmd(relay("candidate", bob.id, CANDIDATE))


async def _relay_to_disconnected_peer(url: str, trace: Trace) -> None:
    alice, bob = await online(url, trace, "alice", "bob")
    bob_id = bob.id
    await bob.disconnect()
    await alice.cmd(relay("offer", bob_id, OFFER_SDP))
    await alice.cmd(relay("hangup", bob_id))
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=bob_id))


@scenario()
async def scenario_relay_to_disconnected_peer(url: str, trace: Trace) -> None:
    """After a peer left: relays get TARGET_EASYRTCID; a message GEN_FAIL from the reference,
    an ack that reaches nobody from ours while the departure is fresh (DEPARTURE_GRACE_MS)."""
    await _relay_to_disconnected_peer(url, trace)


@scenario(options=STRICT)
async def scenario_relay_to_disconnected_peer_strict(url: str, trace: Trace) -> None:
    """strictErrors: the message to the departed peer gets GEN_FAIL, as the reference."""
    await _relay_to_disconnected_peer(url, trace)


# ---------------------------------------------------------------------------------------------
# §3.4 / §3.5 getIceConfig, getRoomList


@scenario()
async def scenario_ice_config_msgdata_rules(url: str, trace: Trace) -> None:
    """getIceConfig: absent or "empty" msgData passes; non-empty object/array/string: BAD_DATA."""
    (alice,) = await online(url, trace, "alice")
    for data in (OMIT, {}, [], "", None, 0, 5, True, False, {"a": 1}, [1], "x"):
        await alice.cmd(payload("getIceConfig", data))


@scenario()
async def scenario_room_list_msgdata_rules(url: str, trace: Trace) -> None:
    """getRoomList: any msgData, even null or {}, is MSG_REJECT_BAD_DATA."""
    (alice,) = await online(url, trace, "alice")
    for data in (OMIT, None, {}, [], "", 0, False, {"a": 1}):
        await alice.cmd(payload("getRoomList", data))


@scenario()
async def scenario_room_list_contents(url: str, trace: Trace) -> None:
    """getRoomList lists every room of the application (joined or not, emptied ones too)."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("r1", "r2"))
    await bob.auth(roomJoin=rooms("r2", "r3"))
    await carol.auth(applicationName=trace.app_name("other"), roomJoin=rooms("elsewhere"))
    await alice.cmd(ROOM_LIST)
    await bob.cmd(leave("r3"))
    await alice.cmd(ROOM_LIST)
    await bob.disconnect()
    await alice.cmd(ROOM_LIST)
    await carol.cmd(ROOM_LIST)


# ---------------------------------------------------------------------------------------------
# §3.6 roomJoin


@scenario()
async def scenario_room_join_new_room(url: str, trace: Trace) -> None:
    """Joining a new room creates it; members of other rooms hear nothing."""
    alice, _bob = await online(url, trace, "alice", "bob")
    await alice.cmd(join("lobby"))
    await alice.cmd(ROOM_LIST)


@scenario()
async def scenario_room_join_existing_room(url: str, trace: Trace) -> None:
    """Joining an existing room: members get an update delta, the reply lists everyone."""
    alice, bob, carol = await online(url, trace, "alice", "bob", "carol")
    await alice.cmd(join("lobby"))
    await bob.cmd(join("lobby"))
    await carol.cmd(join("lobby", lobby={"key": "value"}))


@scenario()
async def scenario_room_join_again(url: str, trace: Trace) -> None:
    """Re-joining a room one is in: same reply, members get another delta."""
    alice, _bob = await online(url, trace, "alice", "bob")
    await alice.cmd(join("default"))
    await alice.cmd(join("default", "extra"))


@scenario()
async def scenario_room_join_several_rooms(url: str, trace: Trace) -> None:
    """One request for several rooms: one reply listing only the requested rooms."""
    alice, bob = await online(url, trace, "alice", "bob")
    await bob.cmd(join("r2"))
    await alice.cmd(join("r1", "r2", "r3", "42"))
    await bob.cmd(join("r1", "r3"))


@scenario()
async def scenario_room_join_room_parameter_unchecked(url: str, trace: Trace) -> None:
    """roomParameter is not validated by the roomJoin command."""
    (alice,) = await online(url, trace, "alice")
    await alice.cmd(join("a", a="text"))
    await alice.cmd(join("b", b=None))
    await alice.cmd(join("c", c={"deep": [1, 2]}))


@scenario()
async def scenario_room_join_array_form(url: str, trace: Trace) -> None:
    """A roomJoin array is read like a map with keys "0", "1", …"""
    alice, bob = await online(url, trace, "alice", "bob")
    await bob.cmd(join("0"))
    await alice.cmd(payload("roomJoin", {"roomJoin": [{"roomName": "0"}]}))
    await alice.cmd(payload("roomJoin", {"roomJoin": [{"roomName": "x"}]}))


@scenario()
async def scenario_room_join_bad_requests(url: str, trace: Trace) -> None:
    """roomJoin validation: BAD_DATA for msgData, BAD_STRUCTURE for the map; nothing joined."""
    alice, bob = await online(url, trace, "alice", "bob")
    await bob.cmd(join("good"))
    bad_maps: list[Any] = [
        OMIT,
        None,
        "x",
        5,
        {"bad room": {"roomName": "bad room"}},
        rooms("r" * 33),
        {"a": {"roomName": "b"}},
        {"a": {}},
        {"a": "a"},
        {"a": None},
        {"a": {"roomName": 5}},
        {"good": {"roomName": "good"}, "b!": {"roomName": "b!"}},
    ]
    for data in (OMIT, None, "x", 5, []):
        await alice.cmd(payload("roomJoin", data))
    for room_map in bad_maps:
        await alice.cmd(payload("roomJoin", drop_omitted({"roomJoin": room_map})))
    await alice.cmd(ROOM_LIST)


# ---------------------------------------------------------------------------------------------
# §3.7 roomLeave


@scenario()
async def scenario_room_leave_member(url: str, trace: Trace) -> None:
    """Leaving a room: reply "leave", members get removeClient; the leaver stays reachable."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.cmd(leave("default"))
    await bob.cmd(relay("offer", alice.id, OFFER_SDP))
    await alice.cmd(ROOM_LIST)
    await alice.cmd(join("default"))


@scenario()
async def scenario_room_leave_non_member(url: str, trace: Trace) -> None:
    """Leaving rooms one is not in (existing or not) is no error and pushes nothing."""
    alice, bob = await online(url, trace, "alice", "bob")
    await bob.cmd(join("elsewhere"))
    await alice.cmd(leave("elsewhere", "never"))
    await alice.cmd(ROOM_LIST)


@scenario()
async def scenario_room_leave_empty_map(url: str, trace: Trace) -> None:
    """An empty roomLeave map passes and yields an empty roomData reply."""
    alice, _bob = await online(url, trace, "alice", "bob")
    await alice.cmd(payload("roomLeave", {"roomLeave": {}}))
    await alice.cmd(payload("roomLeave", {"roomLeave": []}))


@scenario()
async def scenario_room_leave_several_rooms(url: str, trace: Trace) -> None:
    """Leaving several shared rooms: one removeClient push per room."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("r1", "r2", "r3"))
    await bob.auth(roomJoin=rooms("r1", "r2"))
    await carol.auth(roomJoin=rooms("r3"))
    await alice.cmd(leave("r1", "r2", "r3", "r4"))
    await alice.cmd(presence(show="away"))


@scenario()
async def scenario_room_leave_bad_requests(url: str, trace: Trace) -> None:
    """roomLeave validation: BAD_DATA for msgData, BAD_STRUCTURE for the map; nothing left."""
    alice, _bob = await online(url, trace, "alice", "bob")
    for data in (OMIT, None, "x", 5, []):
        await alice.cmd(payload("roomLeave", data))
    for room_map in (
        None,
        "default",
        5,
        {"bad room": {"roomName": "bad room"}},
        {"default": {"roomName": "other"}},
        {"default": {}},
        {"default": None},
        {"default": {"roomName": "default"}, "b!": {"roomName": "b!"}},
    ):
        await alice.cmd(payload("roomLeave", {"roomLeave": room_map}))
    await alice.cmd(ROOM_LIST)


# ---------------------------------------------------------------------------------------------
# §3.8 setPresence


@scenario()
async def scenario_set_presence_shared_rooms(url: str, trace: Trace) -> None:
    """The reply covers all the sender's rooms; each peer gets one push with the shared rooms."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("r1", "r2"))
    await bob.auth(roomJoin=rooms("r1", "r2"))
    await carol.auth(roomJoin=rooms("r2", "r3"))
    await alice.cmd(presence(show="away", status="lunch"))
    await carol.cmd(presence(status="x", type="t", extra="ignored"))


@scenario()
async def scenario_set_presence_in_no_room(url: str, trace: Trace) -> None:
    """setPresence with no rooms: reply roomData {}; presence shows when joining later."""
    alice, _bob = await online(url, trace, "alice", "bob")
    await alice.cmd(leave("default"))
    await alice.cmd(presence(show="dnd", status="busy"))
    await alice.cmd(join("default"))


@scenario()
async def scenario_set_presence_forms(url: str, trace: Trace) -> None:
    """Partial updates merge: show only, status only, empty and 255-character status."""
    alice, _bob = await online(url, trace, "alice", "bob")
    await each_cmd(
        alice,
        presence(show="xa"),
        presence(status="s" * 255),
        presence(status=""),
        presence(show="chat", status="ünï"),
        presence(other=1),
    )


@scenario()
async def scenario_set_presence_bad_requests(url: str, trace: Trace) -> None:
    """setPresence validation: BAD_DATA for msgData, BAD_STRUCTURE for the presence object."""
    alice, _bob = await online(url, trace, "alice", "bob")
    for data in (OMIT, None, "x", 5):
        await alice.cmd(payload("setPresence", data))
    for value in (
        OMIT,
        None,
        {},
        [],
        "away",
        {"show": "busy"},
        {"show": "Away"},
        {"show": 1},
        {"show": None},
        {"status": None},
        {"status": 5},
        {"status": "s" * 256},
        {"status": "a\nb"},
    ):
        await alice.cmd(payload("setPresence", drop_omitted({"setPresence": value})))


# ---------------------------------------------------------------------------------------------
# §3.9 setRoomApiField


@scenario()
async def scenario_api_field_set(url: str, trace: Trace) -> None:
    """setRoomApiField: per-room delta with apiField to members, same in the reply."""
    alice, _bob = await online(url, trace, "alice", "bob")
    await alice.cmd(api_field("default", api_fields(mediaIds={"cam": "abc"}, n=5)))
    await alice.cmd(api_field("default", api_fields(mediaIds="replaced")))


@scenario()
async def scenario_api_field_later_views(url: str, trace: Trace) -> None:
    """apiField appears in later clientLists, re-join replies, and not in setPresence deltas."""
    alice, _bob, carol = await online(url, trace, "alice", "bob", "carol")
    await carol.cmd(leave("default"))
    await alice.cmd(api_field("default", api_fields(x=1)))
    await carol.cmd(join("default"))
    await alice.cmd(join("default"))
    await alice.cmd(presence(show="away"))


@scenario()
async def scenario_api_field_clear(url: str, trace: Trace) -> None:
    """Clearing with field absent or {}: the delta simply lacks apiField."""
    alice, _bob, carol = await online(url, trace, "alice", "bob", "carol")
    await carol.cmd(leave("default"))
    await alice.cmd(api_field("default", api_fields(x=1)))
    await alice.cmd(api_field("default"))
    await alice.cmd(api_field("default", api_fields(y=2)))
    await alice.cmd(api_field("default", {}))
    await alice.cmd(api_field("default", []))
    await carol.cmd(join("default"))


@scenario()
async def scenario_api_field_per_room(url: str, trace: Trace) -> None:
    """apiFields are per room: setting one room leaves the other untouched."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth(roomJoin=rooms("r1", "r2"))
    await bob.auth(roomJoin=rooms("r1", "r2"))
    await alice.cmd(api_field("r1", api_fields(in_r1=True)))
    await alice.cmd(api_field("r2", api_fields(in_r2=True)))
    await alice.cmd(api_field("r1"))
    await bob.cmd(join("r1", "r2"))


@scenario()
async def scenario_api_field_unchecked_shape(url: str, trace: Trace) -> None:
    """Field names and the inner {fieldName, fieldValue} shape are not checked."""
    alice, _bob = await online(url, trace, "alice", "bob")
    await alice.cmd(api_field("default", {"a": 5, "b b": None, "c": {"fieldName": "other"}}))
    await alice.cmd(api_field("default", ["x", {"y": 1}]))


@scenario()
async def scenario_api_field_size_limit(url: str, trace: Trace) -> None:
    """field JSON of 4095 characters passes, 4096 gives MSG_REJECT_BAD_SIZE."""
    alice, _bob = await online(url, trace, "alice", "bob")
    skeleton = '{"big":{"fieldName":"big","fieldValue":""}}'
    for size in (4095, 4096, 10_000):
        filler = "x" * (size - len(skeleton))
        await alice.cmd(api_field("default", api_fields(big=filler)))


@scenario()
async def scenario_api_field_errors(url: str, trace: Trace) -> None:
    """BAD_DATA / BAD_STRUCTURE / BAD_ROOM cases of setRoomApiField; nothing is pushed."""
    alice, bob = await online(url, trace, "alice", "bob")
    await bob.cmd(join("elsewhere"))
    for data in (OMIT, None, "x", 5):
        await alice.cmd(payload("setRoomApiField", data))
    for value in (OMIT, None, {}, [], "default", {"field": api_fields(x=1)}):
        await alice.cmd(payload("setRoomApiField", drop_omitted({"setRoomApiField": value})))
    for room in (None, 5, "", "bad room", "r" * 33, "elsewhere", "nosuch"):
        await alice.cmd(api_field(room, api_fields(x=1)))
    for value in ("x", 5, True, None):
        await alice.cmd(api_field("default", value))
    await alice.cmd(api_field("bad room", "x"))


# ---------------------------------------------------------------------------------------------
# §3.10 setUserCfg


@scenario()
async def scenario_set_user_cfg(url: str, trace: Trace) -> None:
    """setUserCfg is validated then discarded: ack or error, nothing pushed or shown."""
    alice, bob = await online(url, trace, "alice", "bob")
    good = {
        "userSettings": {"sharingAudio": True, "windowWidth": 100},
        "p2pList": {bob.id: {"connectTime": 1, "isInitiator": True}},
        "apiField": "anything",
    }
    await alice.cmd(payload("setUserCfg", {"setUserCfg": good}))
    await alice.cmd(payload("setUserCfg", {"setUserCfg": {"other": None}}))
    for data in (OMIT, None, "x", 5):
        await alice.cmd(payload("setUserCfg", data))
    for value in (
        OMIT,
        None,
        {},
        [],
        "x",
        {"p2pList": {}},
        {"p2pList": "x"},
        {"userSettings": {}},
        {"userSettings": 5},
        {"userSettings": None},
    ):
        await alice.cmd(payload("setUserCfg", drop_omitted({"setUserCfg": value})))
    await bob.cmd(ROOM_LIST)


# ---------------------------------------------------------------------------------------------
# §4 easyrtcMsg


@scenario()
async def scenario_msg_to_peer(url: str, trace: Trace) -> None:
    """Direct messages: any msgData (or none) is delivered as sent; any msgType string."""
    alice, bob = await online(url, trace, "alice", "bob")
    for data in (OMIT, {"text": "hi"}, "text", 5, None, [1, 2], False, {}):
        await alice.msg(app_msg("chat", data, targetEasyrtcid=bob.id))
    await alice.msg(app_msg("", "empty type", targetEasyrtcid=bob.id))
    await bob.msg(app_msg("reply", {"to": alice.id}, targetEasyrtcid=alice.id, extra="dropped"))


@scenario()
async def scenario_msg_to_self_refused(url: str, trace: Trace) -> None:
    """A message to oneself: MSG_REJECT_TARGET_EASYRTCID (unlike commands)."""
    (alice,) = await online(url, trace, "alice")
    await alice.msg(app_msg("chat", "me", targetEasyrtcid=alice.id))
    await alice.msg(app_msg("chat", "me", targetEasyrtcid=alice.id, targetRoom="default"))


@scenario()
async def scenario_msg_unknown_target(url: str, trace: Trace) -> None:
    """A well-formed id that is not online: MSG_REJECT_GEN_FAIL."""
    (alice,) = await online(url, trace, "alice")
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=UNKNOWN_ID))
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=UNKNOWN_ID, targetRoom="default"))
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=UNKNOWN_ID, targetGroup="g"))


@scenario()
async def scenario_msg_bad_target(url: str, trace: Trace) -> None:
    """A malformed targetEasyrtcid: MSG_REJECT_TARGET_EASYRTCID."""
    (alice,) = await online(url, trace, "alice")
    for target in (None, "", "bad id!", "a" * 33, 5, ["x"], False):
        await alice.msg(app_msg("chat", "x", targetEasyrtcid=target))


@scenario()
async def scenario_msg_to_room(url: str, trace: Trace) -> None:
    """Room broadcast: every other member gets it, non-members do not, the sender is acked."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("r", "solo"))
    await bob.auth(roomJoin=rooms("r"))
    await carol.auth()
    await alice.msg(app_msg("chat", {"text": "to r"}, targetRoom="r"))
    await bob.msg(app_msg("chat", targetRoom="r"))
    await alice.msg(app_msg("chat", "alone", targetRoom="solo"))


@scenario()
async def scenario_msg_to_room_refused(url: str, trace: Trace) -> None:
    """Room broadcast by a non-member, to a missing or malformed room: TARGET_ROOM."""
    alice, bob = await connected(url, trace, "alice", "bob")
    await alice.auth()
    await alice.cmd(join("lobby"))  # it has entered its rooms (see msg_to_room_while_entering)
    await bob.auth(roomJoin=rooms("r"))
    for room in ("r", "nosuch", "bad room", "r" * 33, "", None, 5):
        await alice.msg(app_msg("chat", "x", targetRoom=room))


async def _room_msg_while_entering(url: str, trace: Trace) -> None:
    alice, bob = await connected(url, trace, "alice", "bob")
    await bob.auth(roomJoin=rooms("basic"))
    await alice.auth()
    await alice.msg(app_msg("u", {"n": 1}, targetRoom="basic"))
    await alice.msg(app_msg("u", {"n": 2}, targetRoom="basic"))
    await alice.cmd(join("basic"))
    await alice.msg(app_msg("u", {"n": 3}, targetRoom="basic"))


@scenario()
async def scenario_msg_to_room_while_entering(url: str, trace: Trace) -> None:
    """networked-aframe's race: after its token, before its roomJoin, it sends to the room it is
    about to join. The reference answers TARGET_ROOM (a dialog); ours acks, the message reaches
    nobody; after the join it is delivered."""
    await _room_msg_while_entering(url, trace)


@scenario(options=STRICT)
async def scenario_msg_to_room_while_entering_strict(url: str, trace: Trace) -> None:
    """strictErrors: TARGET_ROOM while entering, as the reference."""
    await _room_msg_while_entering(url, trace)


@scenario()
async def scenario_msg_to_peer_in_room(url: str, trace: Trace) -> None:
    """targetEasyrtcid with targetRoom: both must be members; delivered with targetRoom."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("r", "a_only"))
    await bob.auth(roomJoin=rooms("r"))
    await carol.auth(roomJoin=rooms("c_only"))
    await alice.msg(app_msg("chat", "in r", targetEasyrtcid=bob.id, targetRoom="r"))
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=bob.id, targetRoom="a_only"))
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=carol.id, targetRoom="r"))
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=bob.id, targetRoom="c_only"))
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=bob.id, targetRoom="nosuch"))


@scenario()
async def scenario_msg_target_group(url: str, trace: Trace) -> None:
    """Groups are never populated: group targets fail, a room+group broadcast reaches nobody."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.msg(app_msg("chat", "x", targetGroup="g"))
    await alice.msg(app_msg("chat", "x", targetGroup="bad group"))
    await alice.msg(app_msg("chat", "x", targetGroup=None))
    await alice.msg(app_msg("chat", "x", targetEasyrtcid=bob.id, targetGroup="g"))
    await alice.msg(
        app_msg("chat", "x", targetEasyrtcid=bob.id, targetRoom="default", targetGroup="g")
    )
    await alice.msg(app_msg("chat", "x", targetRoom="default", targetGroup="g"))


@scenario()
async def scenario_msg_validation_order(url: str, trace: Trace) -> None:
    """Order: structure, msgType, targetEasyrtcid, targetGroup, targetRoom, then self-target."""
    alice, _bob = await online(url, trace, "alice", "bob")
    await each_msg(
        alice,
        app_msg(OMIT, "x", targetEasyrtcid="bad id!"),
        app_msg("chat", "x", targetEasyrtcid="bad id!", targetGroup="bad group"),
        app_msg("chat", "x", targetGroup="bad group", targetRoom="bad room"),
        app_msg("chat", "x", targetEasyrtcid=alice.id, targetRoom="bad room"),
        app_msg("chat", "x", targetEasyrtcid=alice.id, targetGroup="bad group"),
        app_msg("chat", "x", targetEasyrtcid=UNKNOWN_ID, targetRoom="bad room"),
    )


@scenario()
async def scenario_msg_bad_payloads(url: str, trace: Trace) -> None:
    """§4.1: non-object payloads (BAD_STRUCTURE), missing or non-string msgType (BAD_TYPE)."""
    alice, bob = await online(url, trace, "alice", "bob")
    await each_msg(
        alice,
        "chat",
        5,
        True,
        0,
        "",
        [],
        {},
        {"targetEasyrtcid": bob.id},
        {"msgType": 5, "targetEasyrtcid": bob.id},
        {"msgType": None, "targetRoom": "default"},
    )


async def _msg_without_target(url: str, trace: Trace) -> None:
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.msg(app_msg("serverCall", {"q": 1}), wait=False)
    await alice.msg(app_msg("serverCall", targetRoom=""), wait=False)
    await alice.msg(app_msg("chat", "after", targetEasyrtcid=bob.id))


@scenario()
async def scenario_msg_without_target_not_answered(url: str, trace: Trace) -> None:
    """A message with no target is for the server: the stock server neither acks nor errs."""
    await _msg_without_target(url, trace)


@scenario(options=STRICT)
async def scenario_msg_without_target_refused_with_strict_errors(url: str, trace: Trace) -> None:
    """strictErrors (ours alone): MSG_REJECT_BAD_TYPE for a message no hook handles."""
    await _msg_without_target(url, trace)


# ---------------------------------------------------------------------------------------------
# §5 Disconnect


@scenario()
async def scenario_disconnect_cleanup(url: str, trace: Trace) -> None:
    """A member sharing k rooms with the leaver gets k removeClient pushes."""
    alice, bob, carol = await connected(url, trace, "alice", "bob", "carol")
    await alice.auth(roomJoin=rooms("r1", "r2", "r3"))
    await bob.auth(roomJoin=rooms("r1", "r2"))
    await carol.auth(roomJoin=rooms("r2"))
    await alice.disconnect()
    await bob.cmd(ROOM_LIST)
    await bob.disconnect()
    await carol.cmd(ROOM_LIST)


@scenario()
async def scenario_disconnect_without_rooms(url: str, trace: Trace) -> None:
    """A connection in no room leaves silently."""
    alice, bob = await online(url, trace, "alice", "bob")
    await alice.cmd(leave("default"))
    await alice.disconnect()
    await bob.cmd(relay("offer", UNKNOWN_ID, OFFER_SDP))


@scenario()
async def scenario_disconnect_with_api_field_and_presence(url: str, trace: Trace) -> None:
    """removeClient carries only the id, whatever the leaver had set."""
    alice, _bob = await online(url, trace, "alice", "bob", username="u")
    await alice.cmd(api_field("default", api_fields(x=1)))
    await alice.cmd(presence(show="away"))
    await alice.disconnect()
