"""A ``stock`` entry gives every replica what the event and its origin's answers give.

A node whose hooks decide as the stock ones logs a login or a ``roomJoin`` as one ``stock``
entry, and every replica answers its decisions itself (``protocol/stock.py``). Hypothesis runs
the same clients' actions on two clusters: one logs each event and its origin's stock answers as
separate entries (as every node did before), the other logs ``stock`` entries (a refusing hook is
no stock hook: those stay separate there too). Both must end in the same state and send the same
messages to the same sockets, up to the times (fewer entries, fewer clock ticks).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from easyrtc_server.cluster import log as entries
from easyrtc_server.cluster.log import LogEntry
from easyrtc_server.cluster.replica import Applied, Replica
from easyrtc_server.hooks import Hooks, decides_as_stock
from easyrtc_server.jwtauth import JwtAuth
from easyrtc_server.protocol.core import changes_state
from easyrtc_server.protocol.decisions import LoginRequested, Refused
from easyrtc_server.protocol.model import Peer
from easyrtc_server.protocol.outcome import Outcome

from .test_replica import ACTIONS, NODES, OPTIONS, Cluster, run, sends, yes

TIMES = ("serverTime", "roomJoinTime")


def timeless(value: Any) -> Any:
    """``value`` without its clock readings."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list | tuple):
        return [timeless(v) for v in value]
    return value


@dataclass
class Recording(Cluster):
    """A cluster that keeps what each node sent, in order."""

    sent: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))

    def append(self, entry: LogEntry) -> dict[str, Applied]:
        if getattr(self, "scoped", False):  # each node builds its own sends: they differ
            self.log.append(entry)
            applied = {node: r.apply(entry) for node, r in self.replicas.items()}
        else:
            applied = super().append(entry)
        for node, result in applied.items():
            if isinstance(result.result, Outcome):
                self.sent[node].extend(timeless(sends(result)))
        return applied

    def state(self) -> list[Any]:
        """Every replica's state, its join times left out."""
        out = []
        for dump in self.dumps():
            for app in dump["apps"].values():
                for room in app["rooms"].values():
                    room["members"] = [[cid, api] for cid, _joined, api in room["members"]]
            out.append(dump)
        return out


@dataclass
class Stock(Recording):
    """Logs a stock-hooked event as one ``stock`` entry; opens its sockets with the ids the
    other cluster drew (``ids``)."""

    ids: Iterator[str] = field(default_factory=lambda: iter(()))
    logins: dict[str, Any] = field(default_factory=dict)
    """The messages of the logins under way (what the origin gives back to the request)."""

    scoped: bool = False
    """Each replica builds only its node's sends (``NodeSockets``), as a node's does."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scoped:
            for node in self.replicas:
                here = lambda cid, node=node: (node, cid) in self.peers  # noqa: E731
                self.replicas[node] = Replica.new(OPTIONS, node, here=here)
        for replica in self.replicas.values():
            replica.on_login = self.give_back

    def give_back(self, entry: LogEntry, requested: LoginRequested) -> None:
        if entry.peer in self.logins:
            requested.request.message = self.logins[entry.peer]

    def open(self, node: str) -> str:
        cid = next(self.ids)
        self.replicas[node].core.state.peers[cid] = Peer(cid, "127.0.0.1")
        self.peers.append((node, cid))
        return cid

    def event(self, node: str, cid: str, event: str, data: Any, refuse_at: int | None) -> None:
        origin = self.replicas[node].core
        if refuse_at is not None or not changes_state(origin.peers[cid], event, data, True):
            super().event(node, cid, event, data, refuse_at)
            return
        checked = origin.check(origin.peers[cid], event, data)
        if isinstance(checked, Outcome):
            return
        self.logins[cid] = data
        entry = entries.recv(node, next(self.clock), cid, "127.0.0.1", event, checked, stock=True)
        step = self.append(entry)[node].result
        while not isinstance(step, Outcome):  # what the stock hooks leave to the origin
            step = self.append(entries.answer(node, next(self.clock), cid, yes(step)))[node].result


@settings(max_examples=60, deadline=None)
@given(st.lists(ACTIONS, max_size=40))
def test_stock_entries_give_what_the_event_and_its_answers_give(
    actions: list[tuple[Any, ...]],
) -> None:
    separate = Recording()
    opened: list[str] = []
    for action in actions:
        before = len(separate.peers)
        run(separate, action)
        opened += [cid for _, cid in separate.peers[before:]]
    stock = Stock(ids=iter(opened))
    for action in actions:
        run(stock, action)
    assert stock.state() == separate.state()
    assert stock.sent == separate.sent
    assert len(stock.log) <= len(separate.log)


def test_a_login_is_one_entry_and_its_token_is_built_on_its_node_alone() -> None:
    cluster = Stock(ids=iter(["A" * 16, "B" * 16]), scoped=True)
    a, b = cluster.open("n1"), cluster.open("n2")
    for node, cid in (("n1", a), ("n2", b)):
        room = {"r": {"roomName": "r"}}
        data = {"apiVersion": "1.1.1-beta", "username": cid[:3], "roomJoin": room}
        cluster.event(node, cid, "easyrtcAuth", {"msgType": "authenticate", "msgData": data}, None)
    assert [entry.kind for entry in cluster.log] == [entries.STOCK, entries.STOCK]
    tokens = {
        node: [body for to, _e, body in cluster.sent[node] if to == "reply"] for node in NODES
    }
    assert len(tokens["n1"]) == 1 and len(tokens["n2"]) == 1 and tokens["n3"] == []
    assert tokens["n2"][0]["msgType"] == "token"
    assert set(tokens["n2"][0]["msgData"]["roomData"]["r"]["clientList"]) == {a, b}
    told = [to for to, event, _body in cluster.sent["n1"] if event == "easyrtcCmd"]
    assert told == [a]  # b's arrival, to a, by a's node only
    for replica in cluster.replicas.values():
        assert not replica.pending
        assert set(replica.core.apps["default"].rooms["r"].members) == {a, b}


def test_hooks_decide_as_stock_unless_a_deciding_hook_is_overridden() -> None:
    class Counting(Hooks):
        async def disconnect(self, conn: Any) -> None:  # decides nothing
            pass

    class Refusing(Hooks):
        async def room_join(self, *args: Any) -> None:
            raise RuntimeError("no")

    assert decides_as_stock(Hooks())
    assert decides_as_stock(Counting())
    assert not decides_as_stock(Refusing())
    assert not decides_as_stock(JwtAuth("s" * 32))


def test_an_origin_refusal_keeps_the_separate_entries() -> None:
    cluster = Stock(ids=iter(["C" * 16]))
    cid = cluster.open("n1")
    data = {"apiVersion": "1.1.1-beta", "roomJoin": {"r": {"roomName": "r"}}}
    message = {"msgType": "authenticate", "msgData": data}
    cluster.event(node := "n1", cid, "easyrtcAuth", message, 0)
    assert [entry.kind for entry in cluster.log] == [entries.RECV, entries.ANSWER]
    assert entries.answer_of(cluster.log[1].body) == Refused("LOGIN_BAD_AUTH", None)
    assert all(cid not in r.core.state.peers or r.core.state.peers[cid].connection is None
               for r in cluster.replicas.values()), node  # fmt: skip
