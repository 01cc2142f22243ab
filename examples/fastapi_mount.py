"""EasyRTC inside a FastAPI application, served by any ASGI server.

``create_asgi_app`` wraps the FastAPI app: it answers ``/socket.io/`` (EasyRTC), the client files
(``/easyrtc/``, ``/socket.io/socket.io.js``) and the demos, and hands everything else, lifespan
included, to FastAPI. The FastAPI routes can use the same ``EasyRtcServer``::

    uvicorn --app-dir examples --factory fastapi_mount:build_app --port 8080
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from easyrtc_server.asgi import EasyRtcAsgiApp, create_asgi_app
from easyrtc_server.options import Options
from easyrtc_server.server import EasyRtcServer


def build_app(options: Options | None = None) -> EasyRtcAsgiApp:
    server = EasyRtcServer(options)
    api = FastAPI(title="My app with EasyRTC")

    @api.get("/api/rooms")
    async def rooms(app: str = "default") -> dict[str, Any]:
        return {"app": app, "rooms": server.rooms(app)}

    @api.post("/api/announce")
    async def announce(text: str, room: str = "default") -> dict[str, int]:
        return {"sent": await server.send_message("announcement", {"text": text}, room=room)}

    return create_asgi_app(server=server, other_asgi_app=api)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build_app(), host="0.0.0.0", port=8080)
