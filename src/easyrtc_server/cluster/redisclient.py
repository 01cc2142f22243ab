"""The one place the cluster makes its Redis client: a plain Redis, or Redis behind Sentinel.

``redis_url`` names either one Redis (``redis://``, ``rediss://``, ``unix://``, as redis-py
reads them) or a Sentinel-monitored master::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/master_name[/db]
    rediss+sentinel://...      (TLS to the master)

The password in the URL is the master's; the sentinels' own is ``redis_sentinel_password`` and
``redis_sentinel_tls_enable`` speaks TLS to them. With Sentinel, redis-py's asyncio client asks
the sentinels for the master's address on every new connection, so after a failover the next
connection goes to the new master. Each connection attempt asks anew (``connect_to`` connects
once per address: redis-py issue 3874, where retries kept dialing the old master); the
cluster's own loops (log reader, writer, inbox, liveness) retry a failed command after a short
delay, which is what carries them over a failover.

Knows URLs and redis-py, nothing of the cluster's keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from redis import Redis as BlockingRedis
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.sentinel import Sentinel as BlockingSentinel

if TYPE_CHECKING:
    from ..options import Options

SENTINEL_SCHEMES: Final = ("redis+sentinel://", "rediss+sentinel://")
SENTINEL_PORT: Final = 26379
SENTINEL_TIMEOUT: Final = 1.0
"""Seconds one question to one sentinel may take before the next sentinel is asked."""
CONNECT_TIMEOUT: Final = 2.0
"""Seconds a connection to a Sentinel-given master may take (a dead host must not hang)."""


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """What a ``redis+sentinel://`` URL says."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Read a ``redis+sentinel://`` URL; ``ValueError`` saying what is wrong (never the
    password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme + "://" not in SENTINEL_SCHEMES:
        raise ValueError("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    auth, at, hosts_and_path = rest.rpartition("@")
    if not at:
        hosts_and_path = rest
    hosts, _, path = hosts_and_path.partition("/")
    username = password = None
    if auth:
        user, colon, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # redis://secret@host: the lone part is the password
            username, password = None, unquote(user)
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            raise ValueError("a Sentinel URL needs host:port[,host:port...] of its sentinels")
        if item.startswith("["):
            host, _, port_text = item[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        if not host or (port_text and not port_text.isdigit()):
            raise ValueError(f"a Sentinel URL's sentinel {item!r} is not host:port")
        port = int(port_text) if port_text else SENTINEL_PORT
        if not 0 < port < 65536:
            raise ValueError(f"a Sentinel URL's sentinel {item!r} has no valid port")
        sentinels.append((host, port))
    parts = [unquote(part) for part in path.split("/") if part]
    if not parts or len(parts) > 2:
        raise ValueError("a Sentinel URL ends with /master_name or /master_name/db")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError("a Sentinel URL's db must be a number")
        db = int(parts[1])
    return SentinelUrl(
        tuple(sentinels), parts[0], db, username, password, scheme.startswith("rediss")
    )


def redis_client(options: Options) -> Redis:
    """The client of ``options.redis_url``: a master found through Sentinel, or one Redis."""
    url = _url(options)
    if not url.startswith(SENTINEL_SCHEMES):
        return Redis.from_url(url)
    spec = parse_sentinel_url(url)
    sentinel = Sentinel(list(spec.sentinels), sentinel_kwargs=_sentinel_kwargs(options))
    client: Redis = sentinel.master_for(spec.master, **_master_kwargs(spec))
    return client


def blocking_redis_client(options: Options, *, timeout: float) -> BlockingRedis:
    """The same Redis for a thread of its own (``heartbeat``): redis-py's blocking client,
    every command bounded by ``timeout`` seconds, so that a Redis that hangs cannot hold it."""
    url = _url(options)
    bounds = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if not url.startswith(SENTINEL_SCHEMES):
        return BlockingRedis.from_url(url, **bounds)
    spec = parse_sentinel_url(url)
    sentinel = BlockingSentinel(list(spec.sentinels), sentinel_kwargs=_sentinel_kwargs(options))
    client: BlockingRedis = sentinel.master_for(spec.master, **{**_master_kwargs(spec), **bounds})
    return client


def _url(options: Options) -> str:
    if options.redis_url is None:
        raise ValueError("a cluster node needs redis_url")
    return options.redis_url


def _sentinel_kwargs(options: Options) -> dict[str, Any]:
    """How to reach the sentinels themselves."""
    kwargs: dict[str, Any] = {
        "socket_timeout": SENTINEL_TIMEOUT,
        "socket_connect_timeout": SENTINEL_TIMEOUT,
    }
    if options.redis_sentinel_password is not None:
        kwargs["password"] = options.redis_sentinel_password
    if options.redis_sentinel_tls_enable:
        kwargs["ssl"] = True
    return kwargs


def _master_kwargs(spec: SentinelUrl) -> dict[str, Any]:
    """How to reach the master the sentinels name."""
    kwargs: dict[str, Any] = {
        "db": spec.db,
        "username": spec.username,
        "password": spec.password,
        "socket_connect_timeout": CONNECT_TIMEOUT,
    }
    if spec.tls:
        kwargs["ssl"] = True
    return kwargs
