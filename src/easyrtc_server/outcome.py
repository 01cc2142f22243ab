"""What the core returns for one event: an ordered list of sends, and whether to close."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

Json = dict[str, Any]
Send = tuple[str | None, str, Json]
"""``(easyrtcid, event, body)``; easyrtcid ``None`` is the acknowledgement to the sender."""

ACK: Final[Json] = {"msgType": "ack"}
"""The plain success reply. Shared, so never mutate it."""


@dataclass(slots=True)
class Outcome:
    """What one event makes the server do, in order."""

    sends: list[Send] = field(default_factory=list)
    close: bool = False
    """Close the sender's socket after the sends (failed authentication)."""

    def reply(self, body: Json) -> Outcome:
        self.sends.append((None, "", body))
        return self

    def push(self, easyrtcid: str, event: str, body: Json) -> None:
        self.sends.append((easyrtcid, event, body))
