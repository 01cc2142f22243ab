"""``easyrtc-server check-config FILE``: validate a TOML configuration without starting.

The file is checked on its own (the environment and flags are not applied), with the same
rules and messages as at start-up, so a deployment can test a file before it rolls it out.
"""

from __future__ import annotations

from pathlib import Path

from .config import ConfigError, build, read_toml


def check_config(path: Path) -> str:
    """A one-line summary of a valid file; ConfigError naming the problem otherwise."""
    settings = read_toml(path)
    build(settings)
    count = len(settings)
    return f"{path}: OK ({count} option{'s' if count != 1 else ''} set)"


__all__ = ["ConfigError", "check_config"]
