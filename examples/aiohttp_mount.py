"""EasyRTC under a path (``/rtc/``) of an existing aiohttp application.

``create_app`` builds an ordinary aiohttp application, so it mounts as a sub-application. The
socket.io endpoint is then ``/rtc/socket.io/``; load the client files from
``/rtc/easyrtc/easyrtc.js`` and ``/rtc/socket.io/socket.io.js`` and tell the client, before
connecting (these options replace its defaults, hence the repetition)::

    easyrtc.setSocketUrl(location.origin, {path: "/rtc/socket.io", transports: ["polling",
        "websocket"], withCredentials: false, reconnection: false, forceNew: true});

The stock demos expect the root, so they are left out here.

Run: ``python examples/aiohttp_mount.py`` (http://localhost:8080/).
"""

from __future__ import annotations

from aiohttp import web

from easyrtc_server.app import SERVER_KEY, create_app
from easyrtc_server.options import Options

PREFIX = "/rtc/"


async def home(request: web.Request) -> web.Response:
    server = request.app[RTC_APP][SERVER_KEY]
    return web.json_response({"easyrtc": PREFIX, "rooms": server.rooms("default")})


RTC_APP = web.AppKey("rtc_app", web.Application)


def build_app(options: Options | None = None) -> web.Application:
    options = (options or Options()).replace(demos_enable=False)
    app = web.Application()
    rtc = create_app(options)
    app[RTC_APP] = rtc
    app.router.add_get("/", home)
    app.add_subapp(PREFIX, rtc)
    return app


if __name__ == "__main__":
    web.run_app(build_app(), port=8080)
