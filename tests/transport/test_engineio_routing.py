"""``route_request``: every Engine.IO request check, without I/O, as both drivers apply it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from easyrtc_server.transport.engineio_routing import (
    BAD_HANDSHAKE_METHOD,
    BAD_REQUEST,
    FORBIDDEN,
    UNKNOWN_SID,
    UNKNOWN_TRANSPORT,
    UNSUPPORTED_PROTOCOL_VERSION,
    CorsPolicy,
    Handshake,
    Poll,
    Post,
    Preflight,
    Refuse,
    Route,
    Upgrade,
    route_request,
)


@dataclass
class Session:
    closed: bool = False
    on_websocket: bool = False
    probing: bool = False


def route(
    method: str = "GET",
    *,
    upgrade: bool = False,
    origin: str | None = None,
    host: str = "example.com",
    sessions: dict[str, Session] | None = None,
    cors: tuple[str, ...] = (),
    allow_eio3: bool = True,
    wanted: str | None = None,
    **query: str,
) -> Route[Session]:
    return route_request(
        method,
        query,
        upgrade=upgrade,
        origin=origin,
        host=host,
        sessions=sessions or {},
        cors=CorsPolicy(cors),
        allow_eio3=allow_eio3,
        access_control_request_headers=wanted,
    )


def test_handshakes() -> None:
    assert route(EIO="4", transport="polling") == Handshake(4, websocket=False)
    assert route(transport="polling") == Handshake(3, websocket=False)  # EIO defaults to 3
    assert route(EIO="4", transport="websocket", upgrade=True) == Handshake(4, websocket=True)


@pytest.mark.parametrize(
    ("method", "extra", "query", "code"),
    [
        ("GET", {}, {"EIO": "5", "transport": "polling"}, UNSUPPORTED_PROTOCOL_VERSION),
        ("GET", {"allow_eio3": False}, {"EIO": "3", "transport": "polling"},
         UNSUPPORTED_PROTOCOL_VERSION),
        ("GET", {}, {"EIO": "4", "transport": "flashsocket"}, UNKNOWN_TRANSPORT),
        ("GET", {}, {"EIO": "4"}, UNKNOWN_TRANSPORT),
        ("GET", {}, {"EIO": "3", "transport": "polling", "j": "0"}, BAD_REQUEST),  # no JSONP
        ("POST", {}, {"EIO": "4", "transport": "polling"}, BAD_HANDSHAKE_METHOD),
        ("GET", {}, {"EIO": "4", "transport": "websocket"}, BAD_REQUEST),  # no Upgrade header
        ("POST", {"upgrade": True}, {"EIO": "4", "transport": "websocket"}, BAD_REQUEST),
    ],
)  # fmt: skip
def test_refusals(method: str, extra: dict[str, bool], query: dict[str, str], code: int) -> None:
    found = route(method, **extra, **query)  # type: ignore[arg-type]
    assert isinstance(found, Refuse)
    assert found.code == code and found.missing is None
    assert found.status == 400


def test_requests_of_a_polling_session() -> None:
    s = Session()
    sessions = {"abc": s}
    assert route(EIO="4", transport="polling", sid="abc", sessions=sessions) == Poll(s)
    assert route("POST", EIO="4", transport="polling", sid="abc", sessions=sessions) == Post(s)
    assert route("PUT", EIO="4", transport="polling", sid="abc", sessions=sessions) == Refuse(
        BAD_REQUEST
    )
    upgrade = route(EIO="4", transport="websocket", sid="abc", sessions=sessions, upgrade=True)
    assert upgrade == Upgrade(s)


def test_an_unknown_sid_is_named_so_a_cluster_node_can_forward_it() -> None:
    assert route(EIO="4", transport="polling", sid="n1.x") == Refuse(UNKNOWN_SID, missing="n1.x")
    found = route(EIO="4", transport="websocket", sid="n1.x", upgrade=True)
    assert found == Refuse(UNKNOWN_SID, missing="n1.x")


def test_a_session_on_websocket_takes_no_polling_and_no_second_upgrade() -> None:
    upgraded = {"abc": Session(on_websocket=True)}
    assert route(EIO="4", transport="polling", sid="abc", sessions=upgraded) == Refuse(BAD_REQUEST)
    probing = {"abc": Session(probing=True)}
    assert route(EIO="4", transport="polling", sid="abc", sessions=probing) == Poll(probing["abc"])
    for sessions in (upgraded, probing):
        found = route(EIO="4", transport="websocket", sid="abc", sessions=sessions, upgrade=True)
        assert found == Refuse(BAD_REQUEST)


def test_a_closed_session_cannot_be_upgraded_and_is_not_forwarded() -> None:
    sessions = {"abc": Session(closed=True)}
    found = route(EIO="4", transport="websocket", sid="abc", sessions=sessions, upgrade=True)
    assert found == Refuse(UNKNOWN_SID)  # here, but over: not another node's
    # its close packet is still to be polled
    assert route(EIO="4", transport="polling", sid="abc", sessions=sessions) == Poll(
        sessions["abc"]
    )


def test_websocket_origins() -> None:
    ws = {"EIO": "4", "transport": "websocket", "upgrade": True}
    listed = ("https://app.example",)
    assert isinstance(route(origin="https://evil.example", **ws), Handshake)  # no list: any
    refused = route(origin="https://evil.example", cors=listed, **ws)  # type: ignore[arg-type]
    assert refused == Refuse(FORBIDDEN) and refused.status == 403
    for origin in ("https://app.example/", "http://example.com", None):  # listed, own host, none
        found = route(origin=origin, cors=listed, **ws)  # type: ignore[arg-type]
        assert isinstance(found, Handshake)
    assert isinstance(route(origin="https://evil.example", cors=("*",), **ws), Handshake)  # type: ignore[arg-type]


def test_cors_headers_and_preflight() -> None:
    policy = CorsPolicy(["https://app.example"])
    assert policy.headers("https://evil.example") == {}
    assert policy.headers(None) == {}
    assert policy.headers("https://app.example") == {
        "Access-Control-Allow-Origin": "https://app.example",
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
    assert CorsPolicy(["*"]).headers("https://any.example") == {"Access-Control-Allow-Origin": "*"}
    found = route(
        "OPTIONS", origin="https://app.example", cors=("https://app.example",), wanted="x"
    )
    assert isinstance(found, Preflight)
    assert found.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert found.headers["Access-Control-Allow-Headers"] == "x"
    assert route("OPTIONS", origin="https://evil.example", cors=("https://app.example",)) == (
        Preflight({})
    )
