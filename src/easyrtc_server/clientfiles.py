"""Where the browser-side files live: the open-easyrtc client API folder and the socket.io
browser bundle, both installed by ``npm ci`` into ``node_modules``.

Owns the search for them and the explanation when they are missing. It never raises and never
logs: the caller decides what to do with ``ClientFiles.problems`` (``app.create_app`` logs them;
``web`` answers 404 for what is missing). Knows nothing of HTTP.

Search order, for each of the two items separately (the first place that has it wins):

1. the explicit argument (``--client-dir`` ends up in ``api_dir``, ``--socketio-js`` in
   ``socketio_js``);
2. the environment variable ``EASYRTC_CLIENT_DIR``;
3. ``node_modules`` in the current working directory;
4. ``node_modules`` at the repository root (found from this file: ``src/easyrtc_server/``).

A place given explicitly (1 or 2) may be a folder that holds ``node_modules``, a ``node_modules``
folder, the ``open-easyrtc`` package folder (any name: ``node_modules/open-easyrtc-v2`` for the
2.0.x client), or its ``api`` folder itself. The socket.io bundle found from a package or api
folder is the one that package depends on (its own ``node_modules`` first, as Node resolves it),
unless ``socketio_js`` names one.
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

ENV_VAR = "EASYRTC_CLIENT_DIR"
"""Environment variable naming a folder that holds node_modules, or an open-easyrtc api dir."""

API_MARKER = "easyrtc.js"
"""A folder is the client API folder when it holds this file."""

API_IN_NODE_MODULES = Path("open-easyrtc", "api")
SOCKETIO_IN_NODE_MODULES = Path("socket.io-client", "dist", "socket.io.js")

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout this module runs from (src layout). Meaningless for an installed wheel, in which
case it simply holds no ``node_modules``."""

HOW_TO_GET = (
    f"run `npm ci` in the repository, or pass --client-dir (or set {ENV_VAR}) "
    "to a folder that holds node_modules"
)


@dataclass(frozen=True)
class ClientFiles:
    """The client assets found, and what is missing (empty ``problems`` when all is well)."""

    api_dir: Path | None
    socketio_js: Path | None
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Both the API folder and the socket.io bundle were found."""
        return self.api_dir is not None and self.socketio_js is not None

    def without_api(self) -> ClientFiles:
        """The same files with the API folder left out (``apiEnable`` off): only the socket.io
        bundle stays, which the demos still need."""
        return replace(self, api_dir=None, problems=list(self.problems))


@dataclass(frozen=True)
class _Place:
    path: Path
    label: str
    explicit: bool

    def describe(self) -> str:
        return f"{self.path} ({self.label})"


def find_client_files(api_dir: Path | None = None, socketio_js: Path | None = None) -> ClientFiles:
    """Find the open-easyrtc ``api`` folder and ``socket.io.js``; never raises.

    ``api_dir`` may be the api folder itself or any folder that leads to it (see the module
    docstring); ``socketio_js`` is the bundle file (or a folder holding it). An explicit place
    that lacks what it was given for is reported in ``problems`` and the search goes on.
    """
    problems: list[str] = []
    places = _places(api_dir)

    found_api: Path | None = None
    for place in places:
        found_api = _api_under(place.path)
        if found_api is not None:
            break
        if place.explicit:
            problems.append(
                f"no open-easyrtc client API ({API_MARKER}) at {place.describe()}; ignored"
            )
    if found_api is None:
        problems.append(
            f"open-easyrtc client API not found (looked for {API_MARKER} in "
            f"{_listing(places)}); {HOW_TO_GET}"
        )

    found_sio: Path | None = None
    if socketio_js is not None:
        found_sio = _bundle_at(_expand(socketio_js))
        if found_sio is None:
            problems.append(f"no socket.io.js at {socketio_js} (socketio_js argument); ignored")
    if found_sio is None:
        for place in places:
            found_sio = _bundle_under(place.path)
            if found_sio is not None:
                break
    if found_sio is None:
        problems.append(
            f"socket.io browser client not found (looked for node_modules/"
            f"{SOCKETIO_IN_NODE_MODULES.as_posix()} from {_listing(places)}); {HOW_TO_GET}"
        )

    return ClientFiles(api_dir=found_api, socketio_js=found_sio, problems=problems)


def _places(api_dir: Path | None) -> list[_Place]:
    """Where to look, in order, without duplicates."""
    places: list[_Place] = []
    if api_dir is not None:
        places.append(_Place(_expand(api_dir), "api_dir argument", explicit=True))
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        places.append(_Place(_expand(Path(env)), ENV_VAR, explicit=True))
    with suppress(OSError):  # the working directory may have been deleted under us
        places.append(_Place(Path.cwd(), "current directory", explicit=False))
    places.append(_Place(REPO_ROOT, "repository", explicit=False))

    unique: list[_Place] = []
    seen: set[Path] = set()
    for place in places:
        key = _real(place.path)
        if key not in seen:
            seen.add(key)
            unique.append(place)
    return unique


def _api_under(root: Path) -> Path | None:
    """The api folder that ``root`` is or leads to."""
    for candidate in (
        root,  # the api folder itself
        root / "api",  # the open-easyrtc package folder
        root / API_IN_NODE_MODULES,  # a node_modules folder
        root / "node_modules" / API_IN_NODE_MODULES,  # a project folder
    ):
        if _is_file(candidate / API_MARKER):
            return candidate
    return None


def _bundle_under(root: Path) -> Path | None:
    """``socket.io.js`` in the node_modules that ``root`` is, holds, or sits in.

    From an open-easyrtc package or api folder the package's own ``node_modules`` comes first,
    as Node resolves it: an open-easyrtc 2.0.x installed next to socket.io-client 4 (as
    ``open-easyrtc-v2`` is here) keeps its socket.io-client 2 there, and that is the one its
    easyrtc.js speaks to.
    """
    is_api_folder = _is_file(root / API_MARKER)
    for node_modules in (
        root / "node_modules",  # a project folder, or the package folder's own dependencies
        root.parent / "node_modules" if is_api_folder else None,  # the api folder's package's
        root,  # a node_modules folder
        root.parent,  # the open-easyrtc package folder inside node_modules
        root.parent.parent,  # its api folder
    ):
        if node_modules is None or node_modules.name != "node_modules":
            continue
        bundle = node_modules / SOCKETIO_IN_NODE_MODULES
        if _is_file(bundle):
            return bundle
    return None


def _bundle_at(path: Path) -> Path | None:
    """``path`` if it is the bundle, or the bundle inside a package or dist folder ``path``."""
    for candidate in (path, path / "socket.io.js", path / "dist" / "socket.io.js"):
        if _is_file(candidate):
            return candidate
    return None


def _listing(places: list[_Place]) -> str:
    return ", ".join(place.describe() for place in places)


def _expand(path: Path) -> Path:
    try:
        return path.expanduser()
    except RuntimeError:  # "~user" that does not exist, or no home directory
        return path


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return path


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
