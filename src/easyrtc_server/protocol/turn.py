"""Time-limited TURN credentials, as coturn checks them with ``use-auth-secret``.

The "TURN REST API" scheme (draft-uberti-behave-turn-rest): the server and the TURN server share
a secret (coturn's ``static-auth-secret``); a credential is valid until the expiry written in its
own username, ``"{expiry_unix_seconds}:{user}"``, and its password is
``base64(HMAC-SHA1(secret, username))``. The TURN server needs no database and no call back here.

Owns the credential arithmetic only. ``ice.ice_servers`` adds such an entry for every connection
when ``Options.turn_urls`` is set; custom ``Hooks.ice_servers`` can call ``turn_server`` itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

DEFAULT_TTL: Final = 86400
"""One day, coturn's own suggestion."""

clock: Callable[[], float] = time.time
"""Where "now" comes from when not given (tests replace it)."""


def turn_credentials(
    secret: str, user: str, ttl: int = DEFAULT_TTL, now: float | None = None
) -> tuple[str, str]:
    """``(username, credential)`` valid for ``ttl`` seconds from ``now`` (default: the clock)."""
    expiry = int(clock() if now is None else now) + ttl
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def turn_server(
    urls: Iterable[str],
    secret: str,
    user: str,
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
) -> dict[str, Any]:
    """One ``RTCIceServer`` entry for ``urls`` with fresh credentials for ``user``."""
    username, credential = turn_credentials(secret, user, ttl, now)
    return {"urls": list(urls), "username": username, "credential": credential}
