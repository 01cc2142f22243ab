"""A forwarded websocket's end, as the owner node sees it: the client's goodbye stays a goodbye,
anything else is a drop (a SIGTERM run in Chromium told a keyed page's peer it had left when
the node forwarding its websocket stopped: the bridge closed the owner's side with 1000)."""

from __future__ import annotations

from easyrtc_server.cluster.forwarding import upstream_close_code
from easyrtc_server.transport.engineio_sessions import GOODBYE_CODES


def test_the_clients_goodbye_passes_on() -> None:
    assert upstream_close_code(1000) == 1000
    assert upstream_close_code(1001) == 1001
    assert upstream_close_code(4000) == 4000


def test_a_bridge_ended_by_anything_else_is_a_drop_at_the_owner() -> None:
    for code in (None, 1005, 1006, 1015):  # no close frame from the client, or unsendable
        assert upstream_close_code(code) == 1012
        assert upstream_close_code(code) not in GOODBYE_CODES
