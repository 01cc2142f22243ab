"""The nodes' shared secret, and the proof of it a node's request to another carries.

Only nodes may use a node's internal listener (``forwarding``): every request there carries
``NODE_AUTH`` = ``t=<unix seconds>,n=<node id>,sig=<hex>``, where ``sig`` is HMAC-SHA256 under
the cluster secret of ``t``, the node id, the method and the request target, one per line. The
listener accepts it within ``MAX_SKEW`` seconds of its own clock.

The secret is ``cluster_secret`` when set (environment or config file, never the command line);
otherwise it is derived from ``redis_url`` and ``cluster_name``, which every node of a cluster
has alike: as secret as the Redis password in the URL, and no weaker than Redis itself when it
has none (whoever reaches Redis can change the cluster's state anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ..options import Options

NODE_AUTH: Final = "X-EasyRTC-Node-Auth"
MAX_SKEW: Final = 60
"""Seconds a signed request stays valid (clocks of the hosts may differ this much)."""


def secret_of(options: Options) -> bytes:
    """The key nodes sign their requests to each other with."""
    if options.cluster_secret:
        return options.cluster_secret.encode()
    base = f"{options.redis_url}\n{options.cluster_name}".encode()
    return hmac.new(b"easyrtc-server cluster secret", base, hashlib.sha256).digest()


def _sig(secret: bytes, t: int, node: str, method: str, target: str) -> str:
    message = f"{t}\n{node}\n{method}\n{target}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, node: str, method: str, target: str, now: float | None = None) -> str:
    """The ``NODE_AUTH`` header value for a request of ``node`` to ``target`` (path and query)."""
    t = int(time.time() if now is None else now)
    return f"t={t},n={node},sig={_sig(secret, t, node, method, target)}"


def verify(
    secret: bytes, header: str, method: str, target: str, now: float | None = None
) -> str | None:
    """The signing node's id if ``header`` proves the secret for this request, else None."""
    parts = dict(part.partition("=")[::2] for part in header.split(","))
    t_text, node, sig = parts.get("t", ""), parts.get("n", ""), parts.get("sig", "")
    if not t_text.isdigit() or len(t_text) > 12 or not node or not sig:
        return None
    t = int(t_text)
    if abs((time.time() if now is None else now) - t) > MAX_SKEW:
        return None
    if not hmac.compare_digest(_sig(secret, t, node, method, target), sig):
        return None
    return node
