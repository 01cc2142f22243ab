"""Hatchling build hook: put the browser client that easyrtc-server serves into the wheel.

The npm packages pinned in ``package-lock.json`` are the source: ``open-easyrtc``'s ``api/``
folder (served at ``/easyrtc/``) and ``socket.io-client``'s browser bundle (served at
``/socket.io/socket.io.js``), each with its licence text and ``package.json`` (the version the
server reports). They are taken from the project's ``node_modules`` when it matches the lock (a
checkout after ``npm ci``), otherwise installed with ``npm ci`` into a temporary folder (an
sdist, a fresh clone). They land in the wheel as ``easyrtc_server/client/`` without ever being
written into the source tree, so nothing third-party is committed; ``clientfiles`` finds them there.

Editable installs (``pip install -e .``) skip all this: a checkout serves its own ``node_modules``.
``EASYRTC_NPM`` names the npm executable (default ``npm`` on ``PATH``).
"""

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE_DATA_DIR = "easyrtc_server/client"
"""Where the client files go inside the wheel (``clientfiles.PACKAGE_CLIENT_DIR``)."""

NPM_ENV_VAR = "EASYRTC_NPM"


@dataclass(frozen=True)
class ClientPackage:
    """One npm package whose files the wheel carries."""

    name: str
    files: tuple[str, ...]
    """Paths inside the npm package; a folder is copied whole."""
    licence: str
    """SPDX identifier the lock file must state (it is named in the README)."""


CLIENT_PACKAGES = (
    ClientPackage("open-easyrtc", ("api", "LICENSE", "package.json"), "BSD-2-Clause"),
    ClientPackage(
        "socket.io-client",
        ("dist/socket.io.js", "dist/socket.io.js.map", "LICENSE", "package.json"),
        "MIT",
    ),
)


class ClientFilesError(RuntimeError):
    """The client files cannot be had; the message says what is missing and how to get it."""


class ClientFilesHook(BuildHookInterface[BuilderConfig]):
    """Adds ``easyrtc_server/client/`` to regular (not editable) wheels."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        self._staging = Path(tempfile.mkdtemp(prefix="easyrtc-client-"))
        client = stage_client_files(Path(self.root), self._staging / "client")
        build_data["force_include"][str(client)] = PACKAGE_DATA_DIR
        self.app.display_info(f"client files bundled: {describe(Path(self.root))}")

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        staging = getattr(self, "_staging", None)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def locked_versions(root: Path) -> dict[str, str]:
    """``{package: version}`` of the client packages, from ``root/package-lock.json``."""
    lock_file = root / "package-lock.json"
    try:
        lock = json.loads(lock_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClientFilesError(
            f"{lock_file} is missing: the browser client files are pinned there "
            "(build from a git checkout or an sdist that includes package.json and "
            "package-lock.json)"
        ) from None
    versions = {}
    for package in CLIENT_PACKAGES:
        entry = lock.get("packages", {}).get(f"node_modules/{package.name}")
        if entry is None:
            raise ClientFilesError(f"{lock_file} does not pin {package.name}")
        if entry.get("license") != package.licence:
            raise ClientFilesError(
                f"{package.name} {entry['version']} in {lock_file} is licensed "
                f"{entry.get('license')!r}, not {package.licence}: review it, then update "
                "build_client.py and the README"
            )
        versions[package.name] = entry["version"]
    return versions


def describe(root: Path) -> str:
    return ", ".join(f"{name} {version}" for name, version in locked_versions(root).items())


def stage_client_files(root: Path, target: Path) -> Path:
    """Copy the locked client packages' files to ``target/<package>/...``; returns ``target``.

    Uses ``root/node_modules`` if every client package there has the locked version, else runs
    ``npm ci`` in a temporary copy of ``package.json`` and ``package-lock.json`` (the project's
    own ``node_modules`` is never touched). Raises ``ClientFilesError`` saying what is missing.
    """
    versions = locked_versions(root)
    node_modules = root / "node_modules"
    with tempfile.TemporaryDirectory(prefix="easyrtc-npm-") as scratch:
        if _installed_versions(node_modules) != versions:
            node_modules = _npm_ci(root, Path(scratch), versions)
        for package in CLIENT_PACKAGES:
            source = node_modules / package.name
            for name in package.files:
                _copy(source / name, target / package.name / name)
    return target


def _installed_versions(node_modules: Path) -> dict[str, str]:
    versions = {}
    for package in CLIENT_PACKAGES:
        try:
            manifest = json.loads((node_modules / package.name / "package.json").read_text())
        except (OSError, ValueError):
            continue
        versions[package.name] = str(manifest.get("version"))
    return versions


def _npm_ci(root: Path, scratch: Path, versions: dict[str, str]) -> Path:
    """``npm ci`` (production packages, no install scripts) in ``scratch``."""
    wanted = ", ".join(f"{name} {version}" for name, version in versions.items())
    npm = os.environ.get(NPM_ENV_VAR) or "npm"
    executable = shutil.which(npm)
    if executable is None:
        raise ClientFilesError(
            f"the wheel must carry the browser client files ({wanted}, pinned in "
            f"package-lock.json), but {root / 'node_modules'} does not hold those versions and "
            f"npm was not found ({NPM_ENV_VAR}={npm!r}). Install Node.js and npm (Debian: "
            "`apt-get install npm`) and build again, or run `npm ci` in the source folder first."
        )
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(root / name, scratch / name)
    command = [
        executable, "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund",
        "--loglevel=error",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=scratch, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ClientFilesError(
            f"`npm ci` failed (exit {result.returncode}) installing the browser client files "
            f"({wanted}):\n{result.stdout}{result.stderr}"
        )
    installed = _installed_versions(scratch / "node_modules")
    if installed != versions:
        raise ClientFilesError(f"`npm ci` installed {installed}, not the locked {versions}")
    return scratch / "node_modules"


def _copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, destination)
    elif source.is_file():
        shutil.copy2(source, destination)
    else:
        raise ClientFilesError(f"{source} is missing from the npm package")
