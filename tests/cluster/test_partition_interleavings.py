"""Concurrent joins over several partition logs, interleaved by Hypothesis (issue 23).

A model of the partition protocol without Redis: three partitions, each a FIFO log read by a
canonical reader and two lagging ones (one of them restored from a snapshot at a random
point); three nodes whose connections ask into one to three rooms spread over the partitions
(``RoomRequest``: one ``join``, or reservations in ascending partition order), leave, update
their entries and die (a reaper appends ``node-gone`` everywhere). Hypothesis chooses the
room rules and every step: which node appends its next fact, which partition applies its
next one, which node reacts to a decision, which reader catches up. Then a fair schedule runs
everything to the end, and the test checks what a user would notice:

- no room ever holds more than ``room_max_connection`` members and held places, and the
  census never counts more than ``max_rooms_per_app`` rooms nor misses one that exists;
- every request of a live node ends (admitted or refused), and no reservation is left held;
- an all-or-nothing request is admitted in all its rooms or in none;
- every reader of a partition, the restored one too, ends in the canonical state with the
  same effects;
- the outcomes are those of a serial order (each admission at its last grant, each refusal
  at its decision): no admission over a room's limit, each refusal justified there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from easyrtc_server.cluster.facts import Fact, Leave, NodeGone, Release, Update
from easyrtc_server.cluster.partition import (
    Admitted,
    Denied,
    Effect,
    Granted,
    Left,
    Partition,
    RoomRules,
    ToRelease,
)
from easyrtc_server.cluster.reservations import Append, RoomRequest, connection_refusal

APP = "chat"
PARTS = 3
WHERE = {"default": 0, "r0": 0, "r1": 1, "r2": 2, "r3": 1}
ROOMS = sorted(WHERE)
CENSUS = 1
NODES = ("n0", "n1", "n2")
REAPER = "reaper"
CIDS = {node: (f"{node}a", f"{node}b", f"{node}c") for node in NODES}
Key = tuple[int, int]
"""When something happened: (canonical apply number, index of the effect in it)."""


@dataclass
class Request:
    node: str
    cid: str
    rooms: frozenset[str]
    flow: RoomRequest
    rids: list[str] = field(default_factory=list)
    result: str | None = None
    locked: bool = False
    """Granted everywhere (its last grant is its place in the serial order)."""


@dataclass
class Reader:
    part: Partition
    pos: int = 0
    start: int = 0
    effects: list[list[Effect]] = field(default_factory=list)


class World:
    def __init__(self, rules: RoomRules, per_connection: int) -> None:
        self.rules = rules
        self.per_connection = per_connection
        self.logs: list[list[Fact]] = [[] for _ in range(PARTS)]
        self.canon = [Reader(Partition(self.rule)) for _ in range(PARTS)]
        self.readers = [[Reader(Partition(self.rule)) for _ in range(2)] for _ in range(PARTS)]
        self.outbox: dict[str, deque[Append]] = {n: deque() for n in (*NODES, REAPER)}
        self.inbox: dict[str, deque[tuple[Effect, Key]]] = {n: deque() for n in (*NODES, REAPER)}
        self.alive = set(NODES)
        self.flying: dict[str, Request] = {}
        self.done: list[Request] = []
        self.by_rid: dict[str, Request] = {}
        self.member_of: dict[str, set[str]] = {c: set() for cs in CIDS.values() for c in cs}
        self.time = 0
        self.serial: list[tuple[Key, str, Any]] = []
        self.awaiting: dict[tuple[str, str], str] = {}
        """(room, permit) -> the node due to release it, until the release is applied."""
        self.count = 0

    def rule(self, app: str) -> RoomRules:
        return self.rules

    # -- what Hypothesis may choose ----------------------------------------------------------

    def idle(self, node: str) -> list[str]:
        return [c for c in CIDS[node] if c not in self.flying] if node in self.alive else []

    def enabled(self) -> list[tuple[Any, ...]]:
        acts: list[tuple[Any, ...]] = []
        for node in NODES:
            if self.idle(node):
                acts += [("request", node)] * 3
            if any(self.member_of[c] for c in self.idle(node)):
                acts += [("leave", node), ("update", node)]
        if len(self.alive) == len(NODES):
            acts.append(("die", sorted(self.alive)[-1]))  # one death at most, after a while
        for node, box in self.outbox.items():
            acts += [("append", node)] * min(len(box), 3)
        for node, box in self.inbox.items():
            acts += [("react", node)] * min(len(box), 3)
        for p in range(PARTS):
            behind = len(self.logs[p]) - self.canon[p].pos
            acts += [("apply", p)] * min(behind, 3)
            for i, reader in enumerate(self.readers[p]):
                if reader.pos < len(self.logs[p]):
                    acts.append(("read", p, i))
            acts.append(("snapshot", p))
        return acts

    def do(self, act: tuple[Any, ...], data: st.DataObject) -> None:
        kind = act[0]
        if kind == "request":
            cid = data.draw(st.sampled_from(self.idle(act[1])))
            rooms = data.draw(st.frozensets(st.sampled_from(ROOMS), min_size=1, max_size=3))
            expect = data.draw(st.frozensets(st.sampled_from(sorted(rooms))))
            self.request(act[1], cid, rooms, expect)
        elif kind in ("leave", "update"):
            cid = data.draw(st.sampled_from([c for c in self.idle(act[1]) if self.member_of[c]]))
            rooms = data.draw(
                st.frozensets(st.sampled_from(sorted(self.member_of[cid])), min_size=1)
            )
            (self.leave if kind == "leave" else self.update)(act[1], cid, rooms)
        elif kind == "die":
            self.die(act[1])
        elif kind == "append":
            self.append(act[1])
        elif kind == "react":
            self.react(act[1])
        elif kind == "apply":
            self.apply(act[1])
        elif kind == "read":
            self.read(self.readers[act[1]][act[2]], act[1])
        elif kind == "snapshot":
            self.restart(act[1])

    # -- the nodes ---------------------------------------------------------------------------

    def entry(self, cid: str) -> dict[str, Any]:
        self.count += 1
        return {"easyrtcid": cid, "roomJoinTime": self.count, "presence": {"show": "chat"}}

    def request(self, node: str, cid: str, rooms: frozenset[str], expect: frozenset[str]) -> None:
        if connection_refusal(self.member_of[cid], rooms, self.per_connection):
            return  # refused by its own node before any fact: nothing to interleave
        self.count += 1
        flow = RoomRequest(
            f"{cid}.{self.count}",
            node,
            APP,
            cid,
            1,
            {room: self.entry(cid) for room in sorted(rooms)},
            WHERE.__getitem__,
            CENSUS if self.rules.max_rooms_per_app else None,
            expect,
        )
        req = Request(node, cid, rooms, flow)
        self.flying[cid] = req
        self.outbox[node].extend(flow.start())
        self.track(req)

    def track(self, req: Request) -> None:
        rid = req.flow.current
        if not req.rids or req.rids[-1] != rid:
            req.rids.append(rid)
            self.by_rid[rid] = req

    def by_partition(self, rooms: frozenset[str]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for room in sorted(rooms):
            out.setdefault(WHERE[room], []).append(room)
        return out

    def leave(self, node: str, cid: str, rooms: frozenset[str]) -> None:
        for p, names in self.by_partition(rooms).items():
            self.outbox[node].append(Append(p, Leave(APP, cid, 1, tuple(names), node)))
        self.member_of[cid] -= rooms

    def update(self, node: str, cid: str, rooms: frozenset[str]) -> None:
        for p, names in self.by_partition(rooms).items():
            fact = Update(APP, cid, 1, {name: self.entry(cid) for name in names})
            self.outbox[node].append(Append(p, fact))

    def die(self, node: str) -> None:
        """Its unappended facts are lost; the reaper declares it gone in every partition."""
        self.alive.discard(node)
        self.outbox[node].clear()
        self.inbox[node].clear()
        for cid in CIDS[node]:
            self.flying.pop(cid, None)
        self.outbox[REAPER].extend(Append(p, NodeGone(node, REAPER)) for p in range(PARTS))

    def append(self, node: str) -> None:
        item = self.outbox[node].popleft()
        self.logs[item.partition].append(item.fact)

    def react(self, node: str) -> None:
        effect, key = self.inbox[node].popleft()
        if isinstance(effect, ToRelease):
            release = Release(effect.app, effect.room, effect.permit)
            self.outbox[node].append(Append(CENSUS, release))
            return
        assert isinstance(effect, Granted | Denied)
        req = self.by_rid.get(effect.rid)
        if req is None or req.node != node or req.result is not None:
            return
        if isinstance(effect, Granted):
            out = req.flow.on_granted(effect)
        else:
            out = req.flow.on_denied(effect)
        self.outbox[node].extend(out)
        self.track(req)
        result = req.flow.result
        if result is None:
            return
        req.result = result
        del self.flying[req.cid]
        self.done.append(req)
        if result == "admitted":
            self.member_of[req.cid] |= req.rooms
            if isinstance(effect, Granted) and not effect.committed:
                req.locked = True
                self.serial.append((key, "admit", req))  # its commits are on their way
        else:
            assert isinstance(effect, Denied)
            self.serial.append((key, "refused", (req, effect.reason)))

    # -- the partitions ----------------------------------------------------------------------

    def apply(self, p: int) -> None:
        reader = self.canon[p]
        fact = self.logs[p][reader.pos]
        effects = reader.part.apply(fact)
        reader.pos += 1
        reader.effects.append(effects)
        self.time += 1
        if isinstance(fact, NodeGone):
            self.serial.append(((self.time, -1), "gone", (p, fact.node)))
        if isinstance(fact, Release):
            self.awaiting.pop((fact.room, fact.permit), None)
        for i, effect in enumerate(effects):
            key = (self.time, i)
            if isinstance(effect, Granted | Denied):
                if effect.node in self.alive:
                    self.inbox[effect.node].append((effect, key))
                req = self.by_rid[effect.rid]
                if isinstance(effect, Granted) and effect.committed:
                    req.locked = True
                    self.serial.append((key, "admit", req))  # a join: committed here
                if isinstance(effect, Denied) and effect.reason == "too_many":
                    self.check_too_many(req)
            elif isinstance(effect, Left):
                self.serial.append((key, "left", (effect.room, effect.cid)))
            elif isinstance(effect, ToRelease):
                self.awaiting[(effect.room, effect.permit)] = effect.by
                if effect.by == REAPER or effect.by in self.alive:
                    self.inbox[effect.by].append((effect, key))
        self.check_bounds()

    def read(self, reader: Reader, p: int) -> None:
        reader.effects.append(reader.part.apply(self.logs[p][reader.pos]))
        reader.pos += 1

    def restart(self, p: int) -> None:
        """Reader 1 starts again from its own snapshot, through JSON."""
        old = self.readers[p][1]
        data = orjson.loads(orjson.dumps(old.part.snapshot()))
        self.readers[p][1] = Reader(Partition.restore(data, self.rule), old.pos, old.pos)

    # -- checks along the way ----------------------------------------------------------------

    def rooms_bound(self) -> set[str]:
        """Every room that exists, or is being created by a request granted everywhere."""
        return {
            name
            for reader in self.canon
            for name, room in reader.part.rooms.get(APP, {}).items()
            if room.created or (room.creator is not None and self.by_rid[room.creator].locked)
        }

    def check_bounds(self) -> None:
        limit = self.rules.room_max_connection
        for reader in self.canon:
            for name, room in reader.part.rooms.get(APP, {}).items():
                assert not limit or room.taken() <= limit, f"{name} over its limit"
                assert room.created or not room.members, f"members in {name}, not created"
        most = self.rules.max_rooms_per_app
        if most:
            counted = self.canon[CENSUS].part.counted(APP) or {"default"}
            created = {
                name
                for reader in self.canon
                for name, room in reader.part.rooms.get(APP, {}).items()
                if room.created
            }
            assert len(counted) <= most
            assert created <= counted, f"rooms {created - counted} exist uncounted"

    def check_too_many(self, req: Request) -> None:
        """The census refused: the rooms that exist in the serial order (created, or being
        created by a request granted everywhere, or removed and awaiting their release),
        with the ones asked for, are more than the application may hold."""
        taken = self.rooms_bound() | {room for room, _ in self.awaiting} | {"default"}
        assert len(taken | req.rooms) > self.rules.max_rooms_per_app

    # -- the end -----------------------------------------------------------------------------

    def drain(self) -> None:
        """A fair schedule: everyone appends, applies and reacts until nothing moves."""
        moved = True
        while moved:
            moved = False
            for node in (*NODES, REAPER):
                while self.outbox[node]:
                    self.append(node)
                    moved = True
            for p in range(PARTS):
                while self.canon[p].pos < len(self.logs[p]):
                    self.apply(p)
                    moved = True
            for node in (*NODES, REAPER):
                while self.inbox[node]:
                    self.react(node)
                    moved = True
        for p in range(PARTS):
            for reader in self.readers[p]:
                while reader.pos < len(self.logs[p]):
                    self.read(reader, p)

    def check(self) -> None:
        assert not self.flying, "a live node's request never ended"
        for reader in self.canon:
            assert not reader.part.holds, "a reservation was left held"
        for p in range(PARTS):
            whole = self.canon[p]
            for reader in self.readers[p]:
                assert reader.part.snapshot() == whole.part.snapshot()
                assert reader.effects == whole.effects[reader.start :]
        self.check_all_or_nothing()
        self.check_serial()
        self.check_census()

    def check_all_or_nothing(self) -> None:
        admitted: dict[str, set[str]] = {}
        for reader in self.canon:
            for effects in reader.effects:
                for e in effects:
                    if isinstance(e, Admitted):
                        admitted.setdefault(e.rid, set()).add(e.room)
        for req in self.done:
            if req.node not in self.alive:
                continue
            assert req.result in ("admitted", "full", "missing", "too_many"), req.result
            if req.result == "admitted":
                assert admitted.get(req.rids[-1]) == set(req.rooms)
            for rid in req.rids[: -1 if req.result == "admitted" else None]:
                assert rid not in admitted, "a refused attempt was half-admitted"

    def check_serial(self) -> None:
        """Replay admissions, leaves and departures in the order of their keys."""
        limit, members = self.rules.room_max_connection, {room: set[str]() for room in ROOMS}
        for _key, kind, what in sorted(self.serial, key=lambda item: item[0]):
            if kind == "admit":
                for room in what.rooms:
                    if what.cid not in members[room]:
                        assert not limit or len(members[room]) < limit, "over-admitted"
                        assert room == "default" or self.rules.room_auto_create_enable
                        members[room].add(what.cid)
            elif kind == "left":
                members[what[0]].discard(what[1])
            elif kind == "gone":
                p, node = what
                for room in ROOMS:
                    if WHERE[room] == p:
                        members[room] -= set(CIDS[node])
            elif kind == "refused":
                req, reason = what
                if reason == "full":
                    assert any(
                        req.cid not in members[r] and limit and len(members[r]) >= limit
                        for r in req.rooms
                    ), "refused full with a place free"
                elif reason == "missing":
                    assert not self.rules.room_auto_create_enable
                    assert any(r != "default" for r in req.rooms)

    def check_census(self) -> None:
        if not self.rules.max_rooms_per_app:
            return
        census = self.canon[CENSUS].part.census.get(APP)
        counted = set(census.committed) if census is not None else {"default"}
        assert census is None or not census.pending
        created = {
            name
            for reader in self.canon
            for name, room in reader.part.rooms.get(APP, {}).items()
            if room.created
        }
        leaked = {room for (room, _), by in self.awaiting.items() if by not in self.alive}
        assert created | {"default"} <= counted <= created | {"default"} | leaked


@settings(deadline=None)
@given(st.data())
def test_concurrent_joins_over_partitions_match_a_serial_order(data: st.DataObject) -> None:
    rules = RoomRules(
        room_max_connection=data.draw(st.sampled_from([2, 1, 3, 0]), label="room_max_connection"),
        room_auto_create_enable=data.draw(
            st.sampled_from([True, True, True, False]), label="auto_create"
        ),
        max_rooms_per_app=data.draw(st.sampled_from([0, 2, 3, 5]), label="max_rooms_per_app"),
        default_room="default",
        reclaim_empty_rooms=data.draw(st.booleans(), label="reclaim"),
    )
    world = World(rules, data.draw(st.sampled_from([0, 2]), label="max_rooms_per_connection"))
    for _ in range(data.draw(st.integers(0, 120), label="steps")):
        world.do(data.draw(st.sampled_from(world.enabled())), data)
    world.drain()
    world.check()
