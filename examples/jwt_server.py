"""A JWT-protected EasyRTC server: every login must carry a token signed with the secret.

Run it, then print a token for a user and give it to the browser client::

    JWT_SECRET=... python examples/jwt_server.py              # serves http://localhost:8080/
    JWT_SECRET=... python examples/jwt_server.py --token alice --room lobby

In the page, before connecting: ``easyrtc.setCredential({token: "<the token>"})``. The token's
``username`` becomes the client's username, and its ``rooms`` are the only rooms it may enter.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import jwt
from aiohttp import web

from easyrtc_server.app import create_app
from easyrtc_server.jwtauth import JwtAuth
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer

SECRET = os.environ.get("JWT_SECRET", "example-secret-change-me-0123456789abcdef")
"""HS256 secret shared with whatever issues the tokens (at least 32 bytes)."""


def make_token(
    username: str,
    *,
    secret: str = SECRET,
    rooms: list[str] | None = None,
    app: str | None = None,
    ttl: int = 3600,
) -> str:
    """A token valid for ``ttl`` seconds, as your login service would issue it."""
    claims: dict[str, Any] = {"sub": username, "exp": int(time.time()) + ttl}
    if rooms is not None:
        claims["rooms"] = rooms
    if app is not None:
        claims["app"] = app
    return jwt.encode(claims, secret, algorithm="HS256")


def build_app(options: Options | None = None, *, secret: str = SECRET) -> web.Application:
    """The aiohttp application: EasyRTC with JWT logins, the client files and the demos."""
    return create_app(server=EasyRtcServer(options, hooks=JwtAuth(secret)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", metavar="USER", help="print a test token for USER and exit")
    parser.add_argument("--room", action="append", help="a room the token allows (repeatable)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    if args.token:
        print(make_token(args.token, rooms=args.room))
        return
    web.run_app(build_app(), port=args.port)


if __name__ == "__main__":
    main()
