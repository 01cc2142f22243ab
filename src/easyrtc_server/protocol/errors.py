"""EasyRTC error codes and the error messages clients receive.

Clients show ``errorText`` to users, so the texts are the reference server's, byte for byte
(including its "could could" typo). Errors are values on the wire, never exceptions that escape.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Every error code of the EasyRTC protocol; the value is the code sent on the wire."""

    BANNED_IP_ADDR = "BANNED_IP_ADDR"
    LOGIN_APP_AUTH_FAIL = "LOGIN_APP_AUTH_FAIL"
    LOGIN_BAD_APP_NAME = "LOGIN_BAD_APP_NAME"
    LOGIN_BAD_AUTH = "LOGIN_BAD_AUTH"
    LOGIN_BAD_ROOM = "LOGIN_BAD_ROOM"
    LOGIN_BAD_STRUCTURE = "LOGIN_BAD_STRUCTURE"
    LOGIN_BAD_USER_CFG = "LOGIN_BAD_USER_CFG"
    LOGIN_GEN_FAIL = "LOGIN_GEN_FAIL"
    LOGIN_NO_SOCKETS = "LOGIN_NO_SOCKETS"
    LOGIN_TIMEOUT = "LOGIN_TIMEOUT"
    MSG_REJECT_BAD_DATA = "MSG_REJECT_BAD_DATA"
    MSG_REJECT_BAD_ROOM = "MSG_REJECT_BAD_ROOM"
    MSG_REJECT_BAD_FIELD = "MSG_REJECT_BAD_FIELD"
    MSG_REJECT_BAD_SIZE = "MSG_REJECT_BAD_SIZE"
    MSG_REJECT_BAD_STRUCTURE = "MSG_REJECT_BAD_STRUCTURE"
    MSG_REJECT_BAD_TYPE = "MSG_REJECT_BAD_TYPE"
    MSG_REJECT_GEN_FAIL = "MSG_REJECT_GEN_FAIL"
    MSG_REJECT_NO_AUTH = "MSG_REJECT_NO_AUTH"
    MSG_REJECT_NO_ROOM_LIST = "MSG_REJECT_NO_ROOM_LIST"
    MSG_REJECT_PRESENCE = "MSG_REJECT_PRESENCE"
    MSG_REJECT_TARGET_EASYRTCID = "MSG_REJECT_TARGET_EASYRTCID"
    MSG_REJECT_TARGET_GROUP = "MSG_REJECT_TARGET_GROUP"
    MSG_REJECT_TARGET_ROOM = "MSG_REJECT_TARGET_ROOM"
    SERVER_SHUTDOWN = "SERVER_SHUTDOWN"

    @property
    def text(self) -> str:
        return ERROR_TEXTS[self]


_DISCONNECT = " Socket will be disconnected."

ERROR_TEXTS: dict[ErrorCode, str] = {
    ErrorCode.BANNED_IP_ADDR: "Client IP address is banned." + _DISCONNECT,
    ErrorCode.LOGIN_APP_AUTH_FAIL: "Authentication for application failed." + _DISCONNECT,
    ErrorCode.LOGIN_BAD_APP_NAME: "Provided application name is improper." + _DISCONNECT,
    ErrorCode.LOGIN_BAD_AUTH: "Authentication for application failed." + _DISCONNECT,
    ErrorCode.LOGIN_BAD_ROOM: "Requested room is invalid or does not exist." + _DISCONNECT,
    ErrorCode.LOGIN_BAD_STRUCTURE: (
        "Authentication for application failed. The provided structure is improper." + _DISCONNECT
    ),
    ErrorCode.LOGIN_BAD_USER_CFG: (
        "Provided configuration options improper or invalid." + _DISCONNECT
    ),
    ErrorCode.LOGIN_GEN_FAIL: "Authentication failed." + _DISCONNECT,
    ErrorCode.LOGIN_NO_SOCKETS: "No sockets available for account." + _DISCONNECT,
    ErrorCode.LOGIN_TIMEOUT: "Login has timed out." + _DISCONNECT,
    ErrorCode.MSG_REJECT_BAD_DATA: "Message rejected. The provided msgData is improper.",
    ErrorCode.MSG_REJECT_BAD_ROOM: "Message rejected. Requested room is invalid or does not exist.",
    ErrorCode.MSG_REJECT_BAD_FIELD: "Message rejected. Problem with field structure or name.",
    ErrorCode.MSG_REJECT_BAD_SIZE: "Message rejected. Packet size is too large.",
    ErrorCode.MSG_REJECT_BAD_STRUCTURE: "Message rejected. The provided structure is improper.",
    ErrorCode.MSG_REJECT_BAD_TYPE: "Message rejected. The provided msgType is unsupported.",
    ErrorCode.MSG_REJECT_GEN_FAIL: "Message rejected. General failure occurred.",
    ErrorCode.MSG_REJECT_NO_AUTH: "Message rejected. Not logged in or client not authorized.",
    ErrorCode.MSG_REJECT_NO_ROOM_LIST: "Message rejected. Room list unavailable.",
    ErrorCode.MSG_REJECT_PRESENCE: "Message rejected. Presence could could not be set.",
    ErrorCode.MSG_REJECT_TARGET_EASYRTCID: (
        "Message rejected. Target easyrtcid is invalid, not using same application, "
        "or no longer online."
    ),
    ErrorCode.MSG_REJECT_TARGET_GROUP: "Message rejected. Target group is invalid or not defined.",
    ErrorCode.MSG_REJECT_TARGET_ROOM: "Message rejected. Target room is invalid or not created.",
    ErrorCode.SERVER_SHUTDOWN: "Server is being shutdown." + _DISCONNECT,
}


class EasyRtcError(Exception):
    """Raised by server-side code (hooks) to refuse something with an EasyRTC error code.

    The core turns it into the error reply; it never reaches the transport.
    """

    def __init__(self, code: ErrorCode | str, text: str | None = None) -> None:
        self.code = str(code)
        self.text = text if text is not None else error_text(self.code)
        super().__init__(f"{self.code}: {self.text}")


def error_text(code: str) -> str:
    """The reference's text for ``code``; its generic text for codes it does not know."""
    try:
        return ERROR_TEXTS[ErrorCode(code)]
    except ValueError:
        return f"Error occurred with error code: {code}"


def error_message(code: str, server_time: int, text: str | None = None) -> dict[str, Any]:
    """The ``error`` message body, as sent in an ack or pushed on ``easyrtcCmd``."""
    return {
        "msgType": "error",
        "serverTime": server_time,
        "msgData": {"errorCode": code, "errorText": text if text is not None else error_text(code)},
    }
