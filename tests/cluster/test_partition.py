"""One partition's room facts applied in log order (``cluster/partition.py``), by example.

Each test reads like docs/cluster.md's "The partition protocol": a join decided in the
partition's one order, a reservation holding a place and a later request waiting for it,
refusals only from committed members, idempotent leaves, a dead node's members and
reservations gone, the census keeping ``max_rooms_per_app`` exact, snapshots, junk refused.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from easyrtc_server.cluster.facts import (
    Abort,
    Commit,
    Fact,
    FactError,
    Keep,
    Leave,
    NodeBack,
    NodeGone,
    Release,
    Remove,
    Reserve,
    SetField,
    Update,
    decode,
    encode,
)
from easyrtc_server.cluster.partition import (
    Admitted,
    Denied,
    FieldSet,
    Granted,
    Left,
    Partition,
    RoomCreated,
    RoomDeleted,
    RoomKept,
    RoomRemoved,
    RoomRules,
    ToRelease,
    Updated,
)
from easyrtc_server.cluster.reservations import Append, RoomRequest, connection_refusal
from easyrtc_server.options import ProtocolOptions

APP = "chat"


def entry(cid: str, n: int = 0) -> dict[str, object]:
    return {"easyrtcid": cid, "roomJoinTime": n, "presence": {"show": "chat", "status": None}}


def part(**rules: object) -> Partition:
    chosen = RoomRules(**{"max_rooms_per_app": 0, **rules})  # type: ignore[arg-type]
    return Partition(lambda app: chosen)


def join(rid: str, cid: str, *rooms: str, node: str = "n1", login: int = 1) -> Reserve:
    return Reserve(rid, node, APP, cid, login, {r: entry(cid) for r in rooms}, join=True)


def reserve(rid: str, cid: str, *rooms: str, node: str = "n1", **kw: object) -> Reserve:
    return Reserve(rid, node, APP, cid, 1, {r: entry(cid) for r in rooms}, **kw)  # type: ignore[arg-type]


def members(p: Partition, room: str) -> list[str]:
    found = p.room(APP, room)
    return list(found.members) if found is not None else []


def test_a_join_is_admitted_in_log_order_until_the_room_is_full() -> None:
    p = part(room_max_connection=2)
    assert p.apply(join("j1", "alice", "lobby")) == [
        Granted("j1", "n1", ("lobby",), committed=True),
        RoomCreated(APP, "lobby"),
        Admitted("j1", APP, "lobby", "alice", "n1", entry("alice")),
    ]
    assert p.apply(join("j2", "bob", "lobby"))[0] == Granted("j2", "n1", (), committed=True)
    assert p.apply(join("j3", "carol", "lobby")) == [Denied("j3", "n1", APP, "carol", "full")]
    assert members(p, "lobby") == ["alice", "bob"]


def test_joining_again_is_not_counted_twice_and_replaces_the_entry() -> None:
    p = part(room_max_connection=1)
    p.apply(join("j1", "alice", "lobby"))
    again = Reserve("j2", "n1", APP, "alice", 1, {"lobby": entry("alice", 7)}, join=True)
    assert Admitted("j2", APP, "lobby", "alice", "n1", entry("alice", 7)) in p.apply(again)
    assert p.room(APP, "lobby").members["alice"].entry == entry("alice", 7)  # type: ignore[union-attr]


def test_a_reservation_holds_a_place_and_a_later_join_waits_for_it() -> None:
    # lobby holds 2; alice is in; bob's multi-partition request holds the last place
    for settle, carol in [(Commit("r-bob"), "full"), (Abort("r-bob", "n2"), "admitted")]:
        p = part(room_max_connection=2)
        p.apply(join("j1", "alice", "lobby"))
        assert p.apply(reserve("r-bob", "bob", "lobby", node="n2")) == [Granted("r-bob", "n2", ())]
        assert p.apply(join("j-carol", "carol", "lobby", node="n3")) == []  # waits: no guess
        effects = p.apply(settle)
        if carol == "full":
            assert effects[-1] == Denied("j-carol", "n3", APP, "carol", "full")
            assert members(p, "lobby") == ["alice", "bob"]
        else:
            assert Admitted("j-carol", APP, "lobby", "carol", "n3", entry("carol")) in effects
            assert members(p, "lobby") == ["alice", "carol"]


def test_a_refusal_comes_only_from_committed_members() -> None:
    # a full room refuses at once; a room full only of held places makes the request wait
    p = part(room_max_connection=1)
    p.apply(reserve("r1", "bob", "lobby"))
    assert p.apply(join("j2", "carol", "lobby")) == []
    assert p.apply(Leave(APP, "nobody", 1, ("lobby",), "n1")) == []  # changes nothing
    assert p.apply(Abort("r1", "n1")) == [  # bob's creation did not happen: carol's does
        Granted("j2", "n1", ("lobby",), committed=True),
        RoomCreated(APP, "lobby"),
        Admitted("j2", APP, "lobby", "carol", "n1", entry("carol")),
    ]


def test_waiting_requests_are_decided_oldest_first() -> None:
    p = part(room_max_connection=2)
    p.apply(join("j1", "alice", "lobby"))
    p.apply(reserve("r-bob", "bob", "lobby"))
    p.apply(join("j-carol", "carol", "lobby"))
    p.apply(join("j-dave", "dave", "lobby"))
    effects = p.apply(Leave(APP, "alice", 1, ("lobby",), "n1"))
    assert Left(APP, "lobby", "alice", "n1") in effects
    # one place free, bob still holds the other: carol is granted, dave waits for bob
    assert [e.rid for e in effects if isinstance(e, Granted)] == ["j-carol"]
    assert p.apply(Commit("r-bob"))[-1] == Denied("j-dave", "n1", APP, "dave", "full")


def test_leave_is_idempotent_and_keyed_by_the_login() -> None:
    p = part()
    p.apply(join("j1", "alice", "lobby", login=1))
    p.apply(join("j2", "alice", "lobby", node="n2", login=2))  # resumed on n2: a new login
    assert p.apply(Leave(APP, "alice", 1, ("lobby",), "reaper")) == []  # the old login's
    assert p.apply(Leave(APP, "alice", 2, ("lobby",), "n2")) == [
        Left(APP, "lobby", "alice", "n2"),
        RoomRemoved(APP, "lobby"),
    ]
    assert p.apply(Leave(APP, "alice", 2, ("lobby",), "reaper")) == []  # repeated by a reaper


def test_update_replaces_the_entry_of_that_login_only() -> None:
    p = part()
    p.apply(join("j1", "alice", "lobby"))
    new = {**entry("alice"), "presence": {"show": "away", "status": "lunch"}}
    assert p.apply(Update(APP, "alice", 1, {"lobby": new})) == [Updated(APP, "lobby", "alice", new)]
    assert p.apply(Update(APP, "alice", 9, {"lobby": entry("alice", 3)})) == []


def test_an_update_while_reserved_is_what_the_commit_admits() -> None:
    p = part()
    p.apply(reserve("r1", "alice", "lobby"))
    new = {**entry("alice"), "username": "Alice"}
    p.apply(Update(APP, "alice", 1, {"lobby": new}))
    assert Admitted("r1", APP, "lobby", "alice", "n1", new) in p.apply(Commit("r1"))


def test_node_gone_removes_its_members_aborts_its_reservations_and_wakes_waiters() -> None:
    p = part(room_max_connection=2)
    p.apply(join("j1", "alice", "lobby", node="n1"))
    p.apply(reserve("r-bob", "bob", "lobby", node="n2"))
    p.apply(join("j-carol", "carol", "lobby", node="n3"))  # waits for bob's place
    effects = p.apply(NodeGone("n2", "reaper"))
    assert Granted("j-carol", "n3", (), committed=True) in effects
    assert members(p, "lobby") == ["alice", "carol"]
    effects = p.apply(NodeGone("n1", "reaper"))
    assert effects == [Left(APP, "lobby", "alice", "n1")]
    assert p.apply(NodeGone("n1", "reaper")) == []
    # a dead node's request read after its node-gone holds nothing
    assert p.apply(join("late", "eve", "lobby", node="n2")) == [
        Denied("late", "n2", APP, "eve", "gone")
    ]


def test_a_node_taken_for_dead_that_says_it_is_back_is_decided_again() -> None:
    p = part()
    p.apply(join("j1", "alice", "lobby", node="n1"))
    assert Left(APP, "lobby", "alice", "n1") in p.apply(NodeGone("n1", "reaper"))
    assert p.apply(join("j2", "alice", "lobby", node="n1")) == [
        Denied("j2", "n1", APP, "alice", "gone")
    ]
    assert p.apply(NodeBack("n1")) == []
    assert p.apply(join("j3", "alice", "lobby", node="n1"))[-1] == Admitted(
        "j3", APP, "lobby", "alice", "n1", entry("alice")
    )
    assert decode(encode(NodeBack("n1"))) == NodeBack("n1")
    assert "n1" not in Partition.restore(p.snapshot(), lambda app: RoomRules()).gone


def test_rooms_are_created_and_removed_as_the_core_does() -> None:
    p = part(room_auto_create_enable=False)
    assert p.apply(join("j1", "alice", "lobby")) == [Denied("j1", "n1", APP, "alice", "missing")]
    p.apply(join("j2", "alice", "default"))  # the default room always exists
    assert p.apply(Leave(APP, "alice", 1, ("default",), "n1")) == [
        Left(APP, "default", "alice", "n1")
    ]  # and is kept when empty
    assert p.room(APP, "default") is not None
    q = part()
    q.apply(join("j1", "alice", "lobby"))
    assert q.apply(SetField(APP, "lobby", "topic", "cats")) == [
        FieldSet(APP, "lobby", "topic", "cats", True)
    ]
    q.apply(Leave(APP, "alice", 1, ("lobby",), "n1"))
    assert q.room(APP, "lobby") is not None  # a room with a field is kept, as the core keeps it
    assert q.apply(SetField(APP, "nowhere", "topic", "x")) == []
    r = part(reclaim_empty_rooms=False)
    r.apply(join("j1", "alice", "lobby"))
    assert r.apply(Leave(APP, "alice", 1, ("lobby",), "n1")) == [Left(APP, "lobby", "alice", "n1")]


def test_server_code_keeps_and_deletes_rooms_as_the_core_does() -> None:
    """``create_room``: made if missing, kept when empty, joined without creating it;
    ``delete_room``: only an empty room, even one kept when empty."""
    p = part(room_auto_create_enable=False)
    assert p.apply(Keep("k1", "n2", APP, "stage")) == [
        RoomCreated(APP, "stage"),
        RoomKept("k1", "n2", APP, "stage", True),
    ]
    assert p.apply(join("j1", "alice", "stage"))[0] == Granted("j1", "n1", (), committed=True)
    assert p.apply(Keep("k2", "n1", APP, "stage")) == [RoomKept("k2", "n1", APP, "stage", False)]
    assert p.apply(Remove("d1", "n2", APP, "stage")) == [
        RoomDeleted("d1", "n2", APP, "stage", "occupied")
    ]
    p.apply(Leave(APP, "alice", 1, ("stage",), "n1"))
    assert p.room(APP, "stage") is not None  # kept when empty
    assert p.apply(Remove("d2", "n2", APP, "stage")) == [
        RoomRemoved(APP, "stage"),
        RoomDeleted("d2", "n2", APP, "stage", ""),
    ]
    assert p.apply(Remove("d3", "n2", APP, "stage")) == [
        RoomDeleted("d3", "n2", APP, "stage", "missing")
    ]
    assert p.apply(join("j2", "alice", "stage")) == [Denied("j2", "n1", APP, "alice", "missing")]


def test_a_room_kept_while_a_join_creates_it_is_settled_with_that_join() -> None:
    p = part()
    p.apply(reserve("r1", "alice", "lobby"))
    assert p.apply(Keep("k1", "n2", APP, "lobby")) == []  # the join's creation first
    assert p.apply(Remove("d1", "n2", APP, "lobby")) == [
        RoomDeleted("d1", "n2", APP, "lobby", "occupied")
    ]
    effects = p.apply(Commit("r1"))
    assert RoomKept("k1", "n2", APP, "lobby", False) in effects  # made by the join
    q = part()
    q.apply(reserve("r1", "alice", "lobby"))
    q.apply(Keep("k1", "n2", APP, "lobby"))
    q.apply(Keep("k2", "n1", APP, "lobby"))
    assert q.apply(Abort("r1", "n1")) == [
        RoomCreated(APP, "lobby"),
        RoomKept("k1", "n2", APP, "lobby", True),  # made by the first keep, kept when empty
        RoomKept("k2", "n1", APP, "lobby", False),
    ]
    assert q.room(APP, "lobby") is not None


def test_a_reservation_creating_a_room_makes_others_wait_for_its_outcome() -> None:
    p = part()
    assert p.apply(reserve("r1", "alice", "lobby")) == [Granted("r1", "n1", ("lobby",))]
    assert p.room(APP, "lobby") is None  # not created until committed
    assert p.apply(join("j2", "bob", "lobby")) == []
    effects = p.apply(Abort("r1", "n1"))
    assert Granted("j2", "n1", ("lobby",), committed=True) in effects  # bob creates it


def test_the_census_keeps_max_rooms_per_app_exact() -> None:
    # max_rooms_per_app 3 with the default room: two more rooms fit
    p = part(max_rooms_per_app=3)
    claim = reserve("r1", "alice", count=("a", "b"))
    assert p.apply(claim) == [Granted("r1", "n1", ())]
    # a claim that fits only if r1 aborts waits for it
    assert p.apply(reserve("r2", "bob", count=("c",))) == []
    assert p.apply(Commit("r1", ("a",))) == [Granted("r2", "n1", ())]  # "b" was not created
    assert p.counted(APP) == {"default", "a", "c"}
    assert p.apply(reserve("r3", "carol", count=("d",))) == []
    assert p.apply(Commit("r2", ("c",)))[-1] == Denied("r3", "n1", APP, "carol", "too_many")
    p.apply(Release(APP, "a", "r1"))
    p.apply(Release(APP, "a", "r1"))  # idempotent
    assert p.counted(APP) == {"default", "c"}


def test_creating_a_room_without_a_census_claim_is_refused_retry() -> None:
    p = part(max_rooms_per_app=5)
    assert p.apply(join("j1", "alice", "lobby")) == [Denied("j1", "n1", APP, "alice", "retry")]
    covered = Reserve("j2", "n1", APP, "alice", 1, {"lobby": entry("alice")}, frozenset({"lobby"}))
    granted = p.apply(covered)
    assert granted == [Granted("j2", "n1", ("lobby",))]
    p.apply(Commit("j2", ("lobby",)))
    effects = p.apply(Leave(APP, "alice", 1, ("lobby",), "n1"))
    assert ToRelease(APP, "lobby", "j2", "n1") in effects  # its place goes back to the census


def test_a_dead_nodes_creation_gives_its_census_claim_back() -> None:
    p = part(max_rooms_per_app=5)
    covered = Reserve("r1", "n2", APP, "bob", 1, {"lobby": entry("bob")}, frozenset({"lobby"}))
    p.apply(covered)
    assert p.apply(NodeGone("n2", "reaper")) == [ToRelease(APP, "lobby", "r1", "reaper")]


def test_snapshot_then_the_rest_of_the_log_is_the_whole_log() -> None:
    facts = [
        join("j1", "alice", "lobby"),
        reserve("r1", "bob", "lobby", "attic", node="n2"),
        Keep("k1", "n1", APP, "attic"),
        join("j2", "carol", "lobby"),
        SetField(APP, "lobby", "topic", {"t": 1}),
        Commit("r1"),
        Leave(APP, "alice", 1, ("lobby",), "n1"),
        NodeGone("n2", "reaper"),
    ]
    for cut in range(len(facts) + 1):
        whole, head = part(room_max_connection=2), part(room_max_connection=2)
        for fact in facts[:cut]:
            whole.apply(fact)
            head.apply(fact)
        data = orjson.loads(orjson.dumps(head.snapshot()))
        rest = Partition.restore(data, head.rules)
        for fact in facts[cut:]:
            assert rest.apply(fact) == whole.apply(fact)
        assert rest.snapshot() == whole.snapshot()


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"k": "nope"}',
        b'{"k": "join", "rid": "r"}',
        b'{"k": "join", "rid": "r", "node": "n", "app": "a", "cid": "c", "login": true,'
        b' "rooms": {}}',
        b'{"k": "join", "rid": "r", "node": "n", "app": "a", "cid": "c", "login": 1,'
        b' "rooms": {"x": 5}}',
        b'{"k": "leave", "app": "a", "cid": "c", "login": 1, "rooms": "x", "by": "n"}',
        b'{"k": "commit", "rid": "r", "created": [1]}',
        b'{"k": "field", "app": "a", "room": "r", "name": "f"}',
        b'{"k": "node-gone", "node": ""}',
        b'{"k": "keep", "rid": "r", "node": "n", "app": "a"}',
        b'{"k": "remove", "rid": "r", "node": "n", "app": "a", "room": 3}',
    ],
)
def test_a_malformed_fact_is_refused_not_a_crash(raw: bytes) -> None:
    with pytest.raises(FactError):
        decode(raw)


@pytest.mark.parametrize("junk", [None, [], {"v": 1}, {"v": 1, "rooms": {"a": 3}}])
def test_a_malformed_snapshot_is_refused_not_a_crash(junk: object) -> None:
    with pytest.raises(FactError):
        Partition.restore(junk, lambda app: RoomRules())


def test_every_fact_reads_back_as_written() -> None:
    facts = [
        join("j1", "alice", "lobby"),
        reserve("r1", "bob", "a", covered=frozenset({"a"}), count=("a", "b")),
        Commit("r1", ("a",)),
        Abort("r1", "n1"),
        Update(APP, "alice", 1, {"lobby": entry("alice")}),
        Leave(APP, "alice", 1, ("lobby",), "n1"),
        SetField(APP, "lobby", "topic", [1, {"x": None}], False),
        Keep("k1", "n1", APP, "lobby"),
        Remove("d1", "n2", APP, "lobby"),
        Release(APP, "a", "r1"),
        NodeGone("n1", "n2"),
    ]
    for fact in facts:
        assert decode(encode(fact)) == fact


def test_rules_are_read_from_the_protocol_options() -> None:
    opts = ProtocolOptions().replace(room_max_connection=4, room_default_enable=False)
    assert RoomRules.of(opts) == RoomRules(4, True, 10_000, None, True)


# -- the requesting node's side --------------------------------------------------------------


def test_a_request_acquires_partitions_in_ascending_order_then_commits_all() -> None:
    where = {"b": 2, "a": 0, "c": 1}
    req = RoomRequest("q", "n1", APP, "alice", 1, {r: entry("alice") for r in where}, where.get)
    first = req.start()
    assert [(a.partition, sorted(a.fact.rooms)) for a in first] == [(0, ["a"])]  # type: ignore[union-attr]
    assert [a.partition for a in req.on_granted(Granted("q", "n1"))] == [1]
    assert [a.partition for a in req.on_granted(Granted("q", "n1"))] == [2]
    done = req.on_granted(Granted("q", "n1"))
    assert done == [Append(p, Commit("q")) for p in (0, 1, 2)]
    assert req.result == "admitted"


def test_a_refusal_aborts_the_partitions_granted_so_far() -> None:
    where = {"a": 0, "b": 1, "c": 2}
    req = RoomRequest("q", "n1", APP, "alice", 1, {r: entry("alice") for r in where}, where.get)
    req.start()
    req.on_granted(Granted("q", "n1"))
    req.on_granted(Granted("q", "n1"))
    aborts = req.on_denied(Denied("q", "n1", APP, "alice", "full"))
    assert aborts == [Append(0, Abort("q", "n1")), Append(1, Abort("q", "n1"))]
    assert req.result == "full"


def test_a_retry_claims_every_room_in_the_census_partition() -> None:
    where = {"a": 0, "b": 2}
    req = RoomRequest("q", "n1", APP, "alice", 1, {r: entry("alice") for r in where}, where.get, 1)
    assert req.start()[0].fact == Reserve("q", "n1", APP, "alice", 1, {"a": entry("alice")})
    again = req.on_denied(Denied("q", "n1", APP, "alice", "retry"))
    assert [a.partition for a in again] == [0]
    assert again[0].fact.rid == "q~1"  # type: ignore[union-attr]
    assert again[0].fact.covered == {"a"}  # type: ignore[union-attr]
    census = req.on_granted(Granted("q~1", "n1", ("a",)))
    assert census[0].partition == 1
    assert census[0].fact.count == ("a", "b")  # type: ignore[union-attr]
    req.on_granted(Granted("q~1", "n1"))
    commits = req.on_granted(Granted("q~1", "n1"))
    assert [a.partition for a in commits] == [1, 0, 2]  # the census's commit first
    assert commits[0].fact == Commit("q~1", ("a",))


def test_the_connection_limit_is_checked_by_the_members_node() -> None:
    assert connection_refusal({"a", "b"}, ["b", "c"], 3) is None
    assert connection_refusal({"a", "b"}, ["c", "d"], 3) == "too_many"
    assert connection_refusal({"a", "b"}, ["c", "d"], 0) is None


def test_a_new_room_starts_with_the_default_room_fields() -> None:
    opts = ProtocolOptions().replace(
        room_default_field_obj={"topic": {"fieldValue": "hi", "fieldOption": {"isShared": True}}},
        max_rooms_per_app=0,
    )
    rules = RoomRules.of(opts)
    p = Partition(lambda app: rules)
    p.apply(join("j1", "alice", "lobby"))
    assert p.room(APP, "lobby").fields == {"topic": ["hi", True]}  # type: ignore[union-attr]


def test_a_node_dying_between_its_commits_never_leaves_a_room_uncounted() -> None:
    # room "a" lives in partition 0, the application's census in partition 1
    rules = RoomRules(max_rooms_per_app=5)
    parts = [Partition(lambda app: rules) for _ in range(2)]
    req = RoomRequest(
        "q", "n1", APP, "alice", 1, {"a": entry("alice")}, {"a": 0}.__getitem__, 1, frozenset("a")
    )
    pending = req.start()
    while req.result is None:
        (item,) = pending
        (decision,) = [e for e in parts[item.partition].apply(item.fact) if isinstance(e, Granted)]
        pending = req.on_granted(decision)
    first, _second = pending  # the node dies after appending the first commit only
    parts[first.partition].apply(first.fact)
    for p in (1, 0):
        effects = parts[p].apply(NodeGone("n1", "reaper"))
        created = {name for name, room in parts[0].rooms.get(APP, {}).items() if room.created}
        assert created <= parts[1].counted(APP), "a room exists that the census does not count"
        for effect in effects:
            if isinstance(effect, ToRelease):
                parts[1].apply(Release(effect.app, effect.room, effect.permit))
    assert parts[1].counted(APP) == {"default"}


names = st.sampled_from(["x", "y", "default"])
rids = st.sampled_from(["r1", "r2", "r3", "r4"])
nodes = st.sampled_from(["n1", "n2"])
cids = st.sampled_from(["a", "b", "c"])
logins = st.integers(1, 2)
any_fact = st.one_of(
    st.builds(
        Reserve,
        rids,
        nodes,
        st.just(APP),
        cids,
        logins,
        st.dictionaries(names, st.builds(entry, cids, st.integers(0, 3)), max_size=3),
        st.frozensets(names),
        st.none() | st.lists(names, max_size=3, unique=True).map(tuple),
        st.booleans(),
    ),
    st.builds(Commit, rids, st.lists(names, max_size=3, unique=True).map(tuple)),
    st.builds(Abort, rids, nodes),
    st.builds(Update, st.just(APP), cids, logins, st.dictionaries(names, st.just({"u": 1}))),
    st.builds(Leave, st.just(APP), cids, logins, st.lists(names, unique=True).map(tuple), nodes),
    st.builds(SetField, st.just(APP), names, st.just("f"), st.integers(-9, 9), st.booleans()),
    st.builds(Release, st.just(APP), names, rids),
    st.builds(Keep, rids, nodes, st.just(APP), names),
    st.builds(Remove, rids, nodes, st.just(APP), names),
    st.builds(NodeGone, nodes, nodes),
    st.builds(NodeBack, nodes),
)


@given(
    st.lists(any_fact, max_size=40),
    st.integers(0, 40),
    st.integers(0, 2),
    st.sampled_from([0, 2, 3]),
    st.booleans(),
)
def test_any_sequence_of_facts_applies_and_snapshots_exactly(
    facts: list[Fact], cut: int, limit: int, most: int, create: bool
) -> None:
    """Facts in any order, commits of unknown reservations and all (a confused or hostile
    node): no crash, no room over its limit, and a snapshot anywhere is the state."""
    rules = RoomRules(limit, create, most)
    whole, head = Partition(lambda app: rules), Partition(lambda app: rules)
    for fact in facts[:cut]:
        assert decode(encode(fact)) == fact
        whole.apply(fact)
        head.apply(fact)
    rest = Partition.restore(orjson.loads(orjson.dumps(head.snapshot())), head.rules)
    for fact in facts[cut:]:
        assert rest.apply(fact) == whole.apply(fact)
        for room in whole.rooms.get(APP, {}).values():
            assert not limit or room.taken() <= limit
            assert room.created or not room.members
        if most:
            assert len(whole.counted(APP)) <= most
    assert rest.snapshot() == whole.snapshot()
