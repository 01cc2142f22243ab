"""Run every scenario against the Node reference and against ours; the normalised traces must match.

- `test_reference_self_check`: each scenario twice against the reference. Proves that barriers and
  normalisation make a trace deterministic, so that any difference below is the server's.
- `test_differential`: reference vs. ours (``support.ours.running_server``). Every scenario is a
  strict pass: ours must produce exactly the expected trace.
- `test_differential_cluster`: the same expected traces, from ours run as a cluster of three node
  processes over one redis-server, each scenario's clients spread over the nodes round-robin
  (``cluster_factory``). A cluster is one EasyRTC server: no scenario may tell the difference.
  The barriers wait for what crosses the nodes too (``Trace``'s ``cluster_barrier``: relays
  between nodes, and log entries other nodes appended), so every push lands where it does on
  one server.
- `test_differential_partitioned`: the same over a partitioned cluster (``cluster_state =
  "partitioned"``, issue 23), three nodes, clients round-robin. Its barrier makes two log
  rounds (an empty roomLeave, answered once the node wrote what it acked and read its client's
  rooms' partitions to their end): the first has every node write, the second reads it all.
  Its limitations for now are ``deliberate(..., kind="partitioned")`` below.

Member-list deltas are compared by what they leave a client holding, not push by push: ours
merges the ``roomData`` deltas of one ``room_update_tick`` into one push (README,
Compatibility). ``support.roomview.applied_views`` applies each client's delta pushes as
easyrtc.js does and puts the member lists it then holds (``push roomData (applied)``, the rooms
that changed) before the next thing it observes: an ack, a ``sync`` marker, any other push
(in a cluster too: its barriers wait for the other nodes). Every other event, full lists
included, is compared as it is. Golden traces hold these views.

Servers are shared per option set for the whole module (one event loop per module); each run uses
its own application names, so runs do not see each other. Scenarios marked ``fresh`` (they use the
default application) get servers of their own.

Deliberate differences of ours are declared below: `DELIBERATE` gives the reason, and each such
scenario has either a transform (`TRANSFORMS`), which turns the reference's normalised trace into
what ours must produce, or a golden trace of ours (``golden/NAME.txt``, reviewed against the
reference's), used where the difference cascades through the rest of the scenario (a refused
login that leaves no zombie changes every later room count). A golden scenario also fails when the
reference starts producing the golden trace itself: the difference is gone, so is the exception.
``DIFF_UPDATE_GOLDEN=1`` rewrites the golden traces from ours (then review their diff).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from differential.scenarios import SCENARIOS, Scenario
from easyrtc_server.config import ENV_PREFIX
from easyrtc_server.options import option_name
from easyrtc_server.protocol.errors import ErrorCode, error_text
from support.nodes import running_nodes
from support.ours import running_server
from support.redisserver import RedisServer, running_redis
from support.reference import reference_server
from support.roomview import applied_views
from support.trace import (
    RELAYED_COMMANDS,
    TIME_PLACEHOLDER,
    Event,
    EventTransform,
    Trace,
    diff,
    parse,
    render,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ServerFactory = Callable[[dict[str, Any]], AbstractAsyncContextManager[str]]

SCENARIO_TIMEOUT = 30.0
CLOSE_TIMEOUT = 15.0
# Set DIFF_TRACE_DIR=some/dir to get every rendered trace written there (NAME.KIND.txt).
TRACE_DIR = os.environ.get("DIFF_TRACE_DIR")
GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("DIFF_UPDATE_GOLDEN") == "1"

# ---------------------------------------------------------------------------------------------
# Deliberate differences of ours (filled in by whoever changes ours on purpose)

ALL_OR_NOTHING = (
    "ours checks every requested room before joining any: a refused login or roomJoin joins "
    "nothing and leaves no zombie (the reference keeps rooms joined around the refused one)"
)
NOT_COUNTED_TWICE = "ours never counts a member twice against roomMaxConnection"
CLEARED = "ours sends 'apiField': {} when it is cleared, so peers drop the old value"
RECLAIMED = "ours forgets a client-created room when its last member leaves (reclaim_empty_rooms)"

DELIBERATE: dict[str, str] = {
    "auth_reject_missing_room_after_joining_another": ALL_OR_NOTHING,
    "auth_reject_missing_room_before_existing": ALL_OR_NOTHING,
    "auth_reject_room_full_after_joining_another": ALL_OR_NOTHING,
    "auth_reject_room_full_before_another": ALL_OR_NOTHING,
    "room_join_missing_room_without_autocreate": ALL_OR_NOTHING,
    "max_connection_room_join_full_first": ALL_OR_NOTHING,
    "max_connection_partial_room_join": ALL_OR_NOTHING,
    "reauth_failure_full_room_before_another": NOT_COUNTED_TWICE,
    "max_connection_rejoin_counts_self": NOT_COUNTED_TWICE,
    "reauth_in_full_room": NOT_COUNTED_TWICE,
    "reauth_then_signal": (
        "ours handles every message once after a re-auth (the reference once per auth so far)"
    ),
    "before_auth_refused_with_strict_errors": (
        "with strictErrors ours answers MSG_REJECT_NO_AUTH before login instead of silence"
    ),
    "msg_without_target_refused_with_strict_errors": (
        "with strictErrors ours answers MSG_REJECT_BAD_TYPE to a message for the server that no "
        "hook handles"
    ),
    "msg_to_room_while_entering": (
        "ours acks a room message sent after the token and before the sender's first roomJoin "
        "(it reaches nobody); the reference refuses it with MSG_REJECT_TARGET_ROOM, a dialog"
    ),
    "still_alive": "ours acks stillAlive (kinder to 1.0 clients) instead of MSG_REJECT_BAD_TYPE",
    "api_field_clear": CLEARED,
    "api_field_per_room": CLEARED,
    "room_list_contents": RECLAIMED,
    "disconnect_cleanup": RECLAIMED,
}
"""Scenarios where ours differs on purpose (README, Compatibility); each has a transform below or
a golden trace in ``golden/``."""

TRANSFORMS: dict[str, EventTransform] = {}

KIND_DELIBERATE: dict[tuple[str, str], str] = {}
"""(kind, scenario) -> reason: where one kind of ours (a cluster state) differs on purpose from
what every kind must produce, a limitation documented in the README."""
KIND_TRANSFORMS: dict[tuple[str, str], EventTransform] = {}
"""(kind, scenario) -> an idempotent transform applied to both the expected trace and that
kind's: it maps what that kind may answer there (not always the same: which partitions a node
reads depends on its other clients) and what it must answer to one form, and leaves every
other event alone."""


def deliberate(
    name: str, reason: str, *, kind: str | None = None
) -> Callable[[EventTransform], EventTransform]:
    """Decorator form: ``@deliberate("still_alive", "why")`` on a reference→expected transform;
    with ``kind``, on that kind's transform of both traces (``KIND_TRANSFORMS``)."""

    def register(transform: EventTransform) -> EventTransform:
        if name not in SCENARIOS:
            raise KeyError(f"unknown scenario {name!r}")
        if kind is not None:
            KIND_DELIBERATE[kind, name] = reason
            KIND_TRANSFORMS[kind, name] = transform
            return transform
        DELIBERATE[name] = reason
        TRANSFORMS[name] = transform
        return transform

    return register


# -- building blocks for transforms (they work on normalised events) ---------------------------


def replace_data(
    predicate: Callable[[Event], bool], data: Callable[[Event], Any]
) -> EventTransform:
    """A transform giving the selected events new data."""
    return lambda events: [
        Event(e.kind, e.client, e.event, data(e), e.request) if predicate(e) else e for e in events
    ]


@deliberate("still_alive", DELIBERATE["still_alive"])
def still_alive_acked(events: list[Event]) -> list[Event]:
    """Ours answers ``stillAlive`` with a plain ack instead of MSG_REJECT_BAD_TYPE."""
    return replace_data(
        lambda e: e.kind == "ack" and e.event == "easyrtcCmd" and e.request == "stillAlive",
        lambda e: {"msgType": "ack"},
    )(events)


def _without_empty_client_rooms(data: Any) -> Any:
    rooms = data["msgData"]["roomList"]
    kept = {
        name: room
        for name, room in rooms.items()
        if room.get("numberClients") != 0 or name == "default"
    }
    return {**data, "msgData": {**data["msgData"], "roomList": kept}}


def reclaimed_rooms_unlisted(events: list[Event]) -> list[Event]:
    """Ours forgets client-created rooms once empty: room lists show no empty room but the
    default one (the only room these scenarios keep on purpose)."""
    return replace_data(
        lambda e: e.kind == "ack" and e.request == "getRoomList" and "roomList" in str(e.data),
        lambda e: _without_empty_client_rooms(e.data),
    )(events)


TRANSFORMS["room_list_contents"] = reclaimed_rooms_unlisted


@deliberate(
    "relay_to_disconnected_peer",
    "ours acks a message to a peer that left less than 10 s ago (it reaches nobody); the "
    "reference refuses it with MSG_REJECT_GEN_FAIL, a dialog in networked-aframe's race",
)
def message_to_departed_peer_acked(events: list[Event]) -> list[Event]:
    """The refused ``easyrtcMsg`` to the peer that just left becomes a plain ack."""
    return replace_data(
        lambda e: (
            e.kind == "ack"
            and e.event == "easyrtcMsg"
            and isinstance(e.data, dict)
            and e.data.get("msgType") == "error"
        ),
        lambda e: {"msgType": "ack"},
    )(events)


TRANSFORMS["disconnect_cleanup"] = reclaimed_rooms_unlisted


# -- the partitioned cluster's limitations for now (README, "Partitioned state") ---------------

NO_SHARED_PARTITION = (
    "a partitioned node relays only to an easyrtcid it knows, a member of a room whose "
    "partition it reads: a relay between clients sharing no room may be refused"
)
RELAY_OUTCOME = "<delivered, or refused: no room partition shared>"


def _relayed(event: Event) -> bool:
    """A relay's ack, or a relayed message's push."""
    data = event.data if isinstance(event.data, dict) else {}
    if event.kind == "ack":
        return event.event == "easyrtcMsg" or event.request in RELAYED_COMMANDS
    return event.kind == "push" and (
        event.event == "easyrtcMsg"
        or (event.event == "easyrtcCmd" and data.get("msgType") in RELAYED_COMMANDS)
    )


def relays_between_strangers(events: list[Event]) -> list[Event]:
    """Every relay's ack as ``RELAY_OUTCOME``, every relayed push left out (the scenario's
    relays are all between clients sharing no room)."""
    return [
        Event(e.kind, e.client, e.event, RELAY_OUTCOME, e.request)
        if e.kind == "ack" and _relayed(e)
        else e
        for e in events
        if not (e.kind == "push" and _relayed(e))
    ]


for _name in ("relay_ignores_rooms", "room_leave_member"):
    deliberate(_name, NO_SHARED_PARTITION, kind="partitioned")(relays_between_strangers)


@deliberate(
    "relay_to_disconnected_peer",
    "a partitioned node forgets a member of another node that left the rooms it reads without "
    "a departure (it may only have left those rooms), so a message to a peer that just "
    "disconnected gets MSG_REJECT_GEN_FAIL, as from the reference (the log cluster acks it)",
    kind="partitioned",
)
def message_to_departed_peer_refused(events: list[Event]) -> list[Event]:
    """The ``easyrtcMsg`` to the peer that just left refused with GEN_FAIL, as the reference."""
    refused = {
        "msgData": {
            "errorCode": ErrorCode.MSG_REJECT_GEN_FAIL.value,
            "errorText": error_text(ErrorCode.MSG_REJECT_GEN_FAIL),
        },
        "msgType": "error",
        "serverTime": TIME_PLACEHOLDER,
    }
    return replace_data(
        lambda e: e.kind == "ack" and e.event == "easyrtcMsg" and e.data == {"msgType": "ack"},
        lambda e: refused,
    )(events)


def _update_subjects(event: Event) -> dict[str, set[str]]:
    """{subject id: rooms} of a roomData push made only of updateClient deltas, else {}."""
    data = event.data
    if event.kind != "push" or not isinstance(data, dict) or data.get("msgType") != "roomData":
        return {}
    room_data = (data.get("msgData") or {}).get("roomData")
    if not isinstance(room_data, dict):
        return {}
    subjects: dict[str, set[str]] = {}
    for room, entry in room_data.items():
        delta = entry.get("clientListDelta") if isinstance(entry, dict) else None
        if not isinstance(delta, dict) or set(delta) != {"updateClient"}:
            return {}
        for subject in delta["updateClient"]:
            subjects.setdefault(subject, set()).add(room)
    return subjects


def collapse_repeated_updates(events: list[Event]) -> list[Event]:
    """A newcomer is announced once. Between two ``sync`` markers of one client, an update push
    about one subject is dropped when a later update push about the same subject covers all its
    rooms (the reference's first, per-room round at auth). The later push keeps the dropped
    one's ``apiField`` entries: ours announces the full per-room entry."""
    out: list[Event] = []
    window: list[Event] = []

    def flush() -> None:
        for i, event in enumerate(window):
            subjects = _update_subjects(event)
            cover = next(
                (
                    later
                    for later in window[i + 1 :]
                    if all(
                        rooms <= _update_subjects(later).get(s, set())
                        for s, rooms in subjects.items()
                    )
                ),
                None,
            )
            if not subjects or cover is None:
                out.append(event)
                continue
            later_rooms = cover.data["msgData"]["roomData"]
            for room, entry in event.data["msgData"]["roomData"].items():
                for subject, fields in entry["clientListDelta"]["updateClient"].items():
                    kept = later_rooms[room]["clientListDelta"]["updateClient"][subject]
                    if "apiField" in fields and "apiField" not in kept:
                        kept["apiField"] = fields["apiField"]
        window.clear()

    for event in events:
        if event.kind == "sync" or (window and event.client != window[-1].client):
            flush()
        if event.kind == "sync":
            out.append(event)
        else:
            window.append(event)
    flush()
    return out


UNIVERSAL: list[tuple[str, EventTransform]] = [
    (
        "ours announces a newcomer once, after its token (the reference twice, first before it)",
        collapse_repeated_updates,
    ),
]
"""Deliberate differences that show in every scenario where they apply."""


def expected_from_reference(name: str, events: list[Event]) -> list[Event]:
    events = list(events)
    for _, universal in UNIVERSAL:
        events = universal(events)
    transform = TRANSFORMS.get(name)
    return transform(events) if transform is not None else events


# ---------------------------------------------------------------------------------------------
# Servers and runs


class ServerPool:
    """Servers started on first use, one per (kind, option set), stopped at module end."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._urls: dict[tuple[str, str], str] = {}

    async def url(self, kind: str, factory: ServerFactory, options: Mapping[str, Any]) -> str:
        key = (kind, json.dumps(dict(options), sort_keys=True))
        if key not in self._urls:
            self._urls[key] = await self._stack.enter_async_context(factory(dict(options)))
        return self._urls[key]

    async def aclose(self) -> None:
        await self._stack.aclose()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def servers() -> AsyncIterator[ServerPool]:
    pool = ServerPool()
    try:
        yield pool
    finally:
        await pool.aclose()


# ---------------------------------------------------------------------------------------------
# Ours as a cluster: real node processes sharing one redis-server (module-scoped); a cluster per
# option set, each under its own cluster name, so option sets do not share state.

CLUSTER_NODES = 3
CLUSTER_KINDS = frozenset({"cluster", "partitioned"})
_cluster_ids = itertools.count(1)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def redis_server() -> AsyncIterator[RedisServer]:
    async with running_redis() as server:
        yield server


def node_environment(options: Mapping[str, Any]) -> dict[str, str]:
    """``options`` (either spelling) as the ``EASYRTC_*`` variables a node process reads."""
    env = {}
    for key, value in options.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        env[f"{ENV_PREFIX}{option_name(key).upper()}"] = text
    return env


def cluster_factory(redis_url: str, **cluster_options: Any) -> ServerFactory:
    """Start ``CLUSTER_NODES`` nodes with the options (and ``cluster_options``, e.g. the
    cluster's state); their URLs, space-separated, are the ``url`` a scenario spreads its
    clients over (``scenarios.node_url``)."""

    @asynccontextmanager
    async def running_cluster(options: dict[str, Any]) -> AsyncIterator[str]:
        name = f"diff{next(_cluster_ids)}"
        env = node_environment({**options, **cluster_options})
        async with running_nodes(redis_url, CLUSTER_NODES, cluster=name, env=env) as nodes:
            yield " ".join(node.url for node in nodes)

    return running_cluster


_run_ids = itertools.count(1)


async def run_scenario(
    scenario: Scenario,
    url: str,
    *,
    tolerate: bool = False,
    cluster_barrier: bool = False,
    log_rounds: int = 1,
) -> list[Event]:
    """Run ``scenario`` once against ``url``; its normalised trace. With ``tolerate``, an exception
    inside the scenario is appended to the trace as an ``error`` event instead of raised;
    ``cluster_barrier``: the barriers wait for what crosses a cluster's nodes too (``Trace``)."""
    trace = Trace(f"d{next(_run_ids)}", cluster_barrier=cluster_barrier, log_rounds=log_rounds)
    failure: BaseException | None = None
    try:
        await asyncio.wait_for(scenario.run(url, trace), SCENARIO_TIMEOUT)
    except Exception as exc:
        if not tolerate:
            raise
        failure = exc
    finally:
        await asyncio.wait_for(trace.close(), CLOSE_TIMEOUT)
    events = trace.normalized()
    if failure is not None:
        events.append(Event("error", "(scenario)", "", f"{type(failure).__name__}: {failure}"))
    return events


def dump(name: str, kind: str, lines: list[str]) -> None:
    if TRACE_DIR:
        path = Path(TRACE_DIR)
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{name}.{kind}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


async def run_on(
    servers: ServerPool,
    kind: str,
    factory: ServerFactory,
    scenario: Scenario,
    *,
    tolerate: bool = False,
) -> list[Event]:
    barrier = {
        "cluster_barrier": kind in CLUSTER_KINDS,
        "log_rounds": 2 if kind == "partitioned" else 1,
    }
    if scenario.fresh:
        async with factory(dict(scenario.options)) as url:
            return await run_scenario(scenario, url, tolerate=tolerate, **barrier)
    url = await servers.url(kind, factory, scenario.options)
    return await run_scenario(scenario, url, tolerate=tolerate, **barrier)


# ---------------------------------------------------------------------------------------------
# Tests

NAMES = list(SCENARIOS)


@pytest.mark.parametrize("name", NAMES)
async def test_reference_self_check(name: str, servers: ServerPool) -> None:
    scenario = SCENARIOS[name]
    first = render(await run_on(servers, "reference", reference_server, scenario))
    second = render(await run_on(servers, "reference", reference_server, scenario))
    dump(name, "reference", first)
    if first != second:
        pytest.fail(
            f"{name}: two reference runs differ (non-deterministic trace)\n"
            + diff(first, second, names=("reference run 1", "reference run 2")),
            pytrace=False,
        )


def golden(name: str, ours: list[str]) -> list[str]:
    """The golden trace of scenario ``name`` (rewritten from ``ours`` with DIFF_UPDATE_GOLDEN=1)."""
    path = GOLDEN_DIR / f"{name}.txt"
    if UPDATE_GOLDEN:
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text("\n".join(ours) + "\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("name", NAMES)
async def test_differential(name: str, servers: ServerPool) -> None:
    await compare_with_expected(name, servers, "ours", running_server)


@pytest.mark.parametrize("name", NAMES)
async def test_differential_cluster(
    name: str, servers: ServerPool, redis_server: RedisServer
) -> None:
    """The same scenarios against ours as a cluster of ``CLUSTER_NODES`` node processes, the
    scenario's clients spread over them round-robin: the same trace as the single process."""
    await compare_with_expected(name, servers, "cluster", cluster_factory(redis_server.url))


@pytest.mark.parametrize("name", NAMES)
async def test_differential_partitioned(
    name: str, servers: ServerPool, redis_server: RedisServer
) -> None:
    """The same scenarios against ours as a partitioned cluster (``cluster_state =
    "partitioned"``) of ``CLUSTER_NODES`` node processes, clients round-robin: the same trace
    as the single process, but for the partitioned state's own deliberate differences."""
    factory = cluster_factory(redis_server.url, cluster_state="partitioned")
    await compare_with_expected(name, servers, "partitioned", factory)


async def compare_with_expected(
    name: str, servers: ServerPool, kind: str, factory: ServerFactory
) -> None:
    """Run scenario ``name`` on ours (``kind`` from ``factory``); fail on any difference from
    what ours must produce (the reference's trace, transformed, or the golden trace)."""
    scenario = SCENARIOS[name]
    reference = await run_on(servers, "reference", reference_server, scenario)
    ours = await run_on(servers, kind, factory, scenario, tolerate=True)
    of_kind = KIND_TRANSFORMS.get((kind, name), lambda events: events)
    actual = render(applied_views(of_kind(ours)))
    from_reference = render(applied_views(expected_from_reference(name, reference)))
    if name in DELIBERATE and name not in TRANSFORMS:
        if kind == "ours":
            expected = kept = golden(name, actual)
        else:  # the single process alone writes the golden traces
            kept = (GOLDEN_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
            expected = render(applied_views(of_kind(parse(kept))))
        label = f"golden/{name}.txt"
        if from_reference == kept:
            pytest.fail(
                f"{name}: the reference now produces the golden trace; drop the deliberate "
                "difference and its golden file",
                pytrace=False,
            )
    else:
        expected = render(applied_views(of_kind(expected_from_reference(name, reference))))
        label = "expected (reference" + (", transformed)" if name in TRANSFORMS else ")")
    if (kind, name) in KIND_TRANSFORMS:
        label += f", both as {kind} may answer: {KIND_DELIBERATE[kind, name]}"
    dump(name, "expected", expected)
    dump(name, kind, actual)
    if expected != actual:
        message = f"{name}: {kind} differs from the expected trace\n" + diff(
            expected, actual, names=(label, kind)
        )
        pytest.fail(message, pytrace=False)


async def test_registries_name_real_scenarios() -> None:
    unknown = (set(DELIBERATE) | set(TRANSFORMS)) - set(SCENARIOS)
    assert not unknown, f"DELIBERATE/TRANSFORMS name unknown scenarios: {sorted(unknown)}"
    unknown_of_kind = {name for _, name in KIND_DELIBERATE} - set(SCENARIOS)
    assert not unknown_of_kind, f"KIND_DELIBERATE names unknown scenarios: {unknown_of_kind}"
    assert set(KIND_TRANSFORMS) == set(KIND_DELIBERATE), "one transform per kind's difference"
    undocumented = set(TRANSFORMS) - set(DELIBERATE)
    assert not undocumented, f"TRANSFORMS without a reason in DELIBERATE: {sorted(undocumented)}"
    goldens = {path.stem for path in GOLDEN_DIR.glob("*.txt")}
    assert goldens == set(DELIBERATE) - set(TRANSFORMS), "one golden trace per untransformed case"
