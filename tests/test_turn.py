"""TURN REST credentials (coturn ``use-auth-secret``) in the token and in ``getIceConfig``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import pytest

from easyrtc_server.options import DEFAULT_ICE_SERVERS, Options, OptionsError
from easyrtc_server.protocol import turn
from easyrtc_server.protocol.turn import turn_credentials, turn_server
from support.client import Client
from support.ours import running_server

SECRET = "coturn-static-auth-secret"
URLS = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]


def coturn_accepts(username: str, credential: str, secret: str = SECRET) -> bool:
    """What coturn checks: the password is base64(HMAC-SHA1(secret, username))."""
    expected = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64decode(credential), expected)


def test_credentials_follow_the_turn_rest_rule() -> None:
    username, credential = turn_credentials(SECRET, "alice", 600, now=1_700_000_000.9)
    assert username == "1700000600:alice"
    assert coturn_accepts(username, credential)
    assert not coturn_accepts(username, credential, secret="other")


def test_default_ttl_is_one_day() -> None:
    before = int(time.time())
    username, _ = turn_credentials(SECRET, "bob")
    expiry = int(username.split(":", 1)[0])
    assert before + 86400 <= expiry <= int(time.time()) + 86400


def test_turn_server_entry_is_an_rtc_ice_server() -> None:
    entry = turn_server(URLS, SECRET, "carol", 60, now=100)
    assert entry == {"urls": URLS, "username": "160:carol", "credential": entry["credential"]}
    assert coturn_accepts(entry["username"], entry["credential"])


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"turn_urls": URLS}, "turn_secret"),
        ({"turn_urls": ["stun:x.org"], "turn_secret": SECRET}, "turn_urls"),
        ({"turn_ttl": 0}, "turn_ttl"),
        ({"turn_secret": ""}, "turn_secret"),
    ],
)
def test_bad_turn_options_fail_naming_the_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(OptionsError, match=key) as caught:
        Options(**changes)
    assert caught.value.key == key


def check_turn_entry(servers: list[dict[str, Any]], user: str, ttl: int, now: float) -> None:
    """The app's STUN servers, then one TURN entry for ``user`` that expires at now + ttl."""
    *stun, entry = servers
    assert stun == DEFAULT_ICE_SERVERS
    assert entry["urls"] == URLS
    expiry, _, who = entry["username"].partition(":")
    assert who == user
    assert int(expiry) == int(now) + ttl
    assert coturn_accepts(entry["username"], entry["credential"])


async def test_token_and_get_ice_config_carry_fresh_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_800_000_000.0]
    monkeypatch.setattr(turn, "clock", lambda: now[0])
    options = {"turnUrls": URLS, "turnSecret": SECRET, "turnTtl": 3600}
    async with running_server(options) as url:
        named, anonymous = Client(), Client()
        await named.connect(url)
        await anonymous.connect(url)
        try:
            token = await named.login(username="alice")
            check_turn_entry(token["msgData"]["iceConfig"]["iceServers"], "alice", 3600, now[0])

            now[0] += 125
            reply = await named.cmd("getIceConfig", msgData={})
            check_turn_entry(reply["msgData"]["iceConfig"]["iceServers"], "alice", 3600, now[0])
            now[0] += 1
            again = await named.cmd("getIceConfig", msgData={})
            assert again["msgData"] != reply["msgData"]  # fresh, not cached

            token = await anonymous.login()
            servers = token["msgData"]["iceConfig"]["iceServers"]
            check_turn_entry(servers, anonymous.easyrtcid, 3600, now[0])
        finally:
            await named.sio.disconnect()
            await anonymous.sio.disconnect()


async def test_without_turn_urls_the_ice_servers_are_the_apps() -> None:
    async with running_server({"turnSecret": SECRET}) as url:
        client = Client()
        await client.connect(url)
        try:
            token = await client.login()
            assert token["msgData"]["iceConfig"]["iceServers"] == DEFAULT_ICE_SERVERS
        finally:
            await client.sio.disconnect()
