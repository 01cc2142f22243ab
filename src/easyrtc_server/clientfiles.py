"""Where the browser-side files live: the open-easyrtc client API folder and the socket.io
browser bundle, installed by ``npm ci`` into a checkout's ``node_modules`` or bundled in the
wheel (``build_client.py`` puts them in ``easyrtc_server/client/``).

Owns the search for them and the explanation when they are missing. It never raises and never
logs: the caller decides what to do with ``ClientFiles.problems`` (``app.create_app`` logs them;
``web`` answers 404 for what is missing). Knows nothing of HTTP.

Search order, for each of the two items separately (the first place that has it wins):

1. the explicit argument (``--client-dir`` ends up in ``api_dir``, ``--socketio-js`` in
   ``socketio_js``);
2. the environment variable ``EASYRTC_CLIENT_DIR``;
3. ``node_modules`` in the current working directory;
4. ``node_modules`` at the repository root (found from this file: ``src/easyrtc_server/``);
5. the files bundled in the installed package (``client/`` next to this file; absent in a
   checkout, whose editable install serves its ``node_modules``).

A place given explicitly (1 or 2) may be a folder that holds ``node_modules``, a ``node_modules``
folder, the ``open-easyrtc`` package folder (any name: ``node_modules/open-easyrtc-v2`` for the
2.0.x client), or its ``api`` folder itself. The socket.io bundle found from a package or api
folder is the one that package depends on (its own ``node_modules`` first, as Node resolves it),
unless ``socketio_js`` names one.
"""

from __future__ import annotations

import json
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

PACKAGE_CLIENT_DIR = Path(__file__).resolve().parent / "client"
"""The client files a wheel carries, laid out as in ``node_modules`` (``open-easyrtc/api``,
``socket.io-client/dist``), each package with its ``LICENSE`` and ``package.json``."""

OUR_CLIENT_DIR = Path(__file__).resolve().parent / "clientjs"
"""Browser scripts of this project, served beside the open-easyrtc ones."""
RESUME_SCRIPT = "easyrtc_resume.js"
"""Keeps an easyrtc.js app's calls up across signaling drops (``hold``); served at
``{api_public_folder}/easyrtc_resume.js``."""

PACKAGE_LABEL = "package"
CLIENT_PACKAGES = ("open-easyrtc", "socket.io-client")

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
    api_from: str = ""
    """Which place the API folder came from (``package``, ``repository``, ...)."""
    socketio_from: str = ""

    @property
    def complete(self) -> bool:
        """Both the API folder and the socket.io bundle were found."""
        return self.api_dir is not None and self.socketio_js is not None

    def without_api(self) -> ClientFiles:
        """The same files with the API folder left out (``apiEnable`` off): only the socket.io
        bundle stays, which the demos still need."""
        return replace(self, api_dir=None, api_from="", problems=list(self.problems))

    def versions(self) -> dict[str, str]:
        """``{npm package: version}`` of what was found, read from each one's package.json
        (``"unknown version"`` for a bare folder without one)."""
        return dict(item for item in self._packages() if item is not None)

    def summary(self) -> str:
        """One line for the start-up log: what is served, which versions, from where."""
        parts = []
        for package, what, path, place in zip(
            self._packages(),
            ("open-easyrtc client API", "socket.io browser client"),
            (self.api_dir, self.socketio_js),
            (self.api_from, self.socketio_from),
            strict=True,
        ):
            if package is None:
                parts.append(f"{what} not found")
            else:
                parts.append(f"{package[0]} {package[1]} from {path} ({place})")
        return "client files: " + "; ".join(parts)

    def _packages(self) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        """(name, version) of the API's npm package and of the bundle's, None where missing."""
        api = sio = None
        if self.api_dir is not None:
            api = _package_json(self.api_dir.parent) or ("open-easyrtc", "unknown version")
        if self.socketio_js is not None:
            sio = _package_json(self.socketio_js.parent.parent) or (
                "socket.io-client",
                "unknown version",
            )
        return api, sio


def bundled_versions() -> dict[str, str]:
    """``{npm package: version}`` of the client files in the installed package (empty in an
    editable install of a checkout, which serves its own node_modules)."""
    found = {}
    for name in CLIENT_PACKAGES:
        manifest = _package_json(PACKAGE_CLIENT_DIR / name)
        if manifest is not None:
            found[manifest[0]] = manifest[1]
    return found


@dataclass(frozen=True)
class _Place:
    path: Path
    label: str
    explicit: bool
    bundled: bool = False
    """The package's own ``client`` folder: it holds the npm packages, like node_modules."""

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
    api_from = ""
    for place in places:
        found_api = _api_under(place.path)
        if found_api is not None:
            api_from = place.label
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
    sio_from = ""
    if socketio_js is not None:
        found_sio = _bundle_at(_expand(socketio_js))
        if found_sio is None:
            problems.append(f"no socket.io.js at {socketio_js} (socketio_js argument); ignored")
        else:
            sio_from = "socketio_js argument"
    if found_sio is None:
        for place in places:
            found_sio = _bundle_under(place.path, holds_packages=place.bundled)
            if found_sio is not None:
                sio_from = place.label
                break
    if found_sio is None:
        problems.append(
            f"socket.io browser client not found (looked for node_modules/"
            f"{SOCKETIO_IN_NODE_MODULES.as_posix()} from {_listing(places)}); {HOW_TO_GET}"
        )

    return ClientFiles(
        api_dir=found_api,
        socketio_js=found_sio,
        problems=problems,
        api_from=api_from,
        socketio_from=sio_from,
    )


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
    places.append(_Place(PACKAGE_CLIENT_DIR, PACKAGE_LABEL, explicit=False, bundled=True))

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


def _bundle_under(root: Path, *, holds_packages: bool = False) -> Path | None:
    """``socket.io.js`` in the node_modules that ``root`` is, holds, or sits in (or in ``root``
    itself when it ``holds_packages`` the way node_modules does: the package's bundle).

    From an open-easyrtc package or api folder the package's own ``node_modules`` comes first,
    as Node resolves it: an open-easyrtc 2.0.x installed next to socket.io-client 4 (as
    ``open-easyrtc-v2`` is here) keeps its socket.io-client 2 there, and that is the one its
    easyrtc.js speaks to.
    """
    if holds_packages:
        bundle = root / SOCKETIO_IN_NODE_MODULES
        return bundle if _is_file(bundle) else None
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


def _package_json(folder: Path) -> tuple[str, str] | None:
    """``(name, version)`` from ``folder/package.json``, if it is readable and has both."""
    try:
        manifest = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    name, version = manifest.get("name"), manifest.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        return None
    return name, version


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
