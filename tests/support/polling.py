"""A raw Engine.IO long-polling client (revision 4 or 3) that logs in to EasyRTC."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import aiohttp

AUTH = {"msgType": "authenticate", "msgData": {"apiVersion": "1.1.1-beta"}}
PATH = "/socket.io/"


def v3_payload(*packets: str) -> bytes:
    return "".join(f"{len(p.encode('utf-16-le')) // 2}:{p}" for p in packets).encode()


def v3_packets(body: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(body):  # ASCII bodies only in these tests
        colon = body.index(":", i)
        n = int(body[i:colon])
        out.append(body[colon + 1 : colon + 1 + n])
        i = colon + 1 + n
    return out


class PollingClient:
    """A raw Engine.IO long-polling client (revision 4 or 3) logged in to EasyRTC."""

    def __init__(self, session: aiohttp.ClientSession, url: str, eio: int) -> None:
        self.session = session
        self.url = url
        self.eio = eio
        self.sid = ""
        self.easyrtcid = ""

    def params(self) -> dict[str, str]:
        return {"EIO": str(self.eio), "transport": "polling", "sid": self.sid}

    def split(self, body: str) -> list[str]:
        return body.split("\x1e") if self.eio == 4 else v3_packets(body)

    async def get(self) -> list[str]:
        async with self.session.get(self.url + PATH, params=self.params()) as r:
            assert r.status == 200, await r.text()
            return self.split(await r.text())

    async def post(self, *packets: str) -> None:
        body = "\x1e".join(packets).encode() if self.eio == 4 else v3_payload(*packets)
        assert await self.post_body(body) == 200

    async def post_body(self, body: bytes) -> int:
        """POST ``body`` as it is; the response status."""
        headers = {"Content-Type": "text/plain;charset=UTF-8"}
        url = self.url + PATH
        async with self.session.post(url, params=self.params(), data=body, headers=headers) as r:
            await r.read()
            return r.status

    async def open(self) -> None:
        """Handshake, and connect the Socket.IO namespace."""
        params = {"EIO": str(self.eio), "transport": "polling"}
        async with self.session.get(self.url + PATH, params=params) as r:
            packets = self.split(await r.text())
        self.sid = json.loads(packets[0][1:])["sid"]
        if self.eio == 4:
            await self.post("40")
            assert (await self.get())[0].startswith("40")

    async def login(self) -> None:
        await self.open()
        await self.post("421" + json.dumps(["easyrtcAuth", AUTH]))
        while True:
            for packet in await self.get():
                if packet.startswith("431"):
                    self.easyrtcid = json.loads(packet[3:])[0]["msgData"]["easyrtcid"]
                    return

    def raw_request(self, method: str, content_length: int | None = None) -> bytes:
        query = "&".join(f"{k}={v}" for k, v in self.params().items())
        lines = [f"{method} {PATH}?{query} HTTP/1.1", f"Host: {urlsplit(self.url).netloc}"]
        if content_length is not None:
            lines += ["Content-Type: text/plain;charset=UTF-8", f"Content-Length: {content_length}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()
