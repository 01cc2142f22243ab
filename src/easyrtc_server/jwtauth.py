"""Login with a JSON Web Token: ``JwtAuth``, a ``Hooks`` subclass.

The client puts the token in its credential (``easyrtc.setCredential({token: "<jwt>"})``), so the
login's ``credential`` is ``{"token": "<jwt>"}``. The token must be signed with the configured key
and algorithm (HS256 with a shared secret, RS256 with the issuer's PEM public key, ...) and carry
an ``exp`` claim in the future. Its claims then bind the connection:

- ``username`` (or else ``sub``): the username. A client sending none gets this one; a client
  sending another is refused.
- ``app``: the only application it may log into (a client naming none is put there).
- ``rooms``: a list of the only room names it may be in, at login and in later ``roomJoin``.

A bad, forged, expired or missing token, or a claim that does not match, gives ``LOGIN_BAD_AUTH``;
a room outside ``rooms`` gives ``LOGIN_GEN_FAIL`` at login and ``MSG_REJECT_BAD_ROOM`` for a
``roomJoin``. The claims stay in ``peer.data["jwt"]`` (``JwtAuth.claims(peer)``) for later hooks.

Checked once, at login: an open connection is not cut when its token expires afterwards.
Subclass it like any ``Hooks`` and call ``super()`` to keep these checks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, NoReturn

import jwt

from .hooks import Hooks
from .protocol.decisions import AuthRequest, JoinPhase
from .protocol.errors import EasyRtcError, ErrorCode
from .protocol.model import Peer
from .protocol.validation import MISSING

if TYPE_CHECKING:
    from .options import Options

log = logging.getLogger("easyrtc_server")

CLAIMS_KEY: Final = "jwt"
"""Where the verified claims are kept in ``peer.data``."""


class JwtAuth(Hooks):
    """Refuses every login without a valid token; binds username, application and rooms."""

    def __init__(
        self,
        key: str | bytes,
        *,
        algorithms: Iterable[str] = ("HS256",),
        audience: str | Iterable[str] | None = None,
        issuer: str | None = None,
        leeway: float = 0,
        credential_key: str = "token",
    ) -> None:
        """``key``: the HMAC secret, or the PEM public key for RS256/ES256 and the like.

        ``audience`` and ``issuer``, when given, must match the ``aud`` and ``iss`` claims;
        ``leeway`` is the clock skew (seconds) tolerated on ``exp``.
        """
        self.key = key
        self.algorithms = list(algorithms)
        self.audience = audience if audience is None or isinstance(audience, str) else [*audience]
        self.issuer = issuer
        self.leeway = leeway
        self.credential_key = credential_key

    @classmethod
    def from_options(cls, options: Options) -> JwtAuth | None:
        """The hooks the options ask for (``jwt_secret`` & co.), or None when there is no secret."""
        if options.jwt_secret is None:
            return None
        return cls(options.jwt_secret, audience=options.jwt_audience, issuer=options.jwt_issuer)

    @staticmethod
    def claims(peer: Peer) -> dict[str, Any] | None:
        """The verified claims of the socket's last login, if any."""
        claims = peer.data.get(CLAIMS_KEY)
        return claims if isinstance(claims, dict) else None

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; ``jwt.PyJWTError`` for anything else."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self.key,
            algorithms=self.algorithms,
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            options={"require": ["exp"]},
        )
        return claims

    async def authenticate(self, peer: Peer, request: AuthRequest) -> None:
        credential = request.credential
        token = credential.get(self.credential_key) if isinstance(credential, dict) else None
        if not isinstance(token, str):
            _refuse(peer, "no token in credential")
        try:
            claims = self.decode(token)
        except jwt.PyJWTError as exc:
            _refuse(peer, f"bad token ({exc})")

        username = claims.get("username", claims.get("sub"))
        if username is not None:
            if not isinstance(username, str):
                _refuse(peer, "claim 'username' is not a string")
            if request.username is MISSING:
                request.username = username
            elif request.username != username:
                _refuse(peer, f"username {request.username!r} is not the token's")
        app = claims.get("app")
        if app is not None:
            if not isinstance(app, str):
                _refuse(peer, "claim 'app' is not a string")
            if not request.app_name_given:
                request.app_name = app
            elif request.app_name != app:
                _refuse(peer, f"application {request.app_name!r} is not the token's")
        rooms = claims.get("rooms")
        if rooms is not None:
            if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
                _refuse(peer, "claim 'rooms' is not a list of names")
            outside = [name for name in request.rooms if name not in rooms]
            if outside:
                log.info("refused login of %s: rooms %s not in token", peer.easyrtcid, outside)
                raise EasyRtcError(ErrorCode.LOGIN_GEN_FAIL)
        peer.data[CLAIMS_KEY] = claims
        await super().authenticate(peer, request)

    async def room_join(
        self, peer: Peer, app_name: str, room_name: str, room_parameter: Any, phase: JoinPhase
    ) -> None:
        claims = self.claims(peer)
        allowed = claims.get("rooms") if claims is not None else None
        if allowed is not None and room_name not in allowed:
            login = phase is JoinPhase.LOGIN
            raise EasyRtcError(ErrorCode.LOGIN_GEN_FAIL if login else ErrorCode.MSG_REJECT_BAD_ROOM)
        await super().room_join(peer, app_name, room_name, room_parameter, phase)


def _refuse(peer: Peer, why: str) -> NoReturn:
    log.info("refused login of %s: %s", peer.easyrtcid, why)
    raise EasyRtcError(ErrorCode.LOGIN_BAD_AUTH)
