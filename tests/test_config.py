"""Configuration: defaults < TOML file < EASYRTC_* environment < command-line flags, and
``easyrtc-server --print-config``."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from easyrtc_server import cli
from easyrtc_server.app import SERVER_KEY
from easyrtc_server.cli import main
from easyrtc_server.config import ConfigError, load_options, to_toml
from easyrtc_server.hooks import Hooks
from easyrtc_server.jwtauth import JwtAuth
from easyrtc_server.options import Options, OptionsError
from easyrtc_server.protocol.jsregex import JsRegExp


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EASYRTC_* variable from the machine running the tests."""
    for var in list(os.environ):
        if var.startswith("EASYRTC_"):
            monkeypatch.delenv(var)


def write(tmp_path: Path, text: str, name: str = "easyrtc.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def printed(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = run("--print-config", *args, env=env)
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.output)


def failure(*args: str, env: dict[str, str] | None = None) -> str:
    result = run("--print-config", *args, env=env)
    assert result.exit_code != 0, result.output
    return result.output


def test_defaults_are_the_reference_defaults() -> None:
    assert load_options(environ={}) == Options()
    config = printed()
    assert config["port"] == 8080
    assert config["room_max_connection"] == 100
    assert config["app_ice_servers"][0] == {"urls": ["stun:stun.l.google.com:19302"]}


def test_each_layer_overrides_the_one_before(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'port = 1000\nroomMaxConnection = 5\nlog_level = "warning"\nhost = "127.0.0.2"\n',
    )
    env = {"EASYRTC_PORT": "2000", "EASYRTC_ROOM_MAX_CONNECTION": "7"}
    config = printed("--config", str(path), "--port", "3000", env=env)
    assert config["port"] == 3000  # flag > environment > file
    assert config["room_max_connection"] == 7  # environment > file
    assert config["log_level"] == "warning"  # file > default
    assert config["host"] == "127.0.0.2"  # no --host given: the file's stays
    assert config["demos_enable"] is True  # no --no-demos given: the default stays
    assert printed("--config", str(path), "--no-demos", "--host", "::1")["demos_enable"] is False


def test_client_file_flags(tmp_path: Path) -> None:
    path = write(tmp_path, 'socketio_js = "/from/file.js"\nclient_dir = "/from/file"\n')
    assert printed("--config", str(path))["socketio_js"] == "/from/file.js"
    config = printed(
        "--config",
        str(path),
        "--client-dir",
        "node_modules/open-easyrtc-v2",
        "--socketio-js",
        "node_modules/socket.io-client-v2/dist/socket.io.js",
    )
    assert config["client_dir"] == "node_modules/open-easyrtc-v2"
    assert config["socketio_js"] == "node_modules/socket.io-client-v2/dist/socket.io.js"
    assert Options.from_mapping({"socketioJs": "a.js"}).socketio_js == Path("a.js")


def test_demos_dir_and_strict_errors_flags() -> None:
    assert printed()["strict_errors"] is False
    config = printed("--demos-dir", "node_modules/open-easyrtc/demos", "--strict-errors")
    assert config["demos_dir"] == "node_modules/open-easyrtc/demos"
    assert config["strict_errors"] is True
    assert printed(env={"EASYRTC_STRICT_ERRORS": "true"})["strict_errors"] is True


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 1234\n")
    assert printed(env={"EASYRTC_CONFIG": str(path)})["port"] == 1234


def test_environment_values_are_typed() -> None:
    env = {
        "EASYRTC_DEMOS_ENABLE": "false",
        "EASYRTC_APP_AUTO_CREATE_ENABLE": "0",
        "EASYRTC_PING_INTERVAL": "2.5",
        "EASYRTC_CORS_ORIGINS": "https://a.example, https://b.example",
        "EASYRTC_APP_ICE_SERVERS": '[{"urls": "stun:stun.example.org"}]',
        "EASYRTC_ROOM_DEFAULT_FIELD_OBJ": '{"topic": {"fieldValue": "hi"}}',
        "EASYRTC_USERNAME_REGEXP": "/^[a-z]+$/",
        "EASYRTC_CLIENT_DIR": "/srv/easyrtc",
        "EASYRTC_SOCKETIO_JS": "/srv/socket.io.js",
    }
    options = load_options(environ=env)
    assert options.demos_enable is False and options.app_auto_create_enable is False
    assert options.ping_interval == 2.5
    assert options.cors_origins == ("https://a.example", "https://b.example")
    assert options.app_ice_servers == [{"urls": "stun:stun.example.org"}]
    assert options.room_default_field_obj == {"topic": {"fieldValue": "hi"}}
    assert options.username_regexp == JsRegExp("^[a-z]+$", "")
    assert options.client_dir == Path("/srv/easyrtc")
    assert options.socketio_js == Path("/srv/socket.io.js")


def test_toml_tables_group_options_by_prefix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [turn]
        urls = ["turn:turn.example.org"]
        secret = "s3cret"
        ttl = 600

        [room_default_field_obj.topic]
        fieldValue = "welcome"
        fieldOption = { isShared = true }

        [[app_ice_servers]]
        urls = ["stun:stun.example.org"]
        """,
    )
    options = load_options(path, environ={})
    assert options.turn_urls == ("turn:turn.example.org",)
    assert options.turn_secret == "s3cret" and options.turn_ttl == 600
    assert options.room_default_field_obj == {
        "topic": {"fieldValue": "welcome", "fieldOption": {"isShared": True}}
    }
    assert options.app_ice_servers == [{"urls": ["stun:stun.example.org"]}]


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ("roomMaxConection = 3\n", {}, "unknown option 'roomMaxConection' in config file"),
        ("[turn]\nurl = 'turn:x'\n", {}, "unknown option 'turn.url' in config file"),
        ("[server]\nport = 1\n", {}, "unknown option 'server.port' in config file"),
        ("port = 1\nPort = 2\n", {}, "option 'port' is set twice"),
        ("", {"EASYRTC_ROOM_MAX_CONECTION": "3"}, "EASYRTC_ROOM_MAX_CONECTION"),
        (
            "room_max_connection = 'ten'\n",
            {},
            "option 'room_max_connection' must be a whole number >= 0, got 'ten' "
            "[room_max_connection from config file",
        ),
        ("", {"EASYRTC_PORT": "http"}, "[port from environment variable EASYRTC_PORT]"),
        ("", {"EASYRTC_DEMOS_ENABLE": "maybe"}, "EASYRTC_DEMOS_ENABLE"),
        ("", {"EASYRTC_APP_ICE_SERVERS": "[{"}, "option 'app_ice_servers' must be JSON"),
        ("app_ice_servers = [{ username = 'x' }]\n", {}, "app_ice_servers from config file"),
        ("", {"EASYRTC_TURN_URLS": "turn:x"}, "'turn_secret' is required"),
        ("room_name_regexp = '('\n", {}, "room_name_regexp"),
        ("port = \n", {}, "is not valid TOML"),
    ],
)
def test_bad_configuration_fails_naming_key_and_source(
    tmp_path: Path, toml: str, env: dict[str, str], expected: str
) -> None:
    path = write(tmp_path, toml)
    output = failure("--config", str(path), env=env)
    assert expected in output
    with pytest.raises(ConfigError):
        load_options(path, environ=env)


def test_bad_flag_value_names_the_flag() -> None:
    assert "[port from command line --port]" in failure("--port", "70000")


def test_missing_config_file_fails(tmp_path: Path) -> None:
    assert "cannot read config file" in failure("--config", str(tmp_path / "nope.toml"))


def test_print_config_round_trips(tmp_path: Path) -> None:
    rich = Options(
        room_max_connection=3,
        cors_origins=("https://a.example",),
        client_dir=tmp_path,
        socketio_js=tmp_path / "socket.io.js",
        presence_status_regexp=JsRegExp('^"(.){0,9}\\\\$', "m"),
        username_regexp=JsRegExp("^[a-z]+$", "i"),
        app_default_field_obj={"motd": {"fieldValue": {"text": "héllo\n", "n": [1, 2.5, True]}}},
        app_ice_servers=[{"urls": "turn:t.example", "username": "u", "credential": "p"}],
        turn_urls=("turn:t.example",),
        turn_secret="do-not-print-me",
        jwt_secret="nor-me-" + "x" * 32,
        jwt_audience="rtc",
        ping_timeout=7.5,
    )
    text = to_toml(rich)
    assert "do-not-print-me" not in text and "nor-me" not in text
    assert "# turn_secret = (set, not shown)" in text
    path = write(tmp_path, text)
    env = {"EASYRTC_TURN_SECRET": "do-not-print-me", "EASYRTC_JWT_SECRET": "nor-me-" + "x" * 32}
    assert load_options(path, environ=env) == rich

    # and through the command line: printing the printed file prints it again
    again = run("--print-config", "--config", str(path), env=env)
    assert again.exit_code == 0, again.output
    assert again.output == text


def test_server_starts_with_the_effective_options(monkeypatch: pytest.MonkeyPatch) -> None:
    started: dict[str, Any] = {}

    def run_app(app: web.Application, *, host: str, port: int, loop: Any, **_: Any) -> None:
        started.update(server=app[SERVER_KEY], host=host, port=port)
        loop.close()

    monkeypatch.setattr(cli.web, "run_app", run_app)
    env = {"EASYRTC_JWT_SECRET": "s" * 32, "EASYRTC_HOST": "127.0.0.1"}
    result = run("--port", "9999", "--log-level", "WARNING", env=env)
    assert result.exit_code == 0, result.output
    assert (started["host"], started["port"]) == ("127.0.0.1", 9999)
    assert isinstance(started["server"].hooks, JwtAuth)
    assert started["server"].options.log_level == "warning"

    result = run(env={"EASYRTC_HOST": "127.0.0.1"})
    assert result.exit_code == 0, result.output
    assert type(started["server"].hooks) is Hooks  # no secret: the stock hooks


def test_cluster_state_options_from_file_environment_and_defaults(tmp_path: Path) -> None:
    defaults = Options()
    assert (defaults.cluster_state, defaults.cluster_partitions) == ("log", 1024)
    assert defaults.cluster_read_groups == 16
    path = write(tmp_path, '[cluster]\nstate = "partitioned"\npartitions = 128\n')
    options = load_options(path, environ={"EASYRTC_CLUSTER_READ_GROUPS": "8"})
    assert options.cluster_state == "partitioned"
    assert (options.cluster_partitions, options.cluster_read_groups) == (128, 8)
    config = printed(env={"EASYRTC_CLUSTER_STATE": "partitioned", "EASYRTC_WORKERS": "4"})
    assert config["cluster_state"] == "partitioned" and config["workers"] == 4
    edges = Options(cluster_partitions=65_536, cluster_read_groups=1024)
    assert (edges.cluster_partitions, edges.cluster_read_groups) == (65_536, 1024)
    assert Options(cluster_partitions=1, cluster_read_groups=1).cluster_partitions == 1


@pytest.mark.parametrize(
    ("changes", "key", "expected"),
    [
        ({"cluster_state": "sharded"}, "cluster_state", "must be one of log, partitioned"),
        ({"cluster_state": "Log"}, "cluster_state", "got 'Log'"),
        ({"cluster_partitions": 0}, "cluster_partitions", "from 1 to 65536, got 0"),
        ({"cluster_partitions": 65_537}, "cluster_partitions", "from 1 to 65536"),
        ({"cluster_partitions": 12.0}, "cluster_partitions", "whole number"),
        ({"cluster_partitions": True}, "cluster_partitions", "whole number"),
        ({"cluster_read_groups": 0}, "cluster_read_groups", "from 1 to 1024"),
        (
            {"cluster_partitions": 4096, "cluster_read_groups": 1025},
            "cluster_read_groups",
            "from 1 to 1024",
        ),
        (
            {"cluster_partitions": 8, "cluster_read_groups": 16},
            "cluster_read_groups",
            "'cluster_read_groups' (16) must be at most 'cluster_partitions' (8)",
        ),
    ],
)
def test_bad_cluster_state_options_are_refused_by_name(
    changes: dict[str, Any], key: str, expected: str
) -> None:
    with pytest.raises(OptionsError, match=re.escape(expected)) as caught:
        Options.from_mapping(changes)
    assert caught.value.key == key
    assert Options.from_mapping({"cluster_relay": "direct"}).cluster_state == "log"


def test_a_bad_cluster_state_option_names_its_source(tmp_path: Path) -> None:
    output = failure(env={"EASYRTC_CLUSTER_PARTITIONS": "many"})
    assert "option 'cluster_partitions' must be a number" in output
    assert "EASYRTC_CLUSTER_PARTITIONS" in output
    path = write(tmp_path, "[cluster]\npartitions = 4\nread_groups = 16\n")
    output = failure("--config", str(path))
    assert "'cluster_read_groups' (16) must be at most 'cluster_partitions' (4)" in output
    assert "key 'cluster.read_groups'" in output
