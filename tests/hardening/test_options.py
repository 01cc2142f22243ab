"""The limit options and the JWT secret are checked at start, with messages naming them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from easyrtc_server import cli
from easyrtc_server.options import Options, OptionsError


def test_a_short_jwt_secret_stops_the_server_before_it_starts() -> None:
    result = CliRunner().invoke(cli.main, [], env={"EASYRTC_JWT_SECRET": "hunter2"})
    assert result.exit_code != 0
    assert "option 'jwt_secret' is 7 bytes long: an HS256 secret needs at least 32" in (
        result.output
    )
    assert "environment variable EASYRTC_JWT_SECRET" in result.output
    assert "hunter2" not in result.output


def test_a_secret_of_32_bytes_is_enough() -> None:
    assert Options(jwt_secret="é" * 16).jwt_secret == "é" * 16  # 32 bytes in UTF-8
    with pytest.raises(OptionsError, match="jwt_secret"):
        Options(jwt_secret="x" * 31)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("login_timeout", -1),
        ("max_connections", 1.5),
        ("max_connections_per_address", -3),
        ("message_rate", "fast"),
        ("message_burst", True),
        ("message_refusals_before_close", -1),
        ("shutdown_drain_time", None),
    ],
)
def test_bad_limit_values_are_refused_by_name(name: str, bad: object) -> None:
    with pytest.raises(OptionsError, match=name) as caught:
        Options.from_mapping({name: bad})
    assert caught.value.key == name


def test_limits_come_from_the_environment_too() -> None:
    env = {"EASYRTC_MESSAGE_RATE": "2.5", "EASYRTC_MAX_CONNECTIONS_PER_ADDRESS": "0"}
    result = CliRunner().invoke(cli.main, ["--print-config"], env=env)
    assert result.exit_code == 0, result.output
    assert "message_rate = 2.5" in result.output
    assert "max_connections_per_address = 0" in result.output
