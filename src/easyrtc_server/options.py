"""Server options: the reference's defaults, validated once at start.

Names are snake_case here; ``Options.from_mapping`` also takes the reference's camelCase names
(``roomMaxConnection``), so option sets written for the Node server carry over. Unknown names and
bad values fail at start with a message that names the key. Validation rules (the regexps) live
here, together, and nowhere else.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jsregex import JsRegExp

IceServers = list[dict[str, Any]]

DEFAULT_ICE_SERVERS: IceServers = [
    {"urls": ["stun:stun.l.google.com:19302"]},
    {"urls": ["stun:stun.sipgate.net"]},
    {"urls": ["stun:217.10.68.152"]},
    {"urls": ["stun:stun.sipgate.net:10000"]},
    {"urls": ["stun:217.10.68.152:10000"]},
]

FieldObj = dict[str, dict[str, Any]]
"""``{NAME: {"fieldValue": V, "fieldOption": {"isShared": BOOL}}}``, as the reference takes it."""


class OptionsError(ValueError):
    """An option has an unknown name or a bad value; the message names it."""


def _re(source: str, flags: str = "i") -> JsRegExp:
    return JsRegExp(source, flags)


@dataclass(frozen=True, slots=True)
class Options:
    """Everything that can be configured. Defaults are the reference server's."""

    # Applications and rooms
    app_default_name: str = "default"
    app_auto_create_enable: bool = True
    app_default_field_obj: FieldObj | None = None
    app_ice_servers: IceServers = field(default_factory=lambda: list(DEFAULT_ICE_SERVERS))
    room_default_enable: bool = True
    room_default_name: str = "default"
    room_auto_create_enable: bool = True
    room_default_field_obj: FieldObj | None = None
    room_max_connection: int = 100
    connection_default_field_obj: FieldObj | None = None
    reclaim_empty_rooms: bool = True
    """Forget a room that clients created once its last member leaves (the reference never does)."""

    # Validation of client input
    api_version_regexp: JsRegExp = _re(r"^[a-z0-9_.+-]{1,32}$")
    app_name_regexp: JsRegExp = _re(r"^[a-z0-9_.-]{1,32}$")
    easyrtcid_regexp: JsRegExp = _re(r"^[a-z0-9_.-]{1,32}$")
    easyrtcsid_regexp: JsRegExp = _re(r"^[a-z0-9_.%-]{1,100}$")
    group_name_regexp: JsRegExp = _re(r"^[a-z0-9_.-]{1,32}$")
    field_name_regexp: JsRegExp = _re(r"^[a-z0-9_. -]{1,32}$")
    presence_show_regexp: JsRegExp = _re(r"^(away|chat|dnd|xa)$", "")
    presence_status_regexp: JsRegExp = _re(r"^(.){0,255}$", "")
    room_name_regexp: JsRegExp = _re(r"^[a-z0-9_.-]{1,32}$")
    username_regexp: JsRegExp = _re(r"^(.){1,64}$")
    api_field_max_size: int = 4096
    """setRoomApiField's ``field`` whose JSON text is this long or longer gets BAD_SIZE."""

    # Hosting
    host: str = "0.0.0.0"
    port: int = 8080
    client_dir: Path | None = None
    """Folder holding ``node_modules`` with open-easyrtc and socket.io-client; found if unset."""
    api_enable: bool = True
    api_public_folder: str = "/easyrtc"
    demos_enable: bool = True
    demos_public_folder: str = "/demos"
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to use the polling transport from other pages; ``("*",)`` for any."""
    ping_interval: float = 5.0
    ping_timeout: float = 10.0
    max_http_buffer_size: int = 1_000_000
    log_level: str = "info"

    def __post_init__(self) -> None:
        for name, value in _validated(self):
            object.__setattr__(self, name, value)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Options:
        """Build options from snake_case or the reference's camelCase names."""
        return cls().replace(**values)

    def replace(self, **changes: Any) -> Options:
        """A copy with ``changes`` applied (names in either spelling)."""
        known = {f.name for f in dataclasses.fields(self)}
        normalized: dict[str, Any] = {}
        for key, value in changes.items():
            name = _snake(key)
            if name not in known:
                raise OptionsError(f"unknown option {key!r}")
            normalized[name] = value
        return dataclasses.replace(self, **normalized)


def _snake(name: str) -> str:
    name = name.replace("RegExp", "Regexp")
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _validated(options: Options) -> list[tuple[str, Any]]:
    """Check every option's type and value; return the ones that need converting."""
    converted: list[tuple[str, Any]] = []
    for f in dataclasses.fields(options):
        name, value = f.name, getattr(options, f.name)
        if name.endswith("_regexp"):
            if isinstance(value, str):
                value = JsRegExp(value, "i")
                converted.append((name, value))
            elif isinstance(value, re.Pattern):
                raise OptionsError(f"option {name!r}: give the JavaScript source as a string")
            elif not isinstance(value, JsRegExp):
                raise OptionsError(f"option {name!r} must be a regexp string, got {value!r}")
        elif name.endswith("_enable") or name == "reclaim_empty_rooms":
            if not isinstance(value, bool):
                raise OptionsError(f"option {name!r} must be true or false, got {value!r}")
        elif name in ("room_max_connection", "api_field_max_size", "port", "max_http_buffer_size"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise OptionsError(f"option {name!r} must be a whole number >= 0, got {value!r}")
        elif name.endswith("_field_obj"):
            if value is not None:
                _check_field_obj(name, value)
        elif name == "app_ice_servers":
            _check_ice_servers(value)
        elif name == "cors_origins":
            if isinstance(value, str):
                converted.append((name, tuple(o for o in value.split(",") if o)))
            elif not all(isinstance(o, str) for o in value):
                raise OptionsError(f"option {name!r} must be a list of origins, got {value!r}")
            else:
                converted.append((name, tuple(value)))
        elif name == "client_dir" and value is not None and not isinstance(value, Path):
            converted.append((name, Path(value)))
        elif name in ("ping_interval", "ping_timeout") and (
            not isinstance(value, int | float) or isinstance(value, bool) or value <= 0
        ):
            raise OptionsError(f"option {name!r} must be a number of seconds > 0")
    for name in ("app_default_name", "room_default_name"):
        value = getattr(options, name)
        regexp = options.app_name_regexp if name.startswith("app") else options.room_name_regexp
        if not isinstance(value, str) or not regexp.test(value):
            raise OptionsError(f"option {name!r}: {value!r} does not match {regexp}")
    return converted


def _check_field_obj(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise OptionsError(f"option {name!r} must map field names to {{'fieldValue': ...}}")
    for key, spec in value.items():
        if not isinstance(spec, dict) or "fieldValue" not in spec:
            raise OptionsError(f"option {name!r}: field {key!r} needs a 'fieldValue'")
        option = spec.get("fieldOption", {})
        if not isinstance(option, dict):
            raise OptionsError(f"option {name!r}: field {key!r} has a bad 'fieldOption'")


def _check_ice_servers(value: Any) -> None:
    if not isinstance(value, list):
        raise OptionsError("option 'app_ice_servers' must be a list of RTCIceServer objects")
    for server in value:
        urls = server.get("urls", server.get("url")) if isinstance(server, dict) else None
        if not (isinstance(urls, str) or (isinstance(urls, list) and urls)):
            raise OptionsError(f"option 'app_ice_servers': {server!r} has no 'urls'")
