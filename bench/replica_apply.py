"""What a cluster node pays to keep a replica of clients that are not its own (issue 23).

Not a test. Every node of today's cluster applies every state change of the whole cluster
(``docs/cluster.md``, "Limits of the design"); this measures, without Redis or sockets, what
that costs a node for logins it does not serve: origins build the log of ``--clients`` logins
into rooms of ``--room-size`` (the stock hooks' answers, as ``tests/cluster/test_replica.py``
builds them), then a replica of a node holding none of those sockets applies it, decoding each
entry as its reader does. It prints per login: the entries and bytes in the log, the CPU to
apply them (best of ``--repeat``), and the memory the replica keeps.

    .venv/bin/python bench/replica_apply.py                      # 20,000 logins, rooms of 4
    .venv/bin/python bench/replica_apply.py --clients 4000 --room-size 1000 --profile

The node's reader adds its own cost per entry on top (the ``XREAD`` reply, ordering, pulses);
``bench/cluster.py`` measures whole nodes.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import time
import tracemalloc
from typing import Any

from easyrtc_server.cluster import log as entries
from easyrtc_server.cluster.log import LogEntry
from easyrtc_server.cluster.replica import Replica
from easyrtc_server.options import Options
from easyrtc_server.protocol.decisions import Answer, Decision
from easyrtc_server.protocol.outcome import Outcome
from easyrtc_server.protocol.stock import stock_answer

OPTIONS = Options(room_max_connection=0)
ORIGINS = ("n1", "n2", "n3")


def answer_of(decision: Decision) -> Answer:
    """The stock hooks' answer, as an origin logs it (four entries for a login, as a node
    whose hooks are its own logs them)."""
    answer = stock_answer(decision, OPTIONS, answering=True)
    assert answer is not None, decision
    return answer


def build_log(clients: int, room_size: int, *, stock: bool = False) -> list[bytes]:
    """The encoded entries of ``clients`` logins, each into its room, from three origins;
    ``stock``: one ``stock`` entry per login, as nodes with the stock hooks log it."""
    origins = {node: Replica.new(OPTIONS, node, here=lambda _cid: True) for node in ORIGINS}
    clock = itertools.count(1_000_000)
    log: list[bytes] = []

    def append(entry: LogEntry) -> Any:
        entry.seq = len(log) + 1
        raw = entry.encode()
        log.append(raw)
        return {node: r.apply(LogEntry.decode(raw)) for node, r in origins.items()}

    for i in range(clients):
        node = ORIGINS[i % len(ORIGINS)]
        core = origins[node].core
        peer = core.open("127.0.0.1")
        room = f"room{i // room_size}"
        message = {
            "msgType": "authenticate",
            "msgData": {
                "apiVersion": "1.1.0",
                "applicationName": "bench",
                "username": f"user{i}",
                "roomJoin": {room: {"roomName": room}},
            },
        }
        checked = core.check(peer, "easyrtcAuth", message)
        assert not isinstance(checked, Outcome), checked
        recv = entries.recv(
            node, next(clock), peer.easyrtcid, "127.0.0.1", "easyrtcAuth", checked, stock=stock
        )
        step = append(recv)[node].result
        while not isinstance(step, Outcome):
            step = append(entries.answer(node, next(clock), peer.easyrtcid, answer_of(step)))
            step = step[node].result
    return log


def apply_all(log: list[bytes]) -> Replica:
    """A replica of a node that holds none of these sockets, fed the whole log."""
    replica = Replica.new(OPTIONS, "elsewhere", here=lambda _cid: False)
    for raw in log:
        replica.apply(LogEntry.decode(raw))
    return replica


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20_000)
    parser.add_argument("--room-size", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="a cProfile of one apply")
    parser.add_argument("--stock", action="store_true", help="one stock entry per login")
    args = parser.parse_args()
    log = build_log(args.clients, args.room_size, stock=args.stock)
    n = args.clients
    size = sum(map(len, log)) / n
    print(f"{n} logins into rooms of {args.room_size}: {len(log)} entries, "
          f"{len(log) / n:.1f} per login, {size:.0f} bytes per login")  # fmt: skip
    best = float("inf")
    for _ in range(args.repeat):
        start = time.process_time()
        apply_all(log)
        best = min(best, time.process_time() - start)
    print(f"apply on a node serving none of them: {best:.3f} CPU s, "
          f"{best / n * 1e6:.1f} us per login (best of {args.repeat})")  # fmt: skip
    tracemalloc.start()
    replica = apply_all(log)
    kept, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(replica.core.state.peers) == n
    print(f"memory kept by the replica: {kept / 1e6:.1f} MB, {kept / n:.0f} bytes per connection")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(apply_all, log)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
