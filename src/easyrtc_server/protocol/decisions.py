"""What the core asks its caller to decide, in the manner of websockets' ``accept``/``reject``.

Where server policy may say no (hooks), the core does not return an ``Outcome`` but one of these
records. The caller makes up its mind (the server awaits its hooks) and answers with an answer
record (``LoginAnswer``, ``JoinAnswer``, ``TokenAnswer``, ``IceAnswer``, ``ReplyAnswer`` or
``Refused``) through ``Core.answer(decision, answer)``, which returns the ``Outcome`` (or, for a
login, the next decision). Answers are plain values, so a cluster can carry them in its log and
every replica applies the same one. Nothing has changed in the state when a decision is
returned, except for ``LoginAdmitted``, whose refusal undoes the admission.

``failure`` is the error code of a refusal whose reason has no code (a hook that crashed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from .errors import ErrorCode
from .model import Connection, Fields, Peer
from .outcome import Json, Outcome


class JoinPhase(StrEnum):
    """Why rooms are being entered: at login, or on a later ``roomJoin``."""

    LOGIN = "login"
    ROOM_JOIN = "roomJoin"


@dataclass(slots=True)
class AuthRequest:
    """A structurally valid ``authenticate`` message, as the ``authenticate`` hook sees it.

    A hook may change ``app_name``, ``username`` and ``rooms``; they are checked again, by the
    same rules as the client's values, before they are used.
    """

    app_name: str
    username: Any  # MISSING when the key was absent
    credential: Any  # MISSING when the key was absent
    easyrtcsid: str | None
    presence: dict[str, Any] | None
    rooms: dict[str, Any]  # room name -> roomParameter (None when absent)
    message: Json
    app_name_given: bool = True
    """The client named its application (else ``app_name`` is the default one)."""


@dataclass(slots=True, eq=False)
class LoginRequested:
    """A structurally valid login: may it proceed? (the ``authenticate`` hook)"""

    peer: Peer
    request: AuthRequest
    failure: ClassVar[ErrorCode] = ErrorCode.LOGIN_BAD_AUTH
    what: ClassVar[str] = "login"


@dataclass(slots=True, eq=False)
class JoinRequested:
    """May the socket enter ``rooms`` (creating those in ``creates``)? (``room_create`` and
    ``room_join``). At login, ``login`` is the login it belongs to; on ``roomJoin``, ``conn``
    is the connection asking."""

    phase: JoinPhase
    app_name: str
    rooms: dict[str, Any]
    """Room name -> roomParameter (None when absent), in the order they are joined."""
    creates: frozenset[str]
    conn: Connection | None = None
    login: LoginRequested | None = None

    @property
    def failure(self) -> ErrorCode:
        if self.phase is JoinPhase.LOGIN:
            return ErrorCode.LOGIN_GEN_FAIL
        return ErrorCode.MSG_REJECT_BAD_ROOM

    @property
    def what(self) -> str:
        return str(self.phase)


@dataclass(slots=True, eq=False)
class LoginAdmitted:
    """The connection is built and in its rooms, its token not sent, no peer told yet: may it
    stay, and with which ICE servers? (``authenticated`` and ``ice_servers``)"""

    peer: Peer
    conn: Connection
    fresh: bool
    """The connection is new (not a login again on the same socket)."""
    out: Outcome = field(default_factory=Outcome)
    """Pushes already due (peers of an application the socket moved away from)."""
    resumes: str | None = None
    """The easyrtcid this login takes back with its resume key (``hold``): ``conn`` is the
    held (or still live) connection, or, ``fresh``, one made anew after a restart. Nothing
    changes until ``finish``."""
    request: AuthRequest | None = None
    """The login request (a resume applies it at ``finish``)."""
    rooms: list[str] = field(default_factory=list)
    """The rooms a resume enters (besides the ones it holds)."""
    failure: ClassVar[ErrorCode] = ErrorCode.LOGIN_GEN_FAIL
    what: ClassVar[str] = "login"


@dataclass(slots=True, eq=False)
class IceRequested:
    """``getIceConfig``: which ICE servers? (``ice_servers``)"""

    conn: Connection
    failure: ClassVar[ErrorCode] = ErrorCode.MSG_REJECT_GEN_FAIL
    what: ClassVar[str] = "getIceConfig"


@dataclass(slots=True, eq=False)
class ServerMessage:
    """An ``easyrtcMsg`` with no target: what does the server answer? (``server_message``)"""

    conn: Connection
    msg: Json
    failure: ClassVar[ErrorCode] = ErrorCode.MSG_REJECT_GEN_FAIL
    what: ClassVar[str] = "server message"


@dataclass(slots=True, eq=False)
class UnknownCommand:
    """An ``easyrtcCmd`` EasyRTC does not define: what does the server answer? (``command``)"""

    conn: Connection
    msg: Json
    failure: ClassVar[ErrorCode] = ErrorCode.MSG_REJECT_GEN_FAIL
    what: ClassVar[str] = "command"


Decision = (
    LoginRequested | JoinRequested | LoginAdmitted | IceRequested | ServerMessage | UnknownCommand
)


# -- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginAnswer:
    """The ``authenticate`` hook let the login proceed, with the values it may have written
    (checked again by the core before they are used)."""

    app_name: Any
    username: Any  # MISSING when absent
    rooms: Any


@dataclass(frozen=True, slots=True)
class JoinAnswer:
    """``room_create`` and ``room_join`` let the rooms be entered."""


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """``authenticated`` let the connection stay, and ``ice_servers`` gave its ICE servers;
    with what the hooks may have written on the connection (its username, presence, fields)."""

    ice_servers: list[Json]
    username: str | None
    presence: dict[str, Any]
    fields: Fields


@dataclass(frozen=True, slots=True)
class IceAnswer:
    """``ice_servers`` for ``getIceConfig``."""

    ice_servers: list[Json]


@dataclass(frozen=True, slots=True)
class ReplyAnswer:
    """The server's reply to a message or command for it (None: a plain ack)."""

    body: Json | None


@dataclass(frozen=True, slots=True)
class Refused:
    """A hook said no with EasyRTC error ``code`` (and maybe its own ``text``)."""

    code: str
    text: str | None = None


Answer = LoginAnswer | JoinAnswer | TokenAnswer | IceAnswer | ReplyAnswer | Refused
