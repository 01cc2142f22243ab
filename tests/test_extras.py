"""Optional features need their extras: asked for without them, the server refuses at start-up
with the install line, rather than failing later on an ImportError."""

from __future__ import annotations

import pytest

from easyrtc_server import extras
from easyrtc_server.app import create_app
from easyrtc_server.options import Options, OptionsError
from easyrtc_server.server import EasyRtcServer


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An interpreter where the extras' modules are not installed."""
    monkeypatch.setitem(extras.EXTRAS, "cluster", ("no_such_module_redis",))
    monkeypatch.setitem(extras.EXTRAS, "python-socketio", ("no_such_module_socketio",))
    return monkeypatch


def test_redis_url_without_the_cluster_extra_names_it(without: pytest.MonkeyPatch) -> None:
    with pytest.raises(OptionsError, match=r"pip install 'easyrtc-server\[cluster\]'") as info:
        Options(redis_url="redis://127.0.0.1:6379/0")
    assert info.value.key == "redis_url"


def test_python_socketio_without_its_extra_names_it(without: pytest.MonkeyPatch) -> None:
    with pytest.raises(OptionsError, match=r"easyrtc-server\[python-socketio\]"):
        Options(transport="python-socketio")
    with pytest.raises(extras.MissingExtra, match=r"easyrtc-server\[python-socketio\]"):
        create_app(server=EasyRtcServer(Options()), transport="python-socketio")


def test_the_server_runs_without_any_extra(without: pytest.MonkeyPatch) -> None:
    assert create_app(server=EasyRtcServer(Options())) is not None


def test_installed_extras_are_found() -> None:
    # the dev environment has every extra (tests use them)
    assert [name for name in extras.EXTRAS if extras.missing(name)] == []
