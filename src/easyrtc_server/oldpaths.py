"""The import paths of the 0.1 layout, kept working for one release.

The sans-I/O protocol modules moved to ``easyrtc_server.protocol`` and the operating side
(metrics, admin API, webhooks, probes) to ``easyrtc_server.operations``. Hook code written
against the old paths (``from easyrtc_server.model import Peer``) still runs: importing an old
path gives the very module at its new path (the same classes, so ``isinstance`` holds) with a
``DeprecationWarning`` that names the new path. Type checkers see only the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Final

PROTOCOL_MODULES: Final = (
    "auth",
    "coalescing",
    "control",
    "core",
    "decisions",
    "delivery",
    "errors",
    "hold",
    "ice",
    "jsregex",
    "model",
    "outcome",
    "relay",
    "roomdata",
    "rooms",
    "state",
    "turn",
    "validation",
)
OPERATIONS_MODULES: Final = ("admin", "health", "metrics", "routes", "webhooks")

MOVED: Final[dict[str, str]] = {
    **{f"easyrtc_server.{name}": f"easyrtc_server.protocol.{name}" for name in PROTOCOL_MODULES},
    **{
        f"easyrtc_server.{name}": f"easyrtc_server.operations.{name}" for name in OPERATIONS_MODULES
    },
}
"""Old module path -> new module path."""


class MovedModuleLoader(importlib.abc.Loader):
    """Hands out the module at its new path, imported there, for an old path."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new}; the old path goes away in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module ran at its new path."""


class OldPathFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths in ``MOVED`` (nothing else), before the file system is searched."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, MovedModuleLoader(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once per process."""
    if not any(isinstance(finder, OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, OldPathFinder())
