"""Server options: the reference's defaults, validated once at start.

Names are snake_case here; ``Options.from_mapping`` also takes the reference's camelCase names
(``roomMaxConnection``), so option sets written for the Node server carry over. Unknown names and
bad values fail at start with a message that names the key (``OptionsError.key``). Validation
rules (the regexps) live here, together, and nowhere else. A regexp given as text is either a
JavaScript literal, ``"/^[a-z]+$/i"``, or a bare source that gets the reference's ``i`` flag.
Where the values come from (files, environment, flags) is ``config.py``'s business.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from .extras import missing
from .protocol.jsregex import JsRegExp
from .transport.engineio_protocol import ENGINEIO_DEFAULTS, READ_TIMEOUT
from .transport.socketio_protocol import SOCKETIO_DEFAULTS

IceServers = list[dict[str, Any]]

DEFAULT_ICE_SERVERS: IceServers = [
    {"urls": ["stun:stun.l.google.com:19302"]},
    {"urls": ["stun:stun.sipgate.net"]},
    {"urls": ["stun:217.10.68.152"]},
    {"urls": ["stun:stun.sipgate.net:10000"]},
    {"urls": ["stun:217.10.68.152:10000"]},
]

FieldObj = dict[str, dict[str, Any]]
"""``{NAME: {"fieldValue": V, "fieldOption": {"isShared": BOOL}}}``, as the reference takes it."""


class OptionsError(ValueError):
    """An option has an unknown name or a bad value; the message names it.

    ``key`` is the option's snake_case name when the error concerns one option.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _re(source: str, flags: str = "i") -> JsRegExp:
    return JsRegExp(source, flags)


@dataclass(frozen=True, slots=True)
class ProtocolOptions:
    """The EasyRTC rules one application follows. Defaults are the reference server's.

    Each application carries its own (``control.create_app(name, **changes)``); the server's
    ``Options`` give the default application's, and the few that apply before an application
    is chosen (``app_default_name``, ``app_auto_create_enable``, ``api_version_regexp``,
    ``app_name_regexp``, and ``strict_errors`` before login) are read from the server's.
    """

    # Applications and rooms
    app_default_name: str = "default"
    app_auto_create_enable: bool = True
    app_default_field_obj: FieldObj | None = None
    app_ice_servers: IceServers = field(default_factory=lambda: list(DEFAULT_ICE_SERVERS))
    room_default_enable: bool = True
    room_default_name: str = "default"
    room_auto_create_enable: bool = True
    room_default_field_obj: FieldObj | None = None
    room_max_connection: int = 100
    connection_default_field_obj: FieldObj | None = None
    reclaim_empty_rooms: bool = True
    """Forget a room that clients created once its last member leaves (the reference never does)."""

    # Validation of client input
    api_version_regexp: JsRegExp = _re(r"^[a-z0-9_.+-]{1,32}$")
    app_name_regexp: JsRegExp = _re(r"^[a-z0-9_.-]{1,32}$")
    easyrtcid_regexp: JsRegExp = _re(r"^[a-z0-9_.-]{1,32}$")
    easyrtcsid_regexp: JsRegExp = _re(r"^[a-z0-9_.%-]{1,100}$")
    group_name_regexp: JsRegExp = _re(r"^[a-z0-9_.-]{1,32}$")
    field_name_regexp: JsRegExp = _re(r"^[a-z0-9_. -]{1,32}$")
    presence_show_regexp: JsRegExp = _re(r"^(away|chat|dnd|xa)$", "")
    presence_status_regexp: JsRegExp = _re(r"^(.){0,255}$", "")
    room_name_regexp: JsRegExp = _re(r"^[a-z0-9_.-]{1,32}$")
    username_regexp: JsRegExp = _re(r"^(.){1,64}$")
    api_field_max_size: int = 4096
    """setRoomApiField's ``field`` whose JSON text is this long or longer gets BAD_SIZE."""

    # Bounds on what one client can store and create (the reference has none)
    presence_type_max_size: int = 256
    """A presence ``type`` whose JSON text is longer gets BAD_SIZE; it is copied into every
    member list and token, so it must stay small."""
    max_rooms_per_connection: int = 50
    """Rooms one connection may be in at once (0: no limit)."""
    max_rooms_per_join: int = 50
    """Rooms one ``roomJoin`` or login may name (0: no limit)."""
    max_rooms_per_app: int = 10_000
    """Rooms an application may hold; joining beyond it cannot create more (0: no limit)."""

    # How much the server says about what it does not carry out
    strict_errors: bool = False
    """Answer with an EasyRTC error where the reference stays silent: ``MSG_REJECT_NO_AUTH``
    to messages before login, ``MSG_REJECT_BAD_TYPE`` to a message for the server that no hook
    handles, ``MSG_REJECT_TARGET_ROOM`` to a room message sent while its sender is still
    entering (``relay.ENTRY_GRACE_MS``). Off: silence, as the reference, because ``easyrtc.js``
    shows every error it receives in a dialog by default."""

    def __post_init__(self) -> None:
        for name, value in _validated(self):
            object.__setattr__(self, name, value)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Build options from snake_case or the reference's camelCase names."""
        return cls().replace(**values)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (names in either spelling)."""
        names = _names(type(self))
        normalized: dict[str, Any] = {}
        for key, value in changes.items():
            name = option_name(key)
            if name not in names:
                raise OptionsError(f"option {key!r} is the server's, not an application's", key)
            normalized[name] = value
        return dataclasses.replace(self, **normalized)


@dataclass(frozen=True, slots=True)
class Options(ProtocolOptions):
    """Everything that can be configured: the protocol options of the default application, and
    how the server is hosted (listening, client files, transport, TURN, JWT)."""

    # Bounds on the whole server
    max_apps: int = 1_000
    """Applications that may exist at once; logins cannot create more (0: no limit)."""

    # Performance
    room_update_tick: float = 0.005
    """Seconds during which the member-list deltas one socket receives are merged into one push
    (``coalescing.Coalescer.flush``): a join storm costs a push per member per tick, not per
    join. 0 sends each delta at once, as the reference does."""

    # Hosting
    host: str = "0.0.0.0"
    port: int = 8080
    client_dir: Path | None = None
    """Folder holding ``node_modules`` with open-easyrtc and socket.io-client, or an open-easyrtc
    package or ``api`` folder (``node_modules/open-easyrtc-v2`` for the 2.0.x client); found if
    unset."""
    socketio_js: Path | None = None
    """The socket.io browser bundle served at ``/socket.io/socket.io.js`` (a file, or a
    socket.io-client package or ``dist`` folder); if unset, the one ``client_dir`` leads to."""
    api_enable: bool = True
    api_public_folder: str = "/easyrtc"
    demos_enable: bool = True
    demos_public_folder: str = "/demos"
    demos_dir: Path | None = None
    """Folder served at ``demos_public_folder`` instead of the bundled demo pages, e.g.
    ``node_modules/open-easyrtc/demos`` (the reference's own demos, unmodified)."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to use the polling transport from other pages; ``("*",)`` for any."""
    ping_interval: float = ENGINEIO_DEFAULTS.ping_interval
    ping_timeout: float = ENGINEIO_DEFAULTS.ping_timeout
    max_http_buffer_size: int = ENGINEIO_DEFAULTS.max_payload
    log_level: str = "info"
    transport: str = "lean"
    """``lean`` (our Engine.IO 3/4 stack) or ``python-socketio`` (Engine.IO 4 only, slower)."""

    # ICE: time-limited TURN credentials (coturn ``use-auth-secret``; see ``turn.py``)
    turn_urls: tuple[str, ...] = ()
    """TURN URLs (``turn:``/``turns:``) given to every connection with fresh credentials."""
    turn_secret: str | None = field(default=None, repr=False)
    """coturn's ``static-auth-secret``; required when ``turn_urls`` is set."""
    turn_ttl: int = 86400
    """Seconds a TURN credential stays valid."""

    # JWT login (``jwtauth.JwtAuth``, installed by the command line when a secret is set)
    jwt_secret: str | None = field(default=None, repr=False)
    """HS256 secret: every login must carry a token signed with it (``credential.token``)."""
    jwt_audience: str | None = None
    jwt_issuer: str | None = None

    # Connection limits (``limits.py``; 0 turns a limit off) and shutdown (``shutdown.py``)
    login_timeout: float = 5.0
    """Seconds a socket may stay connected without sending its login: then ``LOGIN_TIMEOUT``
    and closed."""
    max_connections: int = 20_000
    """Open sockets in total; more get ``LOGIN_NO_SOCKETS`` and are closed."""
    max_connections_per_address: int = 500
    """Open sockets from one remote address (a NAT'd office shares one); as above."""
    message_rate: float = 100.0
    """Messages per second one socket may send on average (token bucket refill rate)."""
    message_burst: int = 300
    """Messages one socket may send at once (token bucket size); more get
    ``MSG_REJECT_RATE_LIMIT``."""
    message_refusals_before_close: int = 100
    """Rate-limited messages within 10 s after which the socket is closed."""
    shutdown_drain_time: float = 10.0
    """Seconds SIGTERM/SIGINT gives the server to tell every client's peers and close."""

    # Keeping calls up (``hold.py``): a keyed client's connection outlives its socket
    resume_grace: float = 30.0
    """Seconds a connection that gave a resume key is held after its socket dropped without a
    goodbye (still in its rooms, nobody told), waiting for the client to resume it; 0: never."""
    resume_queue_messages: int = 100
    """Messages and signals queued for one held connection; more are refused to their sender."""
    resume_queue_bytes: int = 262_144
    """Bytes (JSON) queued for one held connection; more are refused to their sender."""
    resume_secret: str | None = field(default=None, repr=False)
    """Key (32 bytes or more) signing the resume tokens that let clients take their easyrtcid
    back from a restarted server; unset: a random key per process (no resume across restarts)."""

    # Operations: metrics, health, admin API, webhooks, logs (``operations.py`` and friends)
    metrics_enable: bool = True
    """Serve Prometheus metrics at ``/metrics``."""
    metrics_port: int = 0
    """Serve ``/metrics`` on this port (same host) instead of the signaling port; 0: same port."""
    admin_token: str | None = field(default=None, repr=False)
    """Bearer token of the admin API and dashboard (``/admin/``); unset: both are off."""
    webhook_urls: tuple[str, ...] = ()
    """URLs that receive room and participant events as signed JSON POSTs."""
    webhook_secret: str | None = field(default=None, repr=False)
    """HMAC-SHA256 key signing webhook bodies; required when ``webhook_urls`` is set."""
    webhook_queue_size: int = 1000
    """Events waiting to be sent; when full, new events are dropped (and counted)."""
    webhook_max_attempts: int = 5
    """Tries per event and URL (with exponential backoff) before it is given up."""
    webhook_timeout: float = 5.0
    """Seconds one webhook request may take."""
    log_format: str = "text"
    """``text`` (human) or ``json`` (one object a line)."""
    access_log_enable: bool = False
    """Log every HTTP request, socket.io polls included (one line per poll)."""

    # Transport limits (the lean Engine.IO/Socket.IO stack, ``transport/``)
    max_json_depth: int = SOCKETIO_DEFAULTS.max_json_depth or 0
    """An event nested deeper gets MSG_REJECT_BAD_STRUCTURE (or its socket closed); 0: orjson's
    1024."""
    binary_events_enable: bool = False
    """Accept binary Socket.IO events (EasyRTC never sends them); refused with a close if false."""
    max_send_buffer: int = ENGINEIO_DEFAULTS.max_send_buffer
    """Bytes of backlog (websocket) or queue (polling, 64 bytes counted per packet) after which a
    socket is closed as a slow consumer."""
    max_poll_packets: int = ENGINEIO_DEFAULTS.max_poll_packets
    """Most packets in one long-polling response; 0: no cap (python-engineio clients need 16)."""
    http_read_timeout: float = READ_TIMEOUT
    """Seconds a long-polling POST body may take to arrive."""

    # Cluster (``cluster/``): several processes or machines serve one EasyRTC world over Redis
    redis_url: str | None = field(default=None, repr=False)
    """``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``; a password may be in it), or a
    master behind Sentinel, ``redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]``
    (``rediss+sentinel://`` for TLS to the master), or a Redis Cluster by some of its nodes,
    ``redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT...]`` (``rediss+cluster://`` for TLS;
    the query of either ``rediss+`` URL takes ``redisclient.TLS_QUERY``, e.g. ``?ssl_ca_certs=``):
    this process becomes a node of a cluster.
    Unset: one process, state in memory (the default)."""
    redis_sentinel_password: str | None = field(default=None, repr=False)
    """Password of the sentinels themselves (``requirepass`` in sentinel.conf), if any."""
    redis_sentinel_tls_enable: bool = False
    """Speak TLS to the sentinels."""
    cluster_name: str = "easyrtc"
    """Namespace of the cluster's Redis keys and channels: several clusters can share a Redis."""
    workers: int = 1
    """Processes started on this host serving the same port (``SO_REUSEPORT``) as nodes of one
    cluster; more than 1 needs ``redis_url``."""
    # Cluster state (``cluster/node.py``, ``cluster/snapshot.py``)
    cluster_snapshot_entries: int = 1000
    """Log entries between snapshots of the replicated state; the log is trimmed to the one
    before, so a node that starts loads a snapshot and reads at most twice this many."""
    cluster_log_retention: float = 30.0
    """Seconds of log a snapshot's trim keeps at least (0: trim to the snapshot before, however
    recent): a node that falls behind in a burst (a storm of logins or disconnects) reads on
    instead of missing trimmed entries and rebuilding from the snapshot."""
    cluster_max_entry_size: int = 16384
    """Bytes one client event may take in the cluster's log, once checked and reduced to what
    the protocol reads (room parameters, apiFields, presence): a larger one is refused with
    ``MSG_REJECT_BAD_SIZE`` and never reaches Redis."""
    cluster_max_pending_appends: int = 4096
    """Entries a node may have appended to the cluster's log and not yet applied: beyond, a
    client's new state change is refused at once as busy (``LOGIN_GEN_FAIL`` for a login,
    ``MSG_REJECT_GEN_FAIL`` otherwise) instead of queueing; changes already under way finish."""
    cluster_order_wait: float = 2.0
    """Seconds a relay from another node waits for the log entries that node appended before
    it, and a log entry for the relays its node sent before it (``cluster/ordering.py``):
    then it goes on unordered, counted."""
    cluster_stock_entries: bool = True
    """A login or ``roomJoin`` of a client whose hooks decide as the stock ones is one log
    entry, its decisions answered by every replica (``protocol/stock.py``), while every live
    node reads such entries. Off: this node writes none, and tells the others it reads none
    (so none are written while it lives): turn it off on every node before going back to a
    version before them."""
    cluster_relay: str = "redis"
    """How relays reach other nodes (``cluster/links.py``): ``redis`` (pub/sub) or ``direct``
    (a websocket from node to node, on the internal listener; the lean transport only)."""
    cluster_state: str = "log"
    """Where the cluster keeps its replicated state: ``log`` (one log, every node a full
    replica of everything) or ``partitioned`` (the rooms' state in ``cluster_partitions``
    partition logs, each node reading only the partitions of its own clients' rooms, so a
    node's state work follows its clients, not the cluster's; issue 23, ``docs/cluster.md``).
    The same on every node of a cluster."""
    cluster_partitions: int = 1024
    """Partitions the rooms' state is split into (``cluster_state = "partitioned"``). Fixed
    for a cluster's life: it names the keys (a room's partition is its hash mod N), so every
    node must be started with the same (``cluster/layoutmeta.py`` refuses one that is not).
    1024 because a node reads every partition holding one of its rooms: with 250 rooms it
    reads about 22 % of 1,024 partitions, against 86 % of 128 (``docs/cluster.md``, "What
    interest saves")."""
    cluster_read_groups: int = 16
    """Hash-tag groups the partitions are dealt into (``p mod G``; at most
    ``cluster_partitions`` and 1024): a Redis Cluster spreads the groups over its masters,
    and a node blocks on one ``XREAD`` per group it reads from. Fixed per cluster like
    ``cluster_partitions``; 16 suits 3 to 8 masters."""

    # Cluster request forwarding (``cluster/forwarding.py``): no sticky sessions needed
    cluster_listen: str = "127.0.0.1:0"
    """``HOST:PORT`` of a cluster node's second, internal listener, where the other nodes send
    the Engine.IO requests of its sessions that reached them (port 0: any free port)."""
    cluster_advertise_url: str | None = None
    """``http://HOST:PORT`` the other nodes use to reach ``cluster_listen`` (set it when nodes
    run on several hosts); unset: derived from ``cluster_listen``."""
    cluster_secret: str | None = field(default=None, repr=False)
    """Shared secret of the nodes: a request to the internal listener must prove it (HMAC),
    so only nodes reach it. Set by environment or config file, never on the command line;
    unset: a node makes one up for itself, and ``--workers`` hands one to its workers."""

    # Cluster failures (``cluster/liveness.py``): how fast a dead node or an empty Redis is seen
    cluster_alive_ttl: float = 6.0
    """Seconds a node's alive key outlives its last refresh (refreshed every third of it): a
    node killed without a goodbye is reaped this long after its last refresh."""
    cluster_check_interval: float = 1.0
    """Seconds between a node's checks for dead nodes and for a Redis that came back empty or
    older."""

    @property
    def protocol(self) -> ProtocolOptions:
        """The protocol options alone, as an application carries them."""
        return ProtocolOptions(**{name: getattr(self, name) for name in PROTOCOL_OPTION_NAMES})


OPTION_NAMES: frozenset[str] = frozenset(f.name for f in dataclasses.fields(Options))
PROTOCOL_OPTION_NAMES: frozenset[str] = frozenset(
    f.name for f in dataclasses.fields(ProtocolOptions)
)


def _names(cls: type[ProtocolOptions]) -> frozenset[str]:
    return OPTION_NAMES if issubclass(cls, Options) else PROTOCOL_OPTION_NAMES


SECRET_OPTIONS: frozenset[str] = frozenset(
    (
        "turn_secret",
        "jwt_secret",
        "admin_token",
        "webhook_secret",
        "redis_url",
        "resume_secret",
        "cluster_secret",
        "redis_sentinel_password",
    )
)
"""Options never printed or logged (``redis_url`` may hold a password)."""

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
TRANSPORTS = ("lean", "python-socketio")
LOG_FORMATS = ("text", "json")


def option_name(key: str) -> str:
    """The snake_case name of option ``key`` (either spelling); OptionsError if unknown."""
    name = _snake(key)
    if name not in OPTION_NAMES:
        raise OptionsError(f"unknown option {key!r}", key=key)
    return name


def _snake(name: str) -> str:
    name = name.replace("RegExp", "Regexp")
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


_REGEXP_LITERAL = re.compile(r"/(.*)/([a-z]*)", re.DOTALL)


def parse_regexp(text: str) -> JsRegExp:
    """A regexp option given as text: ``/source/flags`` (a JavaScript literal) or a bare source,
    which gets the reference's usual ``i`` flag."""
    literal = _REGEXP_LITERAL.fullmatch(text)
    if literal is not None:
        return JsRegExp(literal.group(1), literal.group(2))
    return JsRegExp(text, "i")


def _validated(options: ProtocolOptions) -> list[tuple[str, Any]]:
    """Check every option's type and value; return the ones that need converting."""
    converted: list[tuple[str, Any]] = []
    for f in dataclasses.fields(options):
        name, value = f.name, getattr(options, f.name)
        try:
            new = _checked(name, value)
        except OptionsError as exc:
            exc.key = exc.key or name
            raise
        if new is not value:
            converted.append((name, new))
    new_values = dict(converted)
    for name in ("app_default_name", "room_default_name"):
        value = getattr(options, name)
        regexp_name = name.replace("default_name", "name_regexp")
        regexp = new_values.get(regexp_name, getattr(options, regexp_name))
        if not isinstance(value, str) or not regexp.test(value):
            raise OptionsError(f"option {name!r}: {value!r} does not match {regexp}", key=name)
    if not isinstance(options, Options):
        return converted
    if options.webhook_urls and not options.webhook_secret:
        raise OptionsError(
            "option 'webhook_secret' is required when 'webhook_urls' is set", key="webhook_secret"
        )
    if options.turn_urls and not options.turn_secret:
        raise OptionsError(
            "option 'turn_secret' is required when 'turn_urls' is set", key="turn_secret"
        )
    token = options.admin_token
    if isinstance(token, str) and len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise OptionsError(
            f"option 'admin_token' is {len(token)} characters long: it needs at least "
            f"{MIN_ADMIN_TOKEN_LENGTH} (e.g. the output of `openssl rand -hex 32`)",
            key="admin_token",
        )
    if options.cluster_relay == "direct" and options.transport != "lean":
        raise OptionsError(
            "option 'cluster_relay' = 'direct' needs the lean transport (its internal listener "
            "takes the links); with 'python-socketio' relays go through Redis",
            key="cluster_relay",
        )
    if options.cluster_read_groups > options.cluster_partitions:
        raise OptionsError(
            f"option 'cluster_read_groups' ({options.cluster_read_groups}) must be at most "
            f"'cluster_partitions' ({options.cluster_partitions}): each group holds at least "
            "one partition",
            key="cluster_read_groups",
        )
    cluster_secret = options.cluster_secret
    if isinstance(cluster_secret, str) and len(cluster_secret) < MIN_CLUSTER_SECRET_LENGTH:
        raise OptionsError(
            f"option 'cluster_secret' is {len(cluster_secret)} characters long: it needs at "
            f"least {MIN_CLUSTER_SECRET_LENGTH} (e.g. the output of `openssl rand -hex 32`)",
            key="cluster_secret",
        )
    secret = getattr(options, "jwt_secret", None)
    if isinstance(secret, str) and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise OptionsError(
            f"option 'jwt_secret' is {len(secret.encode())} bytes long: an HS256 secret needs "
            f"at least {MIN_JWT_SECRET_BYTES} (e.g. the output of `openssl rand -hex 32`)",
            key="jwt_secret",
        )
    secret = getattr(options, "resume_secret", None)
    if isinstance(secret, str) and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise OptionsError(
            f"option 'resume_secret' is {len(secret.encode())} bytes long: it needs at least "
            f"{MIN_JWT_SECRET_BYTES} (e.g. the output of `openssl rand -hex 32`)",
            key="resume_secret",
        )
    return converted


MIN_JWT_SECRET_BYTES = 32
"""RFC 7518 3.2: an HS256 key must be at least as long as the hash output (256 bits)."""
MIN_ADMIN_TOKEN_LENGTH = 20
"""Characters of ``admin_token`` at least: a bearer token guessed online must not be short."""
MIN_CLUSTER_SECRET_LENGTH = 20
"""Characters of ``cluster_secret`` at least."""

_WHOLE_NUMBERS = frozenset(
    (
        "room_max_connection",
        "api_field_max_size",
        "max_http_buffer_size",
        "presence_type_max_size",
        "max_rooms_per_connection",
        "max_rooms_per_join",
        "max_rooms_per_app",
        "max_apps",
        "webhook_queue_size",
    )
)
_TRANSPORT_WHOLE_NUMBERS = frozenset(("max_json_depth", "max_send_buffer", "max_poll_packets"))
_STRINGS = frozenset(("host", "api_public_folder", "demos_public_folder"))
_OPTIONAL_STRINGS = frozenset(
    (
        "turn_secret",
        "jwt_secret",
        "jwt_audience",
        "jwt_issuer",
        "admin_token",
        "webhook_secret",
        "resume_secret",
        "cluster_secret",
        "redis_sentinel_password",
    )
)


_REDIS_SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
)
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LISTEN = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}")

_LIMIT_COUNTS = frozenset(
    (
        "max_connections",
        "max_connections_per_address",
        "message_burst",
        "message_refusals_before_close",
        "resume_queue_messages",
        "resume_queue_bytes",
    )
)
_LIMIT_SECONDS = frozenset(("login_timeout", "message_rate", "shutdown_drain_time", "resume_grace"))


Check = Callable[[str, Any], Any]
"""One option's check: ``(name, value)`` -> the value (or a converted one), or OptionsError."""


def _whole_number(name: str, value: Any) -> Any:
    if not _is_int(value) or value < 0:
        raise OptionsError(f"option {name!r} must be a whole number >= 0, got {value!r}")
    return value


def _at_least_one(name: str, value: Any) -> Any:
    if not _is_int(value) or value < 1:
        raise OptionsError(f"option {name!r} must be a whole number >= 1, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(name: str, value: Any) -> Any:
    if not _is_number(value) or value < 0:
        raise OptionsError(f"option {name!r} must be a number >= 0, got {value!r}")
    return value


def _positive_seconds(name: str, value: Any) -> Any:
    if not _is_number(value) or value <= 0:
        raise OptionsError(f"option {name!r} must be a number of seconds > 0")
    return value


def _regexp(name: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_regexp(value)
        except ValueError as exc:
            raise OptionsError(f"option {name!r}: {exc}") from None
    if isinstance(value, re.Pattern):
        raise OptionsError(f"option {name!r}: give the JavaScript source as a string")
    if not isinstance(value, JsRegExp):
        raise OptionsError(f"option {name!r} must be a regexp string, got {value!r}")
    return value


def _flag(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise OptionsError(f"option {name!r} must be true or false, got {value!r}")
    return value


def _port(name: str, value: Any) -> Any:
    if not _is_int(value) or not 0 <= value <= 65535:
        raise OptionsError(f"option {name!r} must be a port number (0-65535), got {value!r}")
    return value


def _redis_url(name: str, value: Any) -> Any:
    if value is None:
        return value
    if not isinstance(value, str) or not value.startswith(_REDIS_SCHEMES):
        raise OptionsError(
            "option 'redis_url' must be a redis://, rediss://, unix://, redis+sentinel:// or "
            "redis+cluster:// URL",
            name,
        )
    if (reason := missing("cluster")) is not None:
        raise OptionsError(f"option 'redis_url' (a cluster): {reason}", name)
    if value.startswith(("redis+sentinel://", "rediss+sentinel://")):
        from .cluster.redisclient import parse_sentinel_url  # redis-py only when used

        try:
            parse_sentinel_url(value)
        except ValueError as exc:
            raise OptionsError(f"option 'redis_url': {exc}", name) from None
    if value.startswith(("redis+cluster://", "rediss+cluster://")):
        from .cluster.redisclient import parse_cluster_url

        try:
            parse_cluster_url(value)
        except ValueError as exc:
            raise OptionsError(f"option 'redis_url': {exc}", name) from None
    return value


def _cluster_name(name: str, value: Any) -> Any:
    if not isinstance(value, str) or not _CLUSTER_NAME.fullmatch(value):
        raise OptionsError(
            "option 'cluster_name' must be 1-64 letters, digits, '_', '.' or '-'", name
        )
    return value


def _workers(name: str, value: Any) -> Any:
    if not _is_int(value) or not 1 <= value <= 256:
        raise OptionsError(f"option 'workers' must be a whole number from 1 to 256, got {value!r}")
    return value


def _listen(name: str, value: Any) -> Any:
    if (
        not isinstance(value, str)
        or not _LISTEN.fullmatch(value)
        or int(value.rsplit(":", 1)[1]) > 65535
    ):
        raise OptionsError(f"option 'cluster_listen' must be HOST:PORT, got {value!r}", name)
    return value


def _advertise_url(name: str, value: Any) -> Any:
    if value is not None and (
        not isinstance(value, str) or not value.startswith(("http://", "https://"))
    ):
        raise OptionsError("option 'cluster_advertise_url' must be an http:// URL", name)
    return value


def _log_format(name: str, value: Any) -> Any:
    if value not in LOG_FORMATS:
        raise OptionsError(f"option 'log_format' must be one of {', '.join(LOG_FORMATS)}")
    return value


def _turn_ttl(name: str, value: Any) -> Any:
    if not _is_int(value) or value <= 0:
        raise OptionsError(
            f"option 'turn_ttl' must be a whole number of seconds > 0, got {value!r}"
        )
    return value


def _field_obj(name: str, value: Any) -> Any:
    if value is not None:
        _check_field_obj(name, value)
    return value


def _ice_servers(name: str, value: Any) -> Any:
    _check_ice_servers(value)
    return value


def _path(name: str, value: Any) -> Any:
    if value is None or isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise OptionsError(f"option {name!r} must be a path, got {value!r}")
    return Path(value) if value else None


def _tick(name: str, value: Any) -> Any:
    if not _is_number(value) or not 0 <= value <= 1:
        raise OptionsError(f"option {name!r} must be a number of seconds from 0 to 1")
    return float(value)


def _cluster_seconds(name: str, value: Any) -> Any:
    if not _is_number(value) or not 0 < value <= 600:
        raise OptionsError(f"option {name!r} must be a number of seconds > 0 and <= 600")
    return float(value)


def _log_retention(name: str, value: Any) -> Any:
    if not _is_number(value) or not 0 <= value <= 3600:
        raise OptionsError(f"option {name!r} must be a number of seconds >= 0 and <= 3600")
    return float(value)


def _one_of(choices: tuple[str, ...]) -> Callable[[str, Any], Any]:
    """A check that the option is one of ``choices``."""

    def check(name: str, value: Any) -> Any:
        if value not in choices:
            raise OptionsError(
                f"option {name!r} must be one of {', '.join(choices)}, got {value!r}", name
            )
        return value

    return check


CLUSTER_RELAYS = ("redis", "direct")


CLUSTER_STATES = ("log", "partitioned")
"""``log``: one log, every node a full replica; ``partitioned``: partition logs (issue 23)."""


def _cluster_partitions(name: str, value: Any) -> Any:
    if not _is_int(value) or not 1 <= value <= MAX_CLUSTER_PARTITIONS:
        raise OptionsError(
            f"option 'cluster_partitions' must be a whole number from 1 to "
            f"{MAX_CLUSTER_PARTITIONS}, got {value!r}",
            name,
        )
    return value


def _cluster_read_groups(name: str, value: Any) -> Any:
    if not _is_int(value) or not 1 <= value <= MAX_CLUSTER_READ_GROUPS:
        raise OptionsError(
            f"option 'cluster_read_groups' must be a whole number from 1 to "
            f"{MAX_CLUSTER_READ_GROUPS} (and at most 'cluster_partitions'), got {value!r}",
            name,
        )
    return value


MAX_CLUSTER_PARTITIONS = 65_536
"""Partitions at most: a node keeps a cursor per partition it reads, and names them once."""
MAX_CLUSTER_READ_GROUPS = 1024
"""Read groups at most: a node reading everything blocks on one connection per group."""


def _transport(name: str, value: Any) -> Any:
    if value not in TRANSPORTS:
        raise OptionsError(f"option 'transport' must be one of {', '.join(TRANSPORTS)}", name)
    if value == "python-socketio" and (reason := missing("python-socketio")) is not None:
        raise OptionsError(f"option 'transport': {reason}", name)
    return value


def _log_level(name: str, value: Any) -> Any:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise OptionsError(f"option 'log_level' must be one of {', '.join(LOG_LEVELS)}")
    return value.lower() if value != value.lower() else value


def _string(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        raise OptionsError(f"option {name!r} must be a string, got {value!r}")
    return value


def _optional_string(name: str, value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not value):
        raise OptionsError(f"option {name!r} must be a non-empty string")
    return value


def _unchecked(name: str, value: Any) -> Any:
    return value


def _table() -> dict[str, Check]:
    """Each option's check. Earlier rows win, so a limit named ``*_enable`` stays a limit."""
    rows: list[tuple[Iterable[str], Check]] = [
        (_LIMIT_COUNTS, _whole_number),
        (_LIMIT_SECONDS, _seconds),
        ((n for n in OPTION_NAMES if n.endswith("_regexp")), _regexp),
        ((n for n in OPTION_NAMES if n.endswith("_enable")), _flag),
        (("reclaim_empty_rooms", "cluster_stock_entries"), _flag),
        (_TRANSPORT_WHOLE_NUMBERS, _whole_number),
        (("http_read_timeout",), _positive_seconds),
        (_WHOLE_NUMBERS, _whole_number),
        (("port", "metrics_port"), _port),
        (("redis_url",), _redis_url),
        (("cluster_name",), _cluster_name),
        (("workers",), _workers),
        (("cluster_listen",), _listen),
        (("cluster_advertise_url",), _advertise_url),
        (
            (
                "webhook_max_attempts",
                "cluster_snapshot_entries",
                "cluster_max_entry_size",
                "cluster_max_pending_appends",
            ),
            _at_least_one,
        ),
        (("log_format",), _log_format),
        (("turn_ttl",), _turn_ttl),
        ((n for n in OPTION_NAMES if n.endswith("_field_obj")), _field_obj),
        (("app_ice_servers",), _ice_servers),
        (("cors_origins", "turn_urls", "webhook_urls"), _strings),
        (("client_dir", "socketio_js", "demos_dir"), _path),
        (("room_update_tick",), _tick),
        (("cluster_alive_ttl", "cluster_check_interval", "cluster_order_wait"), _cluster_seconds),
        (("ping_interval", "ping_timeout", "webhook_timeout"), _positive_seconds),
        (("transport",), _transport),
        (("cluster_relay",), _one_of(CLUSTER_RELAYS)),
        (("cluster_state",), _one_of(CLUSTER_STATES)),
        (("cluster_partitions",), _cluster_partitions),
        (("cluster_read_groups",), _cluster_read_groups),
        (("cluster_log_retention",), _log_retention),
        (("log_level",), _log_level),
        (_STRINGS, _string),
        (_OPTIONAL_STRINGS, _optional_string),
    ]
    table: dict[str, Check] = {}
    for names, check in rows:
        for name in names:
            table.setdefault(name, check)
    return table


def _checked(name: str, value: Any) -> Any:
    """``value`` if it is right for option ``name``, a converted value, or OptionsError."""
    return CHECKS.get(name, _unchecked)(name, value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(name: str, value: Any) -> tuple[str, ...]:
    """A list option: a sequence of strings, or one comma-separated string."""
    if isinstance(value, str):
        items: tuple[Any, ...] = tuple(item.strip() for item in value.split(",") if item.strip())
    elif isinstance(value, list | tuple):
        items = tuple(value)
    else:
        raise OptionsError(f"option {name!r} must be a list of strings, got {value!r}")
    if not all(isinstance(item, str) and item for item in items):
        raise OptionsError(f"option {name!r} must be a list of strings, got {value!r}")
    if name == "turn_urls":
        for url in items:
            if not url.startswith(("turn:", "turns:")):
                raise OptionsError(f"option 'turn_urls': {url!r} is not a turn: or turns: URL")
    if name == "webhook_urls":
        for url in items:
            if not url.startswith(("http://", "https://")):
                raise OptionsError(f"option 'webhook_urls': {url!r} is not an http(s) URL")
    return items


def _check_field_obj(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise OptionsError(f"option {name!r} must map field names to {{'fieldValue': ...}}")
    for key, spec in value.items():
        if not isinstance(spec, dict) or "fieldValue" not in spec:
            raise OptionsError(f"option {name!r}: field {key!r} needs a 'fieldValue'")
        option = spec.get("fieldOption", {})
        if not isinstance(option, dict):
            raise OptionsError(f"option {name!r}: field {key!r} has a bad 'fieldOption'")


def _check_ice_servers(value: Any) -> None:
    if not isinstance(value, list):
        raise OptionsError("option 'app_ice_servers' must be a list of RTCIceServer objects")
    for server in value:
        urls = server.get("urls", server.get("url")) if isinstance(server, dict) else None
        if not (isinstance(urls, str) or (isinstance(urls, list) and urls)):
            raise OptionsError(f"option 'app_ice_servers': {server!r} has no 'urls'")


CHECKS: dict[str, Check] = _table()
"""Option name -> its check (an option with no row takes any value)."""
