"""A pytest plugin that counts what each socket sends our server, to size the token bucket.

Not a test. Run the browser demos with it and read ``message-counts.json``:

    PYTHONPATH=tests/hardening BROWSER_SERVERS=ours \
        .venv/bin/pytest -p message_counter tests/browser

For each socket: messages in all, the most within 1 s and within 100 ms, and the smallest bucket
(burst) that would never have refused it at several refill rates.
"""

import json
import time
from collections import defaultdict
from typing import Any

from easyrtc_server.server import EasyRtcServer

SEEN: dict[str, list[tuple[float, str, Any]]] = defaultdict(list)
_orig = EasyRtcServer.receive


async def receive(self: EasyRtcServer, peer: Any, event: str, data: Any, ack: Any) -> None:
    mt = data.get("msgType") if isinstance(data, dict) else None
    SEEN[peer.easyrtcid].append((time.monotonic(), event, mt))
    return await _orig(self, peer, event, data, ack)


EasyRtcServer.receive = receive  # type: ignore[method-assign]


def needed_burst(times: list[float], rate: float) -> float:
    """The smallest bucket never emptied: the most messages in a window less what it refills."""
    best = 0.0
    for i, t in enumerate(times):
        for j in range(i, len(times)):
            best = max(best, (j - i + 1) - rate * (times[j] - t))
    return best


def pytest_sessionfinish(session: Any) -> None:
    out = {}
    for pid, evs in SEEN.items():
        ts = [e[0] for e in evs]
        per_sec = max(sum(1 for u in ts if t <= u < t + 1) for t in ts)
        per_100ms = max(sum(1 for u in ts if t <= u < t + 0.1) for t in ts)
        types = defaultdict(int)
        for e in evs:
            types[f"{e[1]}:{e[2]}"] += 1
        out[pid] = {
            "n": len(evs),
            "max_1s": per_sec,
            "max_100ms": per_100ms,
            "burst_needed": {r: round(needed_burst(ts, r), 1) for r in (5, 10, 20, 50)},
            "types": dict(types),
        }
    with open("message-counts.json", "w") as f:
        json.dump(out, f, indent=1)
