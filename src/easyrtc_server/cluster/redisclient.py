"""The one place the cluster makes its Redis clients: one Redis, a master behind Sentinel, or a
Redis Cluster.

``redis_url`` names either one Redis (``redis://``, ``rediss://``, ``unix://``, as redis-py
reads them), a Sentinel-monitored master::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/master_name[/db]
    rediss+sentinel://...      (TLS to the master)

or a Redis Cluster, by some of its nodes (the client learns the others from them)::

    redis+cluster://[[user]:password@]host:port[,host:port...]
    rediss+cluster://...       (TLS to every node)

With TLS, both take what redis-py takes in a ``rediss://`` URL's query to check the server and
to show a client certificate (``TLS_QUERY``): ``?ssl_ca_certs=/etc/redis/ca.crt``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` (``required``, the default, ``optional``,
``none``), ``ssl_check_hostname``. Anything else in the query is refused (a mistyped name would
otherwise be ignored, and the server's certificate checked against the system's authorities).

The password in the URL is the master's; the sentinels' own is ``redis_sentinel_password`` and
``redis_sentinel_tls_enable`` speaks TLS to them. With Sentinel, redis-py's asyncio client asks
the sentinels for the master's address on every new connection, so after a failover the next
connection goes to the new master. Each connection attempt asks anew (``connect_to`` connects
once per address: redis-py issue 3874, where retries kept dialing the old master); the
cluster's own loops (log reader, writer, inbox, liveness) retry a failed command after a short
delay, which is what carries them over a failover. On a Redis Cluster redis-py follows
``MOVED`` and refreshes its slot map when a node fails, and the same loops retry.

The log reader alone has a client of its own on a Redis Cluster (``reader_client``): redis-py's
cluster client retries a read that failed with its master on the replica that took over, and
the reader would never hear that the entries it applied last may have died with that master
(``liveness``: ``Liveness.unsure``). Its slot map is its own, changed only by its own reads,
so the reader knows exactly when the server it reads from changed (``reader_server``). (A
client without retries is not enough, nor needed: redis-py replaces a dead node it asks for
the keys of an ``XREAD`` only in its retries, and another task's refresh of a shared slot map
would move the reader's next read unseen.)

What differs between them is a ``Topology``, chosen here once from the URL: it makes the
clients, says whether the keys carry hash tags (``keys``) and how inboxes are published and
subscribed (``channels``). Nothing else in the cluster asks which Redis it runs on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias
from urllib.parse import parse_qsl, unquote

from redis import Redis as BlockingRedis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.cluster import ClusterNode as BlockingClusterNode
from redis.cluster import RedisCluster as BlockingRedisCluster
from redis.sentinel import Sentinel as BlockingSentinel

from .channels import CLIENT_ERRORS, Channels, PlainChannels, ShardedChannels

if TYPE_CHECKING:
    from ..options import Options
    from .partitionlog import PartitionLayout, PartitionSource

SENTINEL_SCHEMES: Final = ("redis+sentinel://", "rediss+sentinel://")
CLUSTER_SCHEMES: Final = ("redis+cluster://", "rediss+cluster://")
SENTINEL_PORT: Final = 26379
REDIS_PORT: Final = 6379
TLS_QUERY: Final = (
    "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"
)  # fmt: skip
"""What the query of a ``rediss+sentinel://`` or ``rediss+cluster://`` URL may say (redis-py's
names, as in a ``rediss://`` URL): the authority that signed the servers' certificates, this
node's own certificate and key, whether and how the server's is checked."""
CERT_REQS: Final = ("none", "optional", "required")
TRUTH: Final = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
SENTINEL_TIMEOUT: Final = 1.0
SCAN_COUNT: Final = 1000
"""Keys a ``SCAN`` step looks at (``keys_like``): Redis's default, 10, took a round trip per
ten keys of the whole keyspace (partition logs, other applications' keys)."""
"""Seconds one question to one sentinel may take before the next sentinel is asked."""
CONNECT_TIMEOUT: Final = 2.0
"""Seconds a connection to a Sentinel-given master or a cluster node may take (a dead host
must not hang)."""

REDIS_ERRORS: Final = CLIENT_ERRORS
"""What a command fails with while Redis is away: redis-py's cluster client raises
``RedisClusterException`` (not a ``RedisError``) when no node can say where a slot is."""

AsyncClient: TypeAlias = Redis | RedisCluster
BlockingClient: TypeAlias = BlockingRedis | BlockingRedisCluster


def text(raw: bytes | str | Any) -> str:
    """A reply as text: redis-py answers bytes unless ``decode_responses`` (lone surrogates a
    name was written with come back as they were)."""
    return raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else str(raw)


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """What a ``redis+sentinel://`` URL says."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_options: tuple[tuple[str, str], ...] = ()
    """``TLS_QUERY`` names and values from the URL's query."""


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """What a ``redis+cluster://`` URL says."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_options: tuple[tuple[str, str], ...] = ()
    """``TLS_QUERY`` names and values from the URL's query."""


def _auth_and_hosts(
    rest: str, kind: str, what: str, default_port: int
) -> tuple[str | None, str | None, tuple[tuple[str, int], ...], str]:
    """User, password, ``host:port`` list of its ``what``s and the path of what follows the
    scheme of a ``kind`` of URL; ``ValueError`` saying what is wrong (never the password)."""
    rest = rest.split("#", 1)[0].split("?", 1)[0]
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
    found: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"{kind} needs host:port[,host:port...] of its {what}s")
        if item.startswith("["):
            host, _, port_text = item[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        if not host or (port_text and not port_text.isdigit()):
            raise ValueError(f"{kind}'s {what} {item!r} is not host:port")
        port = int(port_text) if port_text else default_port
        if not 0 < port < 65536:
            raise ValueError(f"{kind}'s {what} {item!r} has no valid port")
        found.append((host, port))
    return username, password, tuple(found), path


def _tls_options(url: str, kind: str, tls: bool) -> tuple[tuple[str, str], ...]:
    """The ``TLS_QUERY`` settings of ``url``'s query; ``ValueError`` for anything else (naming
    the setting, never a value)."""
    query = url.split("#", 1)[0].partition("?")[2]
    found: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in TLS_QUERY:
            raise ValueError(f"{kind} takes no {name!r} in its query (only {', '.join(TLS_QUERY)})")
        if not tls:
            raise ValueError(f"{kind}'s {name} needs TLS (rediss+...)")
        if name == "ssl_cert_reqs" and value not in CERT_REQS:
            raise ValueError(f"{kind}'s ssl_cert_reqs is one of {', '.join(CERT_REQS)}")
        if name == "ssl_check_hostname" and value.lower() not in TRUTH:
            raise ValueError(f"{kind}'s ssl_check_hostname is true or false")
        if not value:
            raise ValueError(f"{kind}'s {name} is empty")
        found.append((name, value))
    return tuple(found)


def _tls_kwargs(tls: bool, options: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """redis-py's keyword arguments for TLS as a URL asks it."""
    if not tls:
        return {}
    kwargs: dict[str, Any] = {"ssl": True}
    for name, value in options:
        kwargs[name] = TRUTH[value.lower()] if name == "ssl_check_hostname" else value
    return kwargs


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Read a ``redis+sentinel://`` URL; ``ValueError`` saying what is wrong (never the
    password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme + "://" not in SENTINEL_SCHEMES:
        raise ValueError("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    username, password, sentinels, path = _auth_and_hosts(
        rest, "a Sentinel URL", "sentinel", SENTINEL_PORT
    )
    parts = [unquote(part) for part in path.split("/") if part]
    if not parts or len(parts) > 2:
        raise ValueError("a Sentinel URL ends with /master_name or /master_name/db")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError("a Sentinel URL's db must be a number")
        db = int(parts[1])
    tls = scheme.startswith("rediss")
    tls_options = _tls_options(url, "a Sentinel URL", tls)
    return SentinelUrl(sentinels, parts[0], db, username, password, tls, tls_options)


def parse_cluster_url(url: str) -> ClusterUrl:
    """Read a ``redis+cluster://`` URL; ``ValueError`` saying what is wrong (never the
    password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme + "://" not in CLUSTER_SCHEMES:
        raise ValueError("a Redis Cluster URL starts with redis+cluster:// or rediss+cluster://")
    username, password, nodes, path = _auth_and_hosts(
        rest, "a Redis Cluster URL", "node", REDIS_PORT
    )
    if path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster URL names no database (a Redis Cluster has only db 0)")
    tls = scheme.startswith("rediss")
    return ClusterUrl(nodes, username, password, tls, _tls_options(url, "a Redis Cluster URL", tls))


class Topology(Protocol):
    """The Redis a cluster runs on, as far as the cluster's code differs by it."""

    hash_tags: bool
    """Whether the keys carry hash tags (``keys.ClusterKeys``)."""

    def client(self) -> AsyncClient:
        """The node's asyncio client (made once; every call returns it)."""
        ...

    def channels(self) -> Channels:
        """How inboxes are published and subscribed on ``client``."""
        ...

    def blocking_client(self, *, timeout: float) -> BlockingClient:
        """The same Redis for a thread of its own (``heartbeat``): redis-py's blocking client,
        every command bounded by ``timeout`` seconds, so that a Redis that hangs cannot hold
        it."""
        ...

    def keys_like(self, pattern: str) -> AsyncIterator[Any]:
        """The keys matching ``pattern``, whose hash tag (if any) names their slot: ``SCAN``
        on one Redis; on a Redis Cluster only on the master serving that slot, so that a
        master down elsewhere does not fail it (``registry.alive_nodes``)."""
        ...

    def reader_client(self) -> AsyncClient:
        """The log reader's client (made once): what it reads comes from the server
        ``reader_server`` names, or its read fails."""
        ...

    def partition_source(self, layout: PartitionLayout) -> PartitionSource:
        """How a partitioned node reads its partitions (made once per node): from what their
        appends publish where pub/sub reaches every node cheaply, else blocked on streams."""
        ...

    def reader_server(self, key: str) -> str | None:
        """The server ``reader_client`` sends commands on ``key`` to now, by its own slot map
        (no round trip); None where that never changes but through a failed read (one Redis,
        Sentinel's master: a new one is a new connection, after an error), or not known yet."""
        ...

    def reader_route(self, key: str) -> dict[str, Any]:
        """What a command of ``reader_client`` on ``key`` is sent with to go straight to the
        server of its slot (``target_nodes`` on a Redis Cluster: an ``XREAD``'s keys are
        otherwise asked of one node with ``COMMAND GETKEYS``, and while that node is down
        for good every read failed)."""
        ...

    async def drop_idle(self) -> None:
        """Close the idle pooled connections (each would fail once after Redis restarted)."""
        ...

    async def aclose(self) -> None:
        """Close every client made here (not the blocking ones: their thread closes them)."""
        ...


def topology_of(options: Options) -> Topology:
    """The topology ``options.redis_url`` names."""
    url = _url(options)
    if url.startswith(CLUSTER_SCHEMES):
        return ClusterTopology(parse_cluster_url(url))
    return SingleTopology(options)


class SingleTopology:
    """One Redis, or the master Sentinel names: untagged keys, plain pub/sub."""

    hash_tags = False

    def __init__(self, options: Options) -> None:
        self.options = options
        self._client = redis_client(options)

    def client(self) -> Redis:
        return self._client

    def channels(self) -> Channels:
        return PlainChannels(self._client)

    def blocking_client(self, *, timeout: float) -> BlockingRedis:
        return blocking_redis_client(self.options, timeout=timeout)

    def keys_like(self, pattern: str) -> AsyncIterator[Any]:
        return self._client.scan_iter(match=pattern, count=SCAN_COUNT)

    def reader_client(self) -> Redis:
        """The node's client: its connections do not retry a failed command (redis-py's
        default for a client made from a URL or by Sentinel), so a read from a new master
        follows a failed one."""
        return self._client

    def partition_source(self, layout: PartitionLayout) -> PartitionSource:
        from .partitionfeed import PartitionFeed  # it needs this module: imported when used

        return PartitionFeed(self._client, layout)

    def reader_server(self, key: str) -> str | None:
        return None

    def reader_route(self, key: str) -> dict[str, Any]:
        return {}

    async def drop_idle(self) -> None:
        await self._client.connection_pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        await self._client.aclose()


class ClusterTopology:
    """A Redis Cluster: keys tagged into one slot, inboxes over sharded pub/sub."""

    hash_tags = True

    def __init__(self, spec: ClusterUrl) -> None:
        self.spec = spec
        self._client = self._new_client()
        self._reader = self._new_client()

    def _new_client(self) -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.spec.nodes],
            **self._node_kwargs(),
        )

    def _node_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "username": self.spec.username,
            "password": self.spec.password,
            "socket_connect_timeout": CONNECT_TIMEOUT,
        }
        kwargs.update(_tls_kwargs(self.spec.tls, self.spec.tls_options))
        return kwargs

    def client(self) -> RedisCluster:
        return self._client

    def channels(self) -> Channels:
        return ShardedChannels(self._client, self._node_kwargs())

    def blocking_client(self, *, timeout: float) -> BlockingRedisCluster:
        """Connects when made: raises while no node answers (the caller retries)."""
        return BlockingRedisCluster(
            startup_nodes=[
                BlockingClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in self.spec.nodes
            ],
            **{**self._node_kwargs(), "socket_timeout": timeout, "socket_connect_timeout": timeout},
        )

    async def keys_like(self, pattern: str) -> AsyncIterator[Any]:
        """Only the master serving the pattern's slot (as the client's slot map says: one that
        moved meanwhile is found with fewer keys, never more)."""
        client = self._client
        node = client.get_node_from_key(pattern)
        async for key in client.scan_iter(match=pattern, count=SCAN_COUNT, target_nodes=node):
            yield key

    def reader_client(self) -> RedisCluster:
        """A client of its own, the one that reads ``keys.log``: its slot map changes only
        with its reads."""
        return self._reader

    def partition_source(self, layout: PartitionLayout) -> PartitionSource:
        """Blocked on streams: plain ``PUBLISH`` crosses the bus to every node of a Redis
        Cluster. Sharded pub/sub would not, with a subscription per read group following its
        slot as an inbox's does (``channels.ShardSubscription``): not built yet."""
        from .partitionlog import PartitionReader  # it needs this module: imported when used

        return PartitionReader(self._reader, layout)

    def reader_server(self, key: str) -> str | None:
        node = self._reader_node(key)
        return None if node is None else node.name

    def reader_route(self, key: str) -> dict[str, Any]:
        node = self._reader_node(key)
        return {} if node is None else {"target_nodes": node}

    def _reader_node(self, key: str) -> ClusterNode | None:
        try:
            return self._reader.get_node_from_key(key)
        except REDIS_ERRORS:  # no slot map yet (or none covers it)
            return None

    async def drop_idle(self) -> None:
        for client in (self._client, self._reader):
            for node in client.get_nodes():
                await node.disconnect_free_connections()

    async def aclose(self) -> None:
        await self._reader.aclose()
        await self._client.aclose()


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
    """The blocking client of one Redis or of Sentinel's master (``Topology.blocking_client``)."""
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
    kwargs.update(_tls_kwargs(spec.tls, spec.tls_options))
    return kwargs
