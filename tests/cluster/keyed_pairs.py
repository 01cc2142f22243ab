"""Driving ``clients/keyed_pairs.js``: keyed Node clients in pairs through a balancer, and what
they saw (for ``test_continuity`` and ``bench/continuity.py``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "clients" / "keyed_pairs.js"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Pairs:
    proc: asyncio.subprocess.Process
    count: int
    dropped: int = 0
    resumed: list[int] = field(default_factory=list)
    """Milliseconds from each drop to its resume, as they come."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    summary: dict[str, Any] | None = None
    lines: list[str] = field(default_factory=list)
    """Every line but the summary, each after the seconds since the clients started."""
    started: float = field(default_factory=time.monotonic)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item["ev"] == "ready":
                self.ready.set()
            elif item["ev"] == "dropped":
                self.dropped += 1
            elif item["ev"] == "resumed":
                self.resumed.append(item["ms"])
            elif item["ev"] == "summary":
                self.summary = item
            if item["ev"] != "summary":
                at = time.monotonic() - self.started
                self.lines.append(f"{at:8.3f} {line.decode()[:300].rstrip()}")
            self._changed.set()

    async def settled_after(self, drops: int) -> None:
        """Until ``drops`` drops were seen in all, and every client that dropped is logged in
        again (callers bound the wait)."""
        while self.dropped < drops or len(self.resumed) < self.dropped:
            self._changed.clear()
            await self._changed.wait()

    def errors(self) -> list[str]:
        return self.lines[-10:]

    async def mark(self, name: str) -> None:
        """Note the clients' time now as ``name`` (``Verdict`` reads ``kill``/``killed``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"mark {name}\n".encode())
        await self.proc.stdin.drain()

    async def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        while self.summary is None:
            self._changed.clear()
            await self._changed.wait()
        return self.summary


@asynccontextmanager
async def keyed_pairs(
    url: str, count: int, interval_ms: int = 300, rooms: str = "one"
) -> AsyncIterator[Pairs]:
    """``rooms``: "one" (every client in one room) or "pairs" (a room per pair)."""
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), url, str(count), str(interval_ms), rooms,
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,
    )  # fmt: skip
    pairs = Pairs(proc, count)
    reader = asyncio.create_task(pairs.read())
    try:
        yield pairs
    finally:
        if proc.returncode is None:
            with suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
        reader.cancel()


@dataclass
class Verdict:
    """What the clients saw, checked against the promises of ``hold``."""

    changed_ids: list[int]
    removed_keyed: list[tuple[int, str]]
    lost: list[tuple[int, int]]
    """(receiver, n) acknowledged to the sender but never received (``in_flight`` aside)."""
    in_flight: list[tuple[int, int]]
    """Lost ones sent to a client of a ``kill -9``ed node from just before the kill until that
    client resumed: relayed to the dead node over pub/sub, before any node knew the client had
    moved (none since the senders' nodes keep them until confirmed, ``delivery``)."""
    duplicated: list[tuple[int, int]]
    refused: int
    unacked: int
    accepted: int
    reordered: list[tuple[int, int]] = field(default_factory=list)
    """(receiver, n) received after a later message of the same sender."""
    repeats: int = 0
    """Second copies of messages (sent again after a resume) the clients dropped by their
    stamp (``delivery``)."""


IN_FLIGHT_MS = 1000
"""How long before a kill a relay may still be on its way to the node (a loaded machine)."""


def _kill_windows(summary: dict[str, Any], client: dict[str, Any]) -> list[tuple[int, int]]:
    """When messages to ``client`` may have gone to a killed node: from shortly before each
    ``kill`` mark to the end of the drop of this client it caused."""
    marks = summary.get("marks", [])
    windows: list[tuple[int, int]] = []
    for (name, start), (_end_name, end) in itertools.pairwise(marks):
        if name != "kill":
            continue
        for dropped, resumed in client.get("spans", []):
            if start - IN_FLIGHT_MS <= dropped <= end:
                windows.append((start - IN_FLIGHT_MS, resumed))
    return windows


def verdict(summary: dict[str, Any]) -> Verdict:
    clients = summary["clients"]
    keyed = {cid for c in clients for cid in c["ids"]}
    changed = [c["index"] for c in clients if len(c["ids"]) != 1]
    removed = [(c["index"], cid) for c in clients for cid in c["removed"] if cid in keyed]
    lost: list[tuple[int, int]] = []
    in_flight: list[tuple[int, int]] = []
    duplicated: list[tuple[int, int]] = []
    reordered: list[tuple[int, int]] = []
    for c in clients:
        partner = clients[c["index"] ^ 1]
        got = Counter(c["received"])
        duplicated += [(c["index"], n) for n, k in got.items() if k > 1]
        highest = -1
        for n in c["received"]:
            if n < highest:
                reordered.append((c["index"], n))
            highest = max(highest, n)
        windows = _kill_windows(summary, c)
        sent_at = partner.get("sentAt", [])
        for n in partner["accepted"]:
            if n in got:
                continue
            at = sent_at[n] if n < len(sent_at) else None
            killed = at is not None and any(start <= at <= end for start, end in windows)
            (in_flight if killed else lost).append((c["index"], n))
    return Verdict(
        changed,
        removed,
        lost,
        in_flight,
        duplicated,
        sum(len(c["refused"]) for c in clients),
        sum(len(c["unacked"]) for c in clients),
        sum(len(c["accepted"]) for c in clients),
        reordered,
        sum(c.get("repeats", 0) for c in clients),
    )


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0
