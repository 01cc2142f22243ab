"""Where the options come from, and the TOML they print as.

One typed model, ``Options``, filled from four layers; each one overrides the ones before it:

1. the defaults (the reference server's, in ``options.py``);
2. a TOML file (``--config FILE``, or the ``EASYRTC_CONFIG`` environment variable): option
   names in snake_case or the reference's camelCase at the top level; a table groups options by
   their prefix (``[turn]`` with ``urls`` and ``secret`` sets ``turn_urls`` and ``turn_secret``),
   except that an option taking a map (``room_default_field_obj``) takes its table as it is;
3. environment variables ``EASYRTC_<OPTION>`` (``EASYRTC_ROOM_MAX_CONNECTION=10``): booleans as
   ``true``/``false``/``1``/``0``, lists comma-separated, maps and lists of maps as JSON;
4. the command-line flags the user actually passed.

An unknown name or a bad value fails before the server starts, with a message naming the option
and where it came from. Owns no defaults and no validation rules: those stay in ``options.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

from .options import SECRET_OPTIONS, Options, OptionsError, option_name
from .protocol.jsregex import JsRegExp

ENV_PREFIX: Final = "EASYRTC_"
CONFIG_ENV: Final = "EASYRTC_CONFIG"
"""Environment variable naming the TOML file when ``--config`` is not given."""


class ConfigError(ValueError):
    """A configuration that cannot start: the message names the option and its source."""


class Setting(NamedTuple):
    """One option's value and where it came from (for error messages)."""

    value: Any
    source: str


def load_options(
    config_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Setting] | None = None,
) -> Options:
    """The effective options: defaults < ``config_file`` < ``environ`` < ``overrides``.

    ``environ`` defaults to ``os.environ``; its ``EASYRTC_CONFIG`` names the file when
    ``config_file`` is None. ``overrides`` are snake_case names (the command line's flags).
    """
    env = os.environ if environ is None else environ
    if config_file is None and env.get(CONFIG_ENV):
        config_file = Path(env[CONFIG_ENV])
    settings: dict[str, Setting] = {}
    if config_file is not None:
        settings.update(read_toml(config_file))
    settings.update(read_environ(env))
    settings.update(overrides or {})
    return build(settings)


def build(settings: Mapping[str, Setting]) -> Options:
    """Options from snake_case settings; a ConfigError names the failing one and its source."""
    try:
        return Options(**{name: setting.value for name, setting in settings.items()})
    except OptionsError as exc:
        key = exc.key or "?"
        setting = settings.get(key)
        where = f"from {setting.source}" if setting is not None else "not set"
        raise ConfigError(f"{exc} [{key} {where}]") from None


# -- the TOML file ---------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Setting]:
    """The options set in a TOML file, by snake_case name."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    settings: dict[str, Setting] = {}
    for key, value in data.items():
        if _is_option(key) or not isinstance(value, dict):
            _put(settings, path, key, key, value)
        else:  # a table grouping options by prefix: [turn] urls = ... is turn_urls
            for sub, sub_value in value.items():
                _put(settings, path, f"{key}.{sub}", f"{key}_{sub}", sub_value)
    return settings


def _put(settings: dict[str, Setting], path: Path, key: str, name: str, value: Any) -> None:
    source = f"config file {path}, key {key!r}"
    try:
        name = option_name(name)
    except OptionsError:
        raise ConfigError(f"unknown option {key!r} in config file {path}") from None
    if name in settings:
        raise ConfigError(f"option {name!r} is set twice in config file {path} (as {key!r})")
    settings[name] = Setting(value, source)


def _is_option(key: str) -> bool:
    try:
        option_name(key)
    except OptionsError:
        return False
    return True


# -- the environment -------------------------------------------------------------------------

_TYPES: Final[dict[str, Any]] = typing.get_type_hints(Options)
_TRUE: Final = frozenset(("true", "1", "yes", "on"))
_FALSE: Final = frozenset(("false", "0", "no", "off"))


def read_environ(environ: Mapping[str, str]) -> dict[str, Setting]:
    """The options set by ``EASYRTC_<OPTION>`` variables, by snake_case name."""
    settings: dict[str, Setting] = {}
    for var, text in environ.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        name = var.removeprefix(ENV_PREFIX).lower()
        source = f"environment variable {var}"
        if name not in _TYPES:
            raise ConfigError(f"unknown option {name!r} from {source}")
        try:
            settings[name] = Setting(parse_env_value(name, text), source)
        except OptionsError as exc:
            raise ConfigError(f"{exc} [{name} from {source}]") from None
    return settings


def parse_env_value(name: str, text: str) -> Any:
    """The value of option ``name`` written as an environment variable's text."""
    kind = _TYPES[name]
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if not text.strip():
            return None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    origin = typing.get_origin(kind) or kind
    if kind is bool:
        word = text.strip().lower()
        if word not in _TRUE | _FALSE:
            raise OptionsError(f"option {name!r} must be true or false, got {text!r}")
        return word in _TRUE
    if kind is int or kind is float:
        try:
            return kind(text.strip())
        except ValueError:
            raise OptionsError(f"option {name!r} must be a number, got {text!r}") from None
    if origin is tuple and not text.lstrip().startswith("["):
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if origin in (tuple, list, dict):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise OptionsError(f"option {name!r} must be JSON: {exc}") from None
    return text  # str, Path and regexps: Options converts them


# -- printing --------------------------------------------------------------------------------


def to_toml(options: Options) -> str:
    """The options as a TOML file that loads back to the same options.

    Secrets are left out (as comments saying that they are set), and so are unset options.
    """
    lines = ["# easyrtc-server: effective configuration", ""]
    for field in dataclasses.fields(Options):
        name, value = field.name, getattr(options, field.name)
        if value is None:
            lines.append(f"# {name} = (not set)")
        elif name in SECRET_OPTIONS:
            lines.append(f"# {name} = (set, not shown)")
        else:
            try:
                lines.append(f"{name} = {toml_value(value)}")
            except ValueError as exc:
                lines.append(f"# {name} = (not expressible in TOML: {exc})")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """One value in TOML syntax (inline tables for maps); ValueError for null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # inf and nan are TOML too
    if isinstance(value, str | Path | JsRegExp):
        return _toml_string(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    if value is None:
        raise ValueError("null")
    raise ValueError(f"a {type(value).__name__}")


_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)
