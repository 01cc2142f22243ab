"""A node that knows another node's members only as stubs tells its clients what a full
replica tells them (issue 23, ``cluster/stubs.py``).

Two nodes A and B of one cluster; Hypothesis draws what their clients do (log in into rooms,
join, leave, setPresence, setRoomApiField, disconnect) and server code's room fields. Path 1 is
today's cluster: one log of core inputs, applied by a full replica on each node. Path 2 is the
partitioned design: B's core takes its own clients' events as one process does, and knows A's
members only from the room facts A appends (``join``/``update``/``leave``, each member's entry
read from A's core after each of A's actions; a join through ``RoomRequest``), decided by the
``Partition`` of each room and applied by ``Stubs``; B appends its own facts alike. With one
partition, B's sockets must receive the same sends on both paths: the ``roomData`` pushes, in
the same order with the same content, and the replies (tokens and ``roomJoin`` replies with
their clientLists). With three, each socket must be told the same of each room in the same
order (a change spanning partitions is one batch of effects per partition), and exactly the
same with coalesced updates. One injected clock; the facts are applied at the time of the
last entry of the action that caused them.

Left out, because they differ by design (docs/cluster.md, "Stubs"): a setRoomApiField that
sets the apiField it already has (the apiField values drawn never repeat), a login of a
socket already logged in, a roomJoin naming several rooms by a member of A in no room (one
room is asked for then), and a room field in an application made by clients (its rooms and
their fields live as long as the application, whose lifetime no node's core knows alone:
server code sets fields in an application it made, kept everywhere; the other is made and
forgotten by clients).
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from easyrtc_server.cluster import log as entries
from easyrtc_server.cluster.facts import Fact, Keep, Leave, Remove, Reserve, SetField, Update
from easyrtc_server.cluster.partition import Denied, Effect, Granted, Partition, RoomRules
from easyrtc_server.cluster.replica import NodeSockets, Replica
from easyrtc_server.cluster.reservations import RoomRequest
from easyrtc_server.cluster.stubs import Stubs
from easyrtc_server.options import Options
from easyrtc_server.protocol import control
from easyrtc_server.protocol.core import Core, changes_state
from easyrtc_server.protocol.decisions import (
    Answer,
    Decision,
    Refused,
)
from easyrtc_server.protocol.model import Peer
from easyrtc_server.protocol.outcome import Fanout, Json, Outcome, Push, Reply
from easyrtc_server.protocol.stock import stock_answer
from support.corekit import Harness, Result

A, B = "nA", "nB"
FIELDED = "a1"
"""The application whose rooms server code gives fields, made by server code."""
ADDRESS = "127.0.0.1"


def options(tick: float) -> Options:
    """Rooms big enough that no join is refused for want of a place (that is the
    partition's business, tested in test_partition*)."""
    return Options(room_max_connection=100, room_update_tick=tick)


def yes(decision: Decision, opts: Options) -> Answer:
    """What the default hooks answer (``protocol.stock``: the stock hooks' answers)."""
    answer = stock_answer(decision, opts, answering=True)
    assert answer is not None, f"not a decision the hooks answer: {decision}"
    return answer


def sends(out: Outcome) -> list[tuple[str, str, Json]]:
    """What a node sends, in order: ``("reply", "", body)`` or ``(to, event, body)``."""
    flat: list[tuple[str, str, Json]] = []
    for send in out.sends:
        if isinstance(send, Reply):
            flat.append(("reply", "", send.body))
        elif isinstance(send, Push):
            flat.append((send.to, send.event, send.body))
        elif isinstance(send, Fanout):
            flat.extend((p.to, p.event, p.body) for p in send.pushes())
    return flat


def by_room(sent: list[tuple[str, str, Json]]) -> tuple[list[Json], dict[Any, list[Any]]]:
    """The replies in order, and what each socket was told of each room in order, however
    the rooms were grouped into pushes."""
    replies = [body for to, _event, body in sent if to == "reply"]
    told: dict[Any, list[Any]] = {}
    for to, event, body in sent:
        if to != "reply" and body.get("msgType") == "roomData":
            for name, delta in body["msgData"]["roomData"].items():
                told.setdefault((to, name), []).append((body["serverTime"], delta))
        elif to != "reply":
            told.setdefault((to, event), []).append(body)
    return replies, told


def view(core: Core, cid: str) -> tuple[str | None, dict[str, Json]]:
    """A connection's application and its entry in each of its rooms, as peers see it."""
    peer = core.peers.get(cid)
    conn = peer.connection if peer is not None else None
    if conn is None:
        return None, {}
    return conn.app.name, {name: m.room.entries[cid] for name, m in conn.rooms.items()}


def accepted(out: Outcome) -> bool:
    return any(isinstance(s, Reply) and s.body.get("msgType") == "roomData" for s in out.sends)


@dataclass
class Clock:
    t: int = 1_000_000

    def now(self) -> int:
        return self.t

    def tick(self) -> int:
        self.t += 7
        return self.t


@dataclass
class Nodes:
    """Both paths, driven in lockstep."""

    opts: Options
    parts: int = 1
    """Partitions the rooms are spread over."""
    clock: Clock = field(default_factory=Clock)
    owner: dict[str, str] = field(default_factory=dict)
    """easyrtcid -> its node (both paths)."""
    peers: list[str] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    values: itertools.count[int] = field(default_factory=itertools.count)
    rids: itertools.count[int] = field(default_factory=itertools.count)
    today: list[tuple[str, str, Json]] = field(default_factory=list)
    """What B sent on path 1 (a full replica)."""
    stubbed: list[tuple[str, str, Json]] = field(default_factory=list)
    """What B sent on path 2 (its own core, A's members as stubs)."""
    facts: list[Fact] = field(default_factory=list)
    late: tuple[list[Partition], Stubs, Core] | None = None
    """A reader that started from the partitions' snapshots (``start_late_reader``)."""

    def __post_init__(self) -> None:
        self.replicas = {
            node: Replica.new(self.opts, node, wall=self.clock.now, here=self._here(node))
            for node in (A, B)
        }
        mine = NodeSockets(B, lambda cid: cid in self.b.peers)
        self.b = Core(self.opts, clock=self.clock.now, scope=mine)
        self.stubs = Stubs(self.b.state, B)
        rules = RoomRules.of(self.opts.protocol)
        self.partitions = [Partition(lambda app: rules) for _ in range(self.parts)]
        # server code made FIELDED (kept when empty, everywhere): the rooms given fields live
        # there; an application's lifetime is not the facts' (module docstring)
        made = entries.control(A, self.clock.tick(), "create_app", [FIELDED], {})
        for replica in self.replicas.values():
            assert replica.apply(made).error is None
        control.create_app(self.b.state, FIELDED)

    def _here(self, node: str) -> Callable[[str], bool]:
        return lambda cid: self.owner.get(cid) == node

    # -- path 1 ----------------------------------------------------------------------------

    def append(self, entry: entries.LogEntry) -> Outcome | Decision:
        """Both replicas apply ``entry``; B's sends recorded; the origin's result."""
        results = {node: replica.apply(entry) for node, replica in self.replicas.items()}
        b = results[B].result
        if isinstance(b, Outcome):
            self.record(self.today, self.replicas[B].core, b, entry.body.get("p"), entry.node)
        return results[entry.node].result

    def record(
        self, into: list[Any], core: Core, out: Outcome, sender: str | None, origin: str
    ) -> None:
        """What B sends for ``out``: caught up first on coalesced changes, as a node does;
        a reply only to its own client (a replica may build a refusal for another's)."""
        peer = core.peers.get(sender) if sender is not None and origin == B else None
        told = sends(core.settle(out, peer))
        into.extend(s for s in told if origin == B or s[0] != "reply")

    # -- both --------------------------------------------------------------------------------

    def open(self, node: str) -> None:
        cid = f"{node[-1]}{next(self.ids):015d}"
        self.owner[cid] = node
        self.peers.append(cid)
        self.replicas[node].core.state.peers[cid] = Peer(cid, ADDRESS)
        if node == B:
            self.b.state.peers[cid] = Peer(cid, ADDRESS)

    def event(self, cid: str, event: str, data: Any, refuse_at: int | None) -> Outcome:
        """``cid``'s event through its node: path 1 logs it and the hooks' answers; on B,
        path 2's core takes the same steps at the same times. The origin's last outcome."""
        node = self.owner[cid]
        self.clock.tick()
        origin = self.replicas[node].core
        peer = origin.peers[cid]
        b_peer = self.b.peers[cid] if node == B else None
        step2 = self.b.receive(b_peer, event, data, True) if b_peer is not None else None
        if changes_state(peer, event, data, True):
            checked = origin.check(peer, event, data)
            if isinstance(checked, Outcome):  # refused by its node: never logged
                if node == B:
                    self.record(self.today, origin, checked, cid, B)
                    assert isinstance(step2, Outcome)
                    self.record(self.stubbed, self.b, step2, cid, B)
                return checked
            data = checked
        step = self.append(entries.recv(node, self.clock.t, cid, ADDRESS, event, data))
        asked = 0
        while not isinstance(step, Outcome):
            self.clock.tick()
            answer = Refused(step.failure) if asked == refuse_at else yes(step, self.opts)
            step = self.append(entries.answer(node, self.clock.t, cid, answer))
            if step2 is not None:
                assert not isinstance(step2, Outcome), (step, step2)
                assert answer == (
                    Refused(step2.failure) if asked == refuse_at else yes(step2, self.opts)
                )
                step2 = self.b.answer(step2, answer)
            asked += 1
        if step2 is not None:
            assert isinstance(step2, Outcome), step2
            self.record(self.stubbed, self.b, step2, cid, B)
        return step

    def close(self, cid: str) -> None:
        node = self.owner[cid]
        self.clock.tick()
        self.append(entries.close(node, self.clock.t, cid))
        if node == B:
            out = self.b.close(self.b.peers[cid])
            self.record(self.stubbed, self.b, out, None, B)
        self.peers.remove(cid)

    def room_field(self, node: str, app: str, room: str, value: int) -> None:
        """Server code on ``node``: path 1 logs the change; path 2 appends its fact, which
        every reader applies (the writer too) if the change is one (else it raised)."""
        self.clock.tick()
        entry = entries.control(node, self.clock.t, "set_room_field", [app, room, "f", value], {})
        errors = [r.apply(entry) for r in self.replicas.values()]
        b = errors[1].result
        assert isinstance(b, Outcome)
        self.record(self.today, self.replicas[B].core, b, None, node)
        if errors[0].error is None:
            self.publish(self.part_of(app, room), SetField(app, room, "f", value, True))

    def flush(self) -> None:
        """Coalesced updates told at the same point on both paths."""
        self.today.extend(sends(self.replicas[B].core.flush_room_updates()))
        self.stubbed.extend(sends(self.b.flush_room_updates()))

    # -- path 2: the facts ------------------------------------------------------------------

    def part_of(self, app: str, room: str | None = None) -> int:
        """A room's partition (an application's: its census), as the plan places them."""
        key = app if room is None else f"{app}\0{room}"
        return zlib.crc32(key.encode()) % len(self.partitions)

    def publish(self, partition: int, fact: Fact) -> list[Effect]:
        """``fact`` appended to ``partition``; B applies its effects (stubs), and so does a
        late reader, if one started (it has no sockets: it sends nothing)."""
        self.facts.append(fact)
        effects = self.partitions[partition].apply(fact)
        self.record(self.stubbed, self.b, self.stubs.apply(effects), None, A)
        if self.late is not None:
            late_partition, late_stubs, _core = self.late[0][partition], *self.late[1:]
            assert late_stubs.apply(late_partition.apply(fact)).sends == []
        return effects

    def start_late_reader(self) -> None:
        """A third node, C, without sockets, starts reading every partition from its
        snapshot (through JSON) and stubs everyone."""
        rules = RoomRules.of(self.opts.protocol)
        core = Core(self.opts, clock=self.clock.now, scope=NodeSockets("nC", lambda cid: False))
        stubs = Stubs(core.state, "nC")
        parts = [
            Partition.restore(json.loads(json.dumps(p.snapshot())), lambda app: rules)
            for p in self.partitions
        ]
        for part in parts:
            stubs.load(part)
        self.late = (parts, stubs, core)

    def spread(self, rooms: Iterable[str], app: str) -> dict[int, list[str]]:
        """``rooms`` by partition, in ascending order (the order a node appends in)."""
        parts: dict[int, list[str]] = {}
        for room in rooms:
            parts.setdefault(self.part_of(app, room), []).append(room)
        return dict(sorted(parts.items()))

    def request(self, rid: str, node: str, app: str, cid: str, rooms: dict[str, Json]) -> None:
        """A join as its node makes it: one ``join``, or reservations in ascending order."""
        census = self.part_of(app) if self.opts.protocol.max_rooms_per_app else None
        missing = frozenset(
            r for r in rooms if self.partitions[self.part_of(app, r)].room(app, r) is None
        )
        req = RoomRequest(
            rid, node, app, cid, 1, rooms, lambda r: self.part_of(app, r), census, missing
        )
        queue = deque(req.start())
        while queue:
            step = queue.popleft()
            for effect in self.publish(step.partition, step.fact):
                if isinstance(effect, Granted):
                    queue.extend(req.on_granted(effect))
                elif isinstance(effect, Denied):
                    queue.extend(req.on_denied(effect))
        assert req.result == "admitted", req.result  # rooms big enough: none refused

    def tell(
        self,
        cid: str,
        before: tuple[str | None, dict[str, Json]],
        *,
        rejoined: tuple[str, ...] = (),
        updated: tuple[str, ...] | None = (),
    ) -> None:
        """The facts ``cid``'s node appends after its action: its leaves, changed entries and
        joins, each with its entry as its node's core has it now, one fact per partition.
        ``rejoined``: the rooms it asked into (in its request's order, joined again or not);
        ``updated``: rooms whose entry it set again (None: all)."""
        node = self.owner[cid]
        core = self.b if node == B else self.replicas[A].core
        app, now = view(core, cid)
        old_app, old = before
        if old and old_app is not None:
            gone = [r for r in old if r not in now or app != old_app]
            for part, rooms in self.spread(gone, old_app).items():
                self.publish(part, Leave(old_app, cid, 1, tuple(rooms), node))
        if app is None:
            return
        order = [*rejoined, *now]  # a request's rooms in its order
        joined = {r: now[r] for r in order if r in now and (r not in old or r in rejoined)}
        changed = [
            r
            for r, e in now.items()
            if r not in joined and (e != old[r] or updated is None or r in updated)
        ]
        for part, rooms in self.spread(changed, app).items():
            self.publish(part, Update(app, cid, 1, {r: now[r] for r in rooms}))
        if joined:
            self.request(f"r{next(self.rids)}", node, app, cid, joined)


ROOMS = st.sampled_from(["r1", "r2", "r3"])
APPS = st.sampled_from(["a1", "a1", "a1", "a2"])
NODE = st.sampled_from([A, B])
ACTIONS = st.one_of(
    st.tuples(st.just("open"), NODE),
    st.tuples(
        st.just("login"),
        st.integers(0, 20),
        APPS,
        st.lists(ROOMS, max_size=3, unique=True),
        st.sampled_from([None, None, None, 0, 1, 2]),  # which answer the hooks refuse
    ),
    st.tuples(
        st.just("join"),
        st.integers(0, 20),
        st.lists(ROOMS, min_size=1, max_size=2, unique=True),
        st.sampled_from([None, None, 0]),
    ),
    st.tuples(st.just("leave"), st.integers(0, 20), ROOMS),
    st.tuples(st.just("presence"), st.integers(0, 20), st.sampled_from(["away", "dnd", "chat"])),
    st.tuples(st.just("apifield"), st.integers(0, 20), ROOMS),
    st.tuples(st.just("close"), st.integers(0, 20)),
    st.tuples(st.just("roomfield"), NODE, st.just(FIELDED), ROOMS),
)


def run(nodes: Nodes, action: tuple[Any, ...]) -> None:
    kind = action[0]
    if kind == "open":
        nodes.open(action[1])
        return
    if kind == "roomfield":
        _, node, app, room = action
        nodes.room_field(node, app, room, next(nodes.values))
        return
    if not nodes.peers:
        return
    cid = nodes.peers[action[1] % len(nodes.peers)]
    core = nodes.b if nodes.owner[cid] == B else nodes.replicas[A].core
    before = view(core, cid)
    match action:
        case ("login", _, app, rooms, refuse_at):
            if core.peers[cid].connection is not None:
                return  # a second login on one socket: see the module's docstring
            data: Json = {"apiVersion": "1.1.1-beta", "applicationName": app}
            data["username"] = "u" + cid[-3:]
            if rooms:
                data["roomJoin"] = {r: {"roomName": r} for r in rooms}
            nodes.event(cid, "easyrtcAuth", {"msgType": "authenticate", "msgData": data}, refuse_at)
            nodes.tell(cid, before)
        case ("join", _, rooms, refuse_at):
            if len(rooms) > 1 and nodes.owner[cid] == A and not before[1]:
                rooms = rooms[:1]  # new to B: told as a login is (see the module's docstring)
            asked = {r: {"roomName": r} for r in rooms}
            msg = {"msgType": "roomJoin", "msgData": {"roomJoin": asked}}
            out = nodes.event(cid, "easyrtcCmd", msg, refuse_at)
            nodes.tell(cid, before, rejoined=tuple(rooms) if accepted(out) else ())
        case ("leave", _, room):
            msg = {"msgType": "roomLeave", "msgData": {"roomLeave": {room: {"roomName": room}}}}
            nodes.event(cid, "easyrtcCmd", msg, None)
            nodes.tell(cid, before)
        case ("presence", _, show):
            msg = {"msgType": "setPresence", "msgData": {"setPresence": {"show": show}}}
            out = nodes.event(cid, "easyrtcCmd", msg, None)
            nodes.tell(cid, before, updated=None if accepted(out) else ())
        case ("apifield", _, room):
            rooms = list(before[1])  # mostly one of its own rooms (else refused)
            room = rooms[int(room[1:]) % len(rooms)] if rooms and room != "r3" else room
            value = next(nodes.values)
            field = {"k": {"fieldName": "k", "fieldValue": value}}
            msg = {
                "msgType": "setRoomApiField",
                "msgData": {"setRoomApiField": {"roomName": room, "field": field}},
            }
            nodes.event(cid, "easyrtcCmd", msg, None)
            nodes.tell(cid, before)
        case ("close", _):
            nodes.close(cid)
            nodes.tell(cid, before)
    if nodes.opts.room_update_tick:
        nodes.flush()


SOCKETS = st.lists(NODE, min_size=3, max_size=6).map(lambda nodes: [("open", n) for n in nodes])
LOGINS = st.lists(
    st.tuples(
        st.just("login"),
        st.integers(0, 5),
        APPS,
        st.lists(ROOMS, min_size=1, max_size=3, unique=True),
        st.just(None),
    ),
    min_size=2,
    max_size=6,
)


def scenario(start: tuple[list[Any], list[Any]], actions: list[Any]) -> list[Any]:
    return [*start[0], *start[1], *actions]


def per_socket(sent: list[tuple[str, str, Json]]) -> dict[str, list[Any]]:
    """What each socket received, in its order (the order between sockets is nobody's)."""
    out: dict[str, list[Any]] = {}
    for send in sent:
        out.setdefault(send[0], []).append(send)
    return out


@pytest.mark.parametrize("tick", [0, 0.05])
@settings(max_examples=100, deadline=None)
@given(start=st.tuples(SOCKETS, LOGINS), actions=st.lists(ACTIONS, min_size=5, max_size=60))
def test_b_tells_its_clients_the_same_with_a_members_as_stubs(
    tick: float, start: tuple[list[Any], list[Any]], actions: list[tuple[Any, ...]]
) -> None:
    nodes = Nodes(options(tick))
    for i, action in enumerate(scenario(start, actions)):
        run(nodes, action)
        assert nodes.stubbed == nodes.today, f"after action {i}: {action}"


@settings(max_examples=100, deadline=None)
@given(start=st.tuples(SOCKETS, LOGINS), actions=st.lists(ACTIONS, min_size=5, max_size=60))
def test_over_partitions_each_room_is_told_the_same_in_its_order(
    start: tuple[list[Any], list[Any]], actions: list[tuple[Any, ...]]
) -> None:
    """Rooms over three partitions: a change spanning them arrives as one batch of effects
    per partition, so a member may get a push per partition where it got one (docs)."""
    nodes = Nodes(options(0), parts=3)
    for i, action in enumerate(scenario(start, actions)):
        run(nodes, action)
        assert by_room(nodes.stubbed) == by_room(nodes.today), f"after action {i}: {action}"


@settings(max_examples=100, deadline=None)
@given(start=st.tuples(SOCKETS, LOGINS), actions=st.lists(ACTIONS, min_size=5, max_size=60))
def test_over_partitions_coalesced_updates_are_the_same(
    start: tuple[list[Any], list[Any]], actions: list[tuple[Any, ...]]
) -> None:
    """With ``room_update_tick`` on, flushed once every partition's facts of an action are
    applied, every socket receives exactly what it receives today."""
    nodes = Nodes(options(0.05), parts=3)
    for i, action in enumerate(scenario(start, actions)):
        run(nodes, action)
        assert per_socket(nodes.stubbed) == per_socket(nodes.today), f"after {i}: {action}"


def rooms_seen(core: Core, partitions: list[Partition]) -> dict[Any, Any]:
    """Every room with members in the partitions, as ``core`` has it: its clientList, in
    order. (Not its fields: a room's fields outlive its application's last connection in
    its partition, not in a core; docs/cluster.md, "Stubs".)"""
    seen: dict[Any, Any] = {}
    for part in partitions:
        for app, rooms in part.rooms.items():
            for name, room in rooms.items():
                if room.members:
                    held = core.apps[app].rooms[name]
                    seen[app, name] = list(core.state.client_list(held).items())
    return seen


@settings(max_examples=100, deadline=None)
@given(
    start=st.tuples(SOCKETS, LOGINS),
    actions=st.lists(ACTIONS, min_size=5, max_size=60),
    late=st.integers(0, 70),
    parts=st.sampled_from([1, 3]),
)
def test_a_reader_starting_from_snapshots_holds_the_rooms_as_b_does(
    start: tuple[list[Any], list[Any]], actions: list[tuple[Any, ...]], late: int, parts: int
) -> None:
    """C starts reading at a random point (``Stubs.load`` of each partition's snapshot),
    then applies the facts that follow; at the end its core holds every room with members
    as B's does (B's own members are stubs in C). Then it stops reading every partition
    (``Stubs.unload``): nobody is left in its core."""
    nodes = Nodes(options(0), parts=parts)
    for i, action in enumerate(scenario(start, actions)):
        if i == late:
            nodes.start_late_reader()
        run(nodes, action)
    if nodes.late is None:
        nodes.start_late_reader()
    assert nodes.late is not None
    late_parts, late_stubs, late_core = nodes.late
    assert rooms_seen(late_core, nodes.partitions) == rooms_seen(nodes.b, nodes.partitions)
    for part in late_parts:  # and stops reading: nobody is left in its core
        late_stubs.unload(part)
    assert late_stubs.members == {}
    for app in late_core.apps.values():
        assert not app.connections and not any(room.members for room in app.rooms.values())


# -- examples: what the module does at its edges ------------------------------------------------

PRESENCE = {"show": "chat", "status": None}


class Node(Harness):
    """Node B's core (only its own sockets are here) with its stubs and one partition."""

    def __init__(self) -> None:
        super().__init__()
        ids = itertools.count(1)
        scope = NodeSockets(B, lambda cid: cid in self.core.peers)
        opts = self.core.options
        self.core = Core(
            opts, clock=lambda: self.now, new_id=lambda: f"id-{next(ids)}", scope=scope
        )
        self.stubs = Stubs(self.core.state, B)
        rules = RoomRules.of(opts.protocol)
        self.partition = Partition(lambda app: rules)
        self.rids = itertools.count()

    def fact(self, fact: Fact) -> Result:
        return Result(self.stubs.apply(self.partition.apply(fact)))

    def arrives(self, cid: str, *rooms: str, node: str = A, **entry: Any) -> Result:
        """``cid`` of ``node`` is admitted into ``rooms`` of the default application."""
        made = {
            r: {"easyrtcid": cid, "roomJoinTime": 5, "presence": PRESENCE, **entry} for r in rooms
        }
        rid = f"r{next(self.rids)}"
        return self.fact(Reserve(rid, node, "default", cid, 1, made, count=rooms, join=True))


def rooms_of(body: Json) -> dict[str, Json]:
    return dict(body["msgData"]["roomData"])


def test_a_member_new_here_is_told_as_a_login_with_its_entry_as_its_node_made_it() -> None:
    node = Node()
    b = node.login(roomJoin={r: {"roomName": r} for r in ("r1", "r2", "r3")})
    api = {"k": {"fieldName": "k", "fieldValue": 1}}
    told = node.arrives("X" * 16, "r1", "r2", username="ux", apiField=api)
    [(_event, body)] = told.pushes(b)  # one push, both rooms it shares, as at a login
    entry = {"easyrtcid": "X" * 16, "roomJoinTime": 5, "presence": PRESENCE, "username": "ux"}
    entry["apiField"] = api
    assert rooms_of(body) == {
        r: {
            "roomName": r,
            "roomStatus": "update",
            "clientListDelta": {"updateClient": {"X" * 16: entry}},
        }
        for r in ("r1", "r2")
    }
    c = node.open()
    token = node.auth(c, roomJoin={"r2": {"roomName": "r2"}}).reply
    assert token["msgData"]["roomData"]["r2"]["clientList"]["X" * 16] == entry
    assert told.pushes("X" * 16) == []  # nothing is built for a socket that is not here


def test_a_known_member_entering_a_room_is_told_per_room_and_leaving_drops_it() -> None:
    node = Node()
    b = node.login(roomJoin={r: {"roomName": r} for r in ("r1", "r2")})
    node.arrives("X" * 16, "r1")
    told = node.arrives("X" * 16, "r2")
    assert [list(rooms_of(body)) for _e, body in told.pushes(b)] == [["r2"]]
    left = node.fact(Leave("default", "X" * 16, 1, ("r1", "r2"), A))
    removed = [rooms_of(body) for _e, body in left.pushes(b)]
    assert [list(r) for r in removed] == [["r1"], ["r2"]]
    assert "removeClient" in removed[0]["r1"]["clientListDelta"]
    assert node.stubs.members == {}
    assert "X" * 16 not in node.core.apps["default"].connections
    assert left.outcome.left is None  # the room_left hooks run on its own node


def test_a_stub_in_no_room_here_leaves_no_application_behind() -> None:
    node = Node()
    entry = {"easyrtcid": "X" * 16, "roomJoinTime": 5, "presence": PRESENCE}
    node.fact(Reserve("r", A, "a2", "X" * 16, 1, {"r1": entry}, count=("r1",), join=True))
    assert node.core.apps["a2"].rooms["r1"].members.keys() == {"X" * 16}
    node.fact(Leave("a2", "X" * 16, 1, ("r1",), A))
    assert "a2" not in node.core.apps


def test_effects_about_this_nodes_own_connections_change_nothing() -> None:
    node = Node()
    b = node.login(roomJoin={"r1": {"roomName": "r1"}})
    cid = b.easyrtcid
    before = node.core.state.client_list(node.core.apps["default"].rooms["r1"])
    own = {"easyrtcid": cid, "roomJoinTime": 99, "presence": {"show": "away", "status": None}}
    assert node.arrives(cid, "r1", node=B).outcome.sends == []
    assert node.fact(Update("default", cid, 1, {"r1": own})).outcome.sends == []
    assert node.fact(Leave("default", cid, 1, ("r1",), B)).outcome.sends == []
    assert node.core.state.client_list(node.core.apps["default"].rooms["r1"]) == before
    assert node.stubs.members == {}


def test_a_room_field_is_applied_from_its_fact_by_every_reader() -> None:
    node = Node()
    b = node.login(roomJoin={"r1": {"roomName": "r1"}})
    node.arrives(b.easyrtcid, "r1", node=B)  # its own join, appended by B: skipped here
    told = node.fact(SetField("default", "r1", "f", 3, True))
    [(_event, body)] = told.pushes(b)
    assert rooms_of(body)["r1"]["field"] == {"f": {"fieldName": "f", "fieldValue": 3}}
    node.leave(b, "r1")
    assert node.core.apps["default"].rooms["r1"].persistent  # kept when empty, as the core keeps it


def test_an_api_field_set_again_is_told_as_a_presence_change() -> None:
    """What differs from today (docs/cluster.md, "Stubs"): the entry does not say that the
    apiField was set again, so peers hear the entry without it (today: with it)."""
    node = Node()
    b = node.login(roomJoin={"r1": {"roomName": "r1"}})
    api = {"k": {"fieldName": "k", "fieldValue": 1}}
    node.arrives("X" * 16, "r1", apiField=api)
    entry = {"easyrtcid": "X" * 16, "roomJoinTime": 5, "presence": PRESENCE, "apiField": api}
    [(_event, body)] = node.fact(Update("default", "X" * 16, 1, {"r1": entry})).pushes(b)
    told = rooms_of(body)["r1"]["clientListDelta"]["updateClient"]["X" * 16]
    assert "apiField" not in told and told["presence"] == PRESENCE


def test_a_room_field_outlives_its_application_in_the_partition_not_in_a_core() -> None:
    """A gap left for the wiring (docs/cluster.md, "Stubs"): the core forgets an application
    with its rooms when its last connection here leaves; the partition keeps a room with a
    field. A node that reads the room again gets it without the field; one that loads the
    partition's snapshot, with it."""
    node = Node()
    entry = {"easyrtcid": "X" * 16, "roomJoinTime": 5, "presence": PRESENCE}
    node.fact(Reserve("r1", A, "a1", "X" * 16, 1, {"r1": entry}, count=("r1",), join=True))
    node.fact(SetField("a1", "r1", "f", 3, True))
    node.fact(Leave("a1", "X" * 16, 1, ("r1",), A))
    assert "a1" not in node.core.apps
    node.fact(Reserve("r2", A, "a1", "X" * 16, 2, {"r1": entry}, count=("r1",), join=True))
    assert node.core.apps["a1"].rooms["r1"].fields == {}
    room = node.partition.room("a1", "r1")
    assert room is not None and room.fields == {"f": [3, True]}


def test_a_room_server_code_keeps_or_deletes_is_so_in_every_readers_core() -> None:
    """``keep``: the room in the core, kept when empty; ``remove``: gone from it, but for a
    room this node's own client is joining (the fresh room its join makes); a partition no
    longer read leaves no empty room behind but the default room."""
    node = Node()
    assert node.fact(Keep("k1", A, "default", "stage")).outcome.sends == []
    room = node.core.apps["default"].rooms["stage"]
    assert room.persistent and not room.members
    assert node.fact(Remove("d1", A, "default", "stage")).outcome.sends == []
    assert "stage" not in node.core.apps["default"].rooms
    node.fact(Keep("k2", A, "default", "stage"))
    b = node.login(roomJoin={"stage": {"roomName": "stage"}})  # in the core, not yet told
    node.fact(SetField("default", "stage", "f", 1, True))
    node.fact(Remove("d2", A, "default", "stage"))
    room = node.core.apps["default"].rooms["stage"]
    assert list(room.members) == [b.easyrtcid]
    assert not room.persistent and room.fields == {}
    node.leave(b, "stage")
    node.fact(Keep("k3", A, "default", "lobby"))
    node.fact(Keep("k4", A, "default", "default"))
    node.stubs.unload(node.partition)
    assert list(node.core.apps["default"].rooms) == ["default"]


def test_a_stubs_groups_come_with_its_entry_and_a_change_of_them_alone_tells_nobody() -> None:
    """``stubs.GROUPS``: a member of another node is in its groups here (a room or peer
    message with a group reaches it), its entry's groups are never shown, a change of its
    groups alone pushes nothing, and it leaves its groups when it leaves this node's rooms."""
    node = Node()
    b = node.login(roomJoin={"r1": {"roomName": "r1"}})
    cid = "X" * 16
    told = node.arrives(cid, "r1", g=["crew"])
    [(_event, body)] = told.pushes(b)
    assert "g" not in rooms_of(body)["r1"]["clientListDelta"]["updateClient"][cid]
    groups = node.core.apps["default"].groups
    assert groups["crew"].members == {cid}
    entry = {"easyrtcid": cid, "roomJoinTime": 5, "presence": PRESENCE, "g": ["band", "crew"]}
    assert node.fact(Update("default", cid, 1, {"r1": entry})).pushes(b) == []
    assert (groups["band"].members, groups["crew"].members) == ({cid}, {cid})
    away = {"show": "away", "status": None}
    moved = {"easyrtcid": cid, "roomJoinTime": 5, "presence": away}  # no groups any more
    [(_event, body)] = node.fact(Update("default", cid, 1, {"r1": moved})).pushes(b)
    assert rooms_of(body)["r1"]["clientListDelta"]["updateClient"][cid]["presence"] == away
    assert groups["crew"].members == set() and groups["band"].members == set()
    node.fact(Update("default", cid, 1, {"r1": {**moved, "g": ["crew"]}}))
    node.fact(Leave("default", cid, 1, ("r1",), A))
    assert groups["crew"].members == set()  # the group stays, as in one process
