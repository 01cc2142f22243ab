"""The requesting node's side of a join spanning partitions (issue 23; driven by ``partitioned``).

A login or ``roomJoin`` naming rooms of several partitions is all or nothing. The member's
node acquires the partitions **in ascending order**: it appends ``reserve`` to the lowest and
waits for that partition to decide it (``partition.Granted`` or ``Denied``), then the next;
when every one is granted it appends ``commit`` to each, else ``abort`` to those granted.
Since every request acquires in the same global order, no two wait on each other in a cycle.
Rooms all in one partition are one ``join`` fact (decided and committed at once).

The facts are to be appended in the order returned, each append finished (retried if need
be) before the next and before the node acts on a decision: the census's ``commit`` lands
before the rooms' (a node dying in between leaves rooms uncreated, whose claims ``node-gone``
gives back, never rooms created uncounted), and a reservation appended twice lands while it
is still open (the partition ignores the second copy).

Where the application limits its rooms (``max_rooms_per_app``), a request that may create
rooms also claims their names in the application's census partition, in the same ascending
order. A room found missing with no claim covering it is refused ``retry``: the request then
starts again (a new rid) with every room claimed, which cannot be refused ``retry`` again.

``RoomRequest`` is pure: it takes the partitions' decisions for its rid and returns the facts
to append, as ``Append(partition, fact)``; the driver appends and routes the effects. It must
not know how facts travel or what a reply looks like. One connection has one request in
flight at a time (its node serializes its room requests, as the core does its messages).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from .facts import Abort, Commit, Fact, Json, Reserve
from .partition import RETRY, TOO_MANY, Denied, Granted


@dataclass(frozen=True, slots=True)
class Append:
    """A fact for partition ``partition``'s log."""

    partition: int
    fact: Fact


def connection_refusal(member_of: Collection[str], names: Iterable[str], limit: int) -> str | None:
    """``too_many`` when a connection in ``member_of`` joining ``names`` would be in more than
    ``limit`` rooms (0: no limit). Its node, the only one adding it to rooms, checks this."""
    if not limit:
        return None
    new = sum(1 for name in dict.fromkeys(names) if name not in member_of)
    return TOO_MANY if len(member_of) + new > limit else None


@dataclass(slots=True, eq=False)
class RoomRequest:
    """One connection's join of ``rooms`` (``{room: entry}``), all or nothing.

    ``partition_of`` maps a room to its partition; ``census``: the application's partition
    when it limits its rooms, else None; ``expect``: rooms the node expects to create (missing
    from what it reads), claimed from the start. ``result`` is None while in flight, then
    ``"admitted"`` or the refusal's reason.
    """

    rid: str
    node: str
    app: str
    cid: str
    login: int
    rooms: Mapping[str, Json]
    partition_of: Callable[[str], int]
    census: int | None = None
    expect: frozenset[str] = frozenset()
    result: str | None = None
    attempt: int = 0
    steps: list[int] = field(default_factory=list)
    granted: list[int] = field(default_factory=list)
    creates: list[str] = field(default_factory=list)

    @property
    def current(self) -> str:
        """The rid of the attempt in flight (a retry is a new request in every partition)."""
        return self.rid if not self.attempt else f"{self.rid}~{self.attempt}"

    def start(self) -> list[Append]:
        """The first fact to append."""
        parts = {self.partition_of(name) for name in self.rooms}
        if self.census is not None and self.expect:
            parts.add(self.census)
        self.steps = sorted(parts)
        self.granted, self.creates = [], []
        return [self._step(self.steps[0])]

    def on_granted(self, effect: Granted) -> list[Append]:
        if effect.rid != self.current or self.result is not None:
            return []
        self.granted.append(self.steps[len(self.granted)])
        self.creates.extend(effect.creates)
        if effect.committed:
            self.result = "admitted"
            return []
        if len(self.granted) < len(self.steps):
            return [self._step(self.steps[len(self.granted)])]
        self.result = "admitted"
        created = tuple(dict.fromkeys(self.creates))
        order = sorted(self.steps, key=lambda p: p != self.census)  # the census's first
        return [Append(p, Commit(self.current, created)) for p in order]

    def on_denied(self, effect: Denied) -> list[Append]:
        if effect.rid != self.current or self.result is not None:
            return []
        aborts = [Append(p, Abort(self.current, self.node)) for p in self.granted]
        if effect.reason == RETRY and self.census is not None and self.expect != set(self.rooms):
            self.attempt += 1
            self.expect = frozenset(self.rooms)
            return [*aborts, *self.start()]
        self.result = TOO_MANY if effect.reason == RETRY else effect.reason
        return aborts

    def _step(self, partition: int) -> Append:
        here = {name: e for name, e in self.rooms.items() if self.partition_of(name) == partition}
        census_here = partition == self.census
        if census_here:
            covered = frozenset(here)
        elif self.census is not None and self.census in self.steps and self.census > partition:
            covered = frozenset(here)  # their creations join the claim made later
        else:
            covered = self.expect & set(here)
        count = None
        if census_here:
            count = tuple(dict.fromkeys([*sorted(self.expect), *self.creates]))
        return Append(
            partition,
            Reserve(
                self.current,
                self.node,
                self.app,
                self.cid,
                self.login,
                here,
                covered,
                count,
                join=len(self.steps) == 1,
            ),
        )
