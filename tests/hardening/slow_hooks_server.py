"""``easyrtc-server`` whose ``disconnect`` hook never finishes: a drain that cannot end."""

import asyncio
from typing import Any

from easyrtc_server import cli
from easyrtc_server.hooks import Hooks


class SlowDisconnect(Hooks):
    async def disconnect(self, conn: Any) -> None:
        await asyncio.sleep(3600)


class _HooksFromOptions:
    @staticmethod
    def from_options(options: Any) -> Hooks:
        return SlowDisconnect()


if __name__ == "__main__":
    cli.JwtAuth = _HooksFromOptions  # type: ignore[assignment,misc]
    cli.main()
