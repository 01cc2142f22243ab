"""JWT logins (``JwtAuth``): what real socket.io clients see for good and bad tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from easyrtc_server.hooks import Hooks, JoinPhase
from easyrtc_server.jwtauth import JwtAuth
from easyrtc_server.options import Options
from easyrtc_server.protocol.auth import AuthRequest
from easyrtc_server.protocol.errors import EasyRtcError, ErrorCode
from easyrtc_server.protocol.model import Peer
from easyrtc_server.server import EasyRtcServer
from support.client import TIMEOUT, Client
from support.ours import connected_clients

SECRET = "a-test-secret-long-enough-for-hs256-and-even-for-the-hs512-test!"


def token(claims: dict[str, Any] | None = None, *, key: Any = SECRET, alg: str = "HS256") -> str:
    body = {"sub": "alice", "exp": int(time.time()) + 60, **(claims or {})}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg)


def login(credential: Any = None, **msg_data: Any) -> dict[str, Any]:
    data = {"apiVersion": "1.1.1-beta", **msg_data}
    if credential is not None:
        data["credential"] = credential
    return {"msgType": "authenticate", "msgData": data}


def rooms(*names: str) -> dict[str, Any]:
    return {name: {"roomName": name} for name in names}


@asynccontextmanager
async def jwt_server(
    hooks: Hooks, count: int = 1
) -> AsyncIterator[tuple[EasyRtcServer, list[Client]]]:
    server = EasyRtcServer(Options(), hooks=hooks)
    async with connected_clients(server, count) as made:
        yield server, made


def username(server: EasyRtcServer, token_reply: dict[str, Any]) -> str | None:
    assert token_reply["msgType"] == "token", token_reply
    conn = server.connection(token_reply["msgData"]["easyrtcid"])
    assert conn is not None
    return conn.username


async def refused(client: Client, message: dict[str, Any]) -> str:
    """The error code of a refused login; the socket is then closed."""
    reply = await client.call("easyrtcAuth", message)
    assert reply["msgType"] == "error", reply
    await asyncio.wait_for(client.disconnected.wait(), TIMEOUT)
    return str(reply["msgData"]["errorCode"])


async def test_valid_token_logs_in_with_the_token_username() -> None:
    async with jwt_server(JwtAuth(SECRET)) as (server, (a,)):
        reply = await a.call("easyrtcAuth", login({"token": token()}))
        assert username(server, reply) == "alice"
        claims = JwtAuth.claims(server.core.peers[reply["msgData"]["easyrtcid"]])
        assert claims is not None and claims["sub"] == "alice"


async def test_username_claim_wins_over_sub_and_must_match_the_client() -> None:
    async with jwt_server(JwtAuth(SECRET), count=2) as (server, (a, b)):
        mine = token({"username": "Alice Doe"})
        reply = await a.call("easyrtcAuth", login({"token": mine}, username="Alice Doe"))
        assert username(server, reply) == "Alice Doe"
        assert await refused(b, login({"token": mine}, username="mallory")) == "LOGIN_BAD_AUTH"


@pytest.mark.parametrize(
    "credential",
    [
        None,
        {"password": "x"},
        {"token": 42},
        {"token": "not.a.jwt"},
        {"token": token({"exp": int(time.time()) - 5})},
        {"token": token({"exp": None})},
        {"token": token(key=SECRET.upper())},
        {"token": token(alg="HS512")},
    ],
    ids=["none", "no-token", "not-text", "garbage", "expired", "no-exp", "forged", "hs512"],
)
async def test_bad_tokens_are_refused(credential: Any) -> None:
    async with jwt_server(JwtAuth(SECRET)) as (server, (a,)):
        assert await refused(a, login(credential)) == "LOGIN_BAD_AUTH"
        assert server.occupants("default", "default") == []


async def test_unsigned_token_is_refused() -> None:
    header = _b64({"alg": "none", "typ": "JWT"})
    payload = _b64({"sub": "alice", "exp": int(time.time()) + 60})
    async with jwt_server(JwtAuth(SECRET)) as (_, (a,)):
        assert await refused(a, login({"token": f"{header}.{payload}."})) == "LOGIN_BAD_AUTH"


async def test_leeway_tolerates_clock_skew() -> None:
    late = token({"exp": int(time.time()) - 2})
    async with jwt_server(JwtAuth(SECRET, leeway=30)) as (_, (a,)):
        assert (await a.call("easyrtcAuth", login({"token": late})))["msgType"] == "token"


async def test_audience_and_issuer_are_checked() -> None:
    hooks = JwtAuth(SECRET, audience="easyrtc", issuer="https://login.example")
    good = token({"aud": "easyrtc", "iss": "https://login.example"})
    async with jwt_server(hooks, count=3) as (_, (a, b, c)):
        assert (await a.call("easyrtcAuth", login({"token": good})))["msgType"] == "token"
        other_aud = token({"aud": "other", "iss": "https://login.example"})
        assert await refused(b, login({"token": other_aud})) == "LOGIN_BAD_AUTH"
        assert await refused(c, login({"token": token({"aud": "easyrtc"})})) == "LOGIN_BAD_AUTH"


async def test_app_claim_restricts_the_application() -> None:
    bound = token({"app": "chat"})
    async with jwt_server(JwtAuth(SECRET), count=2) as (server, (a, b)):
        reply = await a.call("easyrtcAuth", login({"token": bound}))
        assert reply["msgData"]["application"]["applicationName"] == "chat"
        other = login({"token": bound}, applicationName="admin")
        assert await refused(b, other) == "LOGIN_BAD_AUTH"
        assert "admin" not in server.applications()


async def test_rooms_claim_restricts_rooms_at_login_and_later() -> None:
    lobby_only = token({"rooms": ["lobby", "help"]})
    async with jwt_server(JwtAuth(SECRET), count=3) as (server, (a, b, c)):
        outside = login({"token": lobby_only}, roomJoin=rooms("lobby", "vip"))
        assert await refused(a, outside) == "LOGIN_GEN_FAIL"
        default_room = login({"token": lobby_only})  # no rooms asked: the default room
        assert await refused(b, default_room) == "LOGIN_GEN_FAIL"
        assert "vip" not in server.rooms("default")

        reply = await c.call("easyrtcAuth", login({"token": lobby_only}, roomJoin=rooms("lobby")))
        assert list(reply["msgData"]["roomData"]) == ["lobby"]
        denied = await c.cmd("roomJoin", msgData={"roomJoin": rooms("vip")})
        assert denied["msgData"]["errorCode"] == "MSG_REJECT_BAD_ROOM"
        joined = await c.cmd("roomJoin", msgData={"roomJoin": rooms("help")})
        assert joined["msgData"]["roomData"]["help"]["roomStatus"] == "join"
        assert "vip" not in server.rooms("default")


async def test_rs256_with_a_public_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    hooks = JwtAuth(public_pem, algorithms=["RS256"])
    async with jwt_server(hooks, count=3) as (_, (a, b, c)):
        signed = token(key=private, alg="RS256")
        assert (await a.call("easyrtcAuth", login({"token": signed})))["msgType"] == "token"
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = token(key=other_key, alg="RS256")
        assert await refused(b, login({"token": forged})) == "LOGIN_BAD_AUTH"
        # the classic confusion: HS256 "signed" with the public key as the HMAC secret
        assert await refused(c, login({"token": _hs256(public_pem)})) == "LOGIN_BAD_AUTH"


class MembersOnly(JwtAuth):
    """Composes: JwtAuth's checks first, then its own, through super()."""

    def __init__(self) -> None:
        super().__init__(SECRET)
        self.joins: list[str] = []

    async def authenticate(self, peer: Peer, request: AuthRequest) -> None:
        await super().authenticate(peer, request)
        claims = self.claims(peer)
        if claims is None or claims.get("role") != "member":
            raise EasyRtcError(ErrorCode.LOGIN_BAD_AUTH)

    async def room_join(
        self, peer: Peer, app_name: str, room_name: str, parameter: Any, phase: JoinPhase
    ) -> None:
        await super().room_join(peer, app_name, room_name, parameter, phase)
        self.joins.append(room_name)


async def test_subclass_composes_with_super() -> None:
    hooks = MembersOnly()
    async with jwt_server(hooks, count=3) as (_, (a, b, c)):
        assert await refused(a, login({"token": token(key="x" * 40)})) == "LOGIN_BAD_AUTH"
        assert await refused(b, login({"token": token()})) == "LOGIN_BAD_AUTH"
        member = token({"role": "member", "rooms": ["lobby"]})
        await c.call("easyrtcAuth", login({"token": member}, roomJoin=rooms("lobby")))
        denied = await c.cmd("roomJoin", msgData={"roomJoin": rooms("vip")})
        assert denied["msgData"]["errorCode"] == "MSG_REJECT_BAD_ROOM"
        assert hooks.joins == ["lobby"]


def test_from_options_installs_jwt_only_with_a_secret() -> None:
    assert JwtAuth.from_options(Options()) is None
    hooks = JwtAuth.from_options(Options(jwt_secret=SECRET, jwt_audience="rtc"))
    assert hooks is not None and hooks.audience == "rtc" and hooks.algorithms == ["HS256"]
    assert SECRET not in repr(Options(jwt_secret=SECRET))


def _b64(obj: dict[str, Any]) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hs256(secret: str) -> str:
    signing_input = (
        _b64({"alg": "HS256", "typ": "JWT"})
        + "."
        + _b64({"sub": "alice", "exp": int(time.time()) + 60})
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
