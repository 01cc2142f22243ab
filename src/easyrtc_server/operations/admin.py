"""The admin API under ``/admin/api/`` and the dashboard page at ``/admin/``.

Off unless ``admin_token`` is set. Every API request needs ``Authorization: Bearer <token>``,
compared in constant time; anything else gets 401. No CORS headers are ever sent, so other
origins' pages cannot read it. The API is a thin JSON layer over the server's ``directory``
(the whole state, on every kind of cluster too: a node that did not answer in time is named in
``missingNodes``); ``OPENAPI`` describes it and is served at ``/admin/api/openapi.json``.
The dashboard is static (``admin/``): the token is typed in by the user, never embedded.
Nothing under ``/admin`` may be framed by another page (``FRAME_BLOCKING``: no clickjacking of
the kick button).
"""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from ..directory import Found, Target
from ..engine import EngineUnavailable
from .routes import OpsHandler, OpsRequest, Route, StaticRoute

if TYPE_CHECKING:
    from ..server import EasyRtcServer

ADMIN_DIR: Final = Path(__file__).resolve().parent / "admin"
API: Final = "/admin/api"
MSG_TYPE_MAX: Final = 64

FRAME_BLOCKING: Final = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}
"""Headers of every response under ``/admin``: no page may frame the dashboard or the API."""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _problem(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _whole(body: dict[str, Any], found: Found[Any]) -> dict[str, Any]:
    """``body`` saying what it lacks: the nodes that did not answer in time
    (``missingNodes``), lists cut at ``ANSWER_MAX_ITEMS`` per node (``truncated``)."""
    if found.missing:
        body["missingNodes"] = found.missing
    if found.truncated:
        body["truncated"] = True
    return body


def _not_found(message: str, found: Found[Any]) -> web.Response:
    """404; 503 when nodes that did not answer in time may have it (``missingNodes``)."""
    if not found.missing:
        return _problem(404, message)
    answer = {"error": f"{message} among the nodes that answered", "missingNodes": found.missing}
    return _json(answer, 503)


class AdminApi:
    """The routes of the admin API and dashboard for one server."""

    def __init__(self, server: EasyRtcServer, token: str) -> None:
        self.server = server
        self._token = token.encode()
        self._page = ADMIN_DIR / "index.html"

    def routes(self) -> list[Route | StaticRoute]:
        """The API (behind the token), the dashboard and its files."""
        api = [
            ("GET", "/applications", self.applications),
            ("GET", "/applications/{app}/rooms", self.rooms),
            ("GET", "/applications/{app}/rooms/{room}", self.room),
            ("PUT", "/applications/{app}/rooms/{room}/fields/{field}", self.set_room_field),
            ("GET", "/connections/{easyrtcid}", self.connection),
            ("DELETE", "/connections/{easyrtcid}", self.kick),
            ("POST", "/messages", self.message),
        ]
        routes: list[Route | StaticRoute] = [
            Route(method, API + path, _framed(self._guarded(handler)))
            for method, path, handler in api
        ]
        routes += [
            Route("GET", API + "/openapi.json", _framed(self._guarded(self.openapi))),
            Route("GET", "/admin", _framed(self.dashboard_redirect)),
            Route("GET", "/admin/", _framed(self.dashboard)),
            StaticRoute("/admin/static/", ADMIN_DIR, FRAME_BLOCKING),
        ]
        return routes

    # -- auth ----------------------------------------------------------------------------------

    def authorized(self, request: OpsRequest) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self._token)

    def _guarded(self, handler: OpsHandler) -> OpsHandler:
        async def guarded(request: OpsRequest) -> web.Response:
            if not self.authorized(request):
                response = _problem(401, "a valid bearer token is required")
                response.headers["WWW-Authenticate"] = 'Bearer realm="easyrtc-admin"'
                return response
            try:
                return await handler(request)
            except EngineUnavailable:  # a cluster's Redis or partition did not answer in time
                return _problem(503, "the cluster did not answer in time")

        return guarded

    # -- reading -------------------------------------------------------------------------------

    async def applications(self, _request: OpsRequest) -> web.Response:
        found = await self.server.directory.applications()
        return _json(_whole({"applications": found.value}, found))

    async def rooms(self, request: OpsRequest) -> web.Response:
        found = await self.server.directory.rooms(request.match_info["app"])
        if found.value is None:
            return _not_found("no such application", found)
        return _json(_whole({"rooms": found.value}, found))

    async def room(self, request: OpsRequest) -> web.Response:
        info = request.match_info
        found = await self.server.directory.room(info["app"], info["room"])
        if found.value is None:
            return _not_found("no such room", found)
        return _json(_whole(found.value, found))

    async def connection(self, request: OpsRequest) -> web.Response:
        found = await self.server.directory.connection(request.match_info["easyrtcid"])
        if found.value is None:
            return _not_found("no such connection", found)
        return _json(found.value)

    # -- acting --------------------------------------------------------------------------------

    async def kick(self, request: OpsRequest) -> web.Response:
        found = await self.server.directory.disconnect(request.match_info["easyrtcid"])
        if not found.value:
            return _not_found("no such connection", found)
        return _json({"disconnected": True})

    async def message(self, request: OpsRequest) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _problem(400, "the body must be a JSON object")
        msg_type = body.get("msgType")
        if not isinstance(msg_type, str) or not 0 < len(msg_type) <= MSG_TYPE_MAX:
            return _problem(400, f"msgType must be a string of 1 to {MSG_TYPE_MAX} characters")
        targets = [key for key in ("easyrtcid", "room", "group") if key in body]
        if len(targets) != 1 or not isinstance(body[targets[0]], str):
            return _problem(400, "give exactly one of easyrtcid, room or group (a string)")
        app = body.get("app", "")
        if not isinstance(app, str):
            return _problem(400, "app must be a string")
        target: Target = targets[0]  # type: ignore[assignment]
        try:
            found = await self.server.directory.send_message(
                msg_type,
                body.get("msgData"),
                app or self.server.options.app_default_name,
                target,
                body[target],
            )
        except KeyError:
            return _problem(404, "no such application or room")
        return _json(_whole({"recipients": found.value}, found))

    async def set_room_field(self, request: OpsRequest) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict) or "value" not in body:
            return _problem(400, 'the body must be a JSON object with "value"')
        shared = body.get("shared", True)
        if not isinstance(shared, bool):
            return _problem(400, "shared must be true or false")
        info = request.match_info
        try:
            await self.server.directory.set_room_field(
                info["app"], info["room"], info["field"], body["value"], shared=shared
            )
        except KeyError:
            return _problem(404, "no such application or room")
        except ValueError as exc:
            return _problem(400, str(exc))
        return _json({"name": info["field"], "value": body["value"], "shared": shared})

    # -- documents -----------------------------------------------------------------------------

    async def openapi(self, _request: OpsRequest) -> web.Response:
        return _json(OPENAPI)

    async def dashboard(self, _request: OpsRequest) -> web.Response:
        page = await asyncio.get_running_loop().run_in_executor(None, self._page.read_bytes)
        return web.Response(
            body=page,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def dashboard_redirect(self, _request: OpsRequest) -> web.Response:
        # relative: works under a mount path
        return web.Response(status=308, headers={"Location": "admin/"})


def _framed(handler: OpsHandler) -> OpsHandler:
    """``handler`` whose responses no page may frame (``FRAME_BLOCKING``)."""

    async def framed(request: OpsRequest) -> web.Response:
        response = await handler(request)
        response.headers.update(FRAME_BLOCKING)
        return response

    return framed


async def _body(request: OpsRequest) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _ok(_ref("Error"), "Not found")
_BAD = _ok(_ref("Error"), "Bad request")
_AWAY = _ok(
    _ref("Error"),
    "Not found among the cluster's nodes that answered in time (missingNodes), or the "
    "cluster did not answer",
)
_UNAVAILABLE = _ok(_ref("Error"), "The cluster did not answer in time")
_PARTIAL: Final[dict[str, Any]] = {
    "missingNodes": {
        "type": "array",
        "items": {"type": "string"},
        "description": "Nodes of a partitioned cluster that did not answer in time: the answer "
        "is what the others hold. Absent when every node answered.",
    },
    "truncated": {
        "type": "boolean",
        "description": "A node's list was cut at 1,000 items. Absent when nothing was cut.",
    },
}
_NAME = {"type": "string", "minLength": 1}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _NAME}


OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.0.3",
    "info": {
        "title": "easyrtc-server admin API",
        "version": "1",
        "description": "Inspect and act on a running EasyRTC signaling server. Every request "
        "needs `Authorization: Bearer <admin_token>`.",
    },
    "servers": [{"url": "/admin/api"}],
    "security": [{"bearer": []}],
    "paths": {
        "/applications": {
            "get": {
                "summary": "Applications with their room and connection counts",
                "operationId": "listApplications",
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "required": ["applications"],
                            "properties": {
                                "applications": {"type": "array", "items": _ref("Application")},
                                **_PARTIAL,
                            },
                        }
                    ),
                    "401": _ok(_ref("Error"), "Missing or wrong token"),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/applications/{app}/rooms": {
            "get": {
                "summary": "Rooms of an application with member counts and fields",
                "operationId": "listRooms",
                "parameters": [_path_param("app")],
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "required": ["rooms"],
                            "properties": {
                                "rooms": {"type": "array", "items": _ref("Room")},
                                **_PARTIAL,
                            },
                        }
                    ),
                    "401": _ok(_ref("Error"), "Missing or wrong token"),
                    "404": _ERR,
                    "503": _AWAY,
                },
            }
        },
        "/applications/{app}/rooms/{room}": {
            "get": {
                "summary": "One room with its occupants",
                "operationId": "getRoom",
                "parameters": [_path_param("app"), _path_param("room")],
                "responses": {
                    "200": _ok(
                        {
                            "allOf": [
                                _ref("Room"),
                                {
                                    "type": "object",
                                    "required": ["occupants"],
                                    "properties": {
                                        "occupants": {"type": "array", "items": _ref("Occupant")},
                                        **_PARTIAL,
                                    },
                                },
                            ]
                        }
                    ),
                    "401": _ok(_ref("Error"), "Missing or wrong token"),
                    "404": _ERR,
                    "503": _AWAY,
                },
            }
        },
        "/applications/{app}/rooms/{room}/fields/{field}": {
            "put": {
                "summary": "Set a room field; members are told (shared fields)",
                "operationId": "setRoomField",
                "parameters": [
                    _path_param("app"),
                    _path_param("room"),
                    {
                        "name": "field",
                        "in": "path",
                        "required": True,
                        "description": "Must match the field_name_regexp option (default shown).",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_. -]{1,32}$"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["value"],
                                "properties": {
                                    "value": {},
                                    "shared": {"type": "boolean", "default": True},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "required": ["name", "value", "shared"],
                            "properties": {
                                "name": {"type": "string"},
                                "value": {},
                                "shared": {"type": "boolean"},
                            },
                        }
                    ),
                    "400": _BAD,
                    "401": _ok(_ref("Error"), "Missing or wrong token"),
                    "404": _ERR,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/connections/{easyrtcid}": {
            "get": {
                "summary": "One authenticated connection",
                "operationId": "getConnection",
                "parameters": [_path_param("easyrtcid")],
                "responses": {
                    "200": _ok(_ref("Occupant")),
                    "401": _ok(_ref("Error"), "Missing or wrong token"),
                    "404": _ERR,
                    "503": _AWAY,
                },
            },
            "delete": {
                "summary": "Kick: close the connection's socket (peers get removeClient)",
                "operationId": "kickConnection",
                "parameters": [_path_param("easyrtcid")],
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "required": ["disconnected"],
                            "properties": {"disconnected": {"type": "boolean"}},
                        }
                    ),
                    "401": _ok(_ref("Error"), "Missing or wrong token"),
                    "404": _ERR,
                    "503": _AWAY,
                },
            },
        },
        "/messages": {
            "post": {
                "summary": "Send a server message (easyrtcMsg) to a connection, room or group",
                "operationId": "sendMessage",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("MessageRequest")}},
                },
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "required": ["recipients"],
                            "properties": {
                                "recipients": {"type": "integer", "minimum": 0},
                                **_PARTIAL,
                            },
                        }
                    ),
                    "400": _BAD,
                    "401": _ok(_ref("Error"), "Missing or wrong token"),
                    "404": _ERR,
                    "503": _UNAVAILABLE,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "missingNodes": _PARTIAL["missingNodes"],
                },
            },
            "Application": {
                "type": "object",
                "required": ["name", "rooms", "connections"],
                "properties": {
                    "name": {"type": "string"},
                    "rooms": {"type": "integer", "minimum": 0},
                    "connections": {"type": "integer", "minimum": 0},
                },
            },
            "Room": {
                "type": "object",
                "required": ["name", "members", "fields"],
                "properties": {
                    "name": {"type": "string"},
                    "members": {"type": "integer", "minimum": 0},
                    "fields": {"type": "object"},
                },
            },
            "Occupant": {
                "type": "object",
                "required": [
                    "easyrtcid",
                    "app",
                    "username",
                    "presence",
                    "rooms",
                    "remoteAddress",
                    "connectedSince",
                    "transport",
                ],
                "properties": {
                    "easyrtcid": {"type": "string"},
                    "app": {"type": "string"},
                    "username": {"type": "string", "nullable": True},
                    "presence": {
                        "type": "object",
                        "properties": {
                            "show": {"type": "string"},
                            "status": {"type": "string", "nullable": True},
                        },
                    },
                    "rooms": {"type": "array", "items": {"type": "string"}},
                    "remoteAddress": {"type": "string", "nullable": True},
                    "connectedSince": {
                        "type": "string",
                        "format": "date-time",
                        "nullable": True,
                    },
                    "transport": {
                        "type": "string",
                        "enum": ["polling", "websocket", "python-socketio"],
                        "nullable": True,
                    },
                },
            },
            "MessageRequest": {
                "type": "object",
                "required": ["msgType"],
                "properties": {
                    "msgType": {"type": "string", "minLength": 1, "maxLength": MSG_TYPE_MAX},
                    "msgData": {},
                    "app": {"type": "string", "description": "default: app_default_name"},
                    "easyrtcid": {"type": "string"},
                    "room": {"type": "string"},
                    "group": {"type": "string"},
                },
                "description": "Exactly one of easyrtcid, room or group.",
                "oneOf": [
                    {"required": ["easyrtcid"]},
                    {"required": ["room"]},
                    {"required": ["group"]},
                ],
            },
        },
    },
}
