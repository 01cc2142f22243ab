"""What ``easyrtc-server`` says when it starts, and when it cannot listen."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

from support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "easyrtc_server", "--client-dir", str(ROOT), *args]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYRTC_")}
    env.update(extra)
    return env


def test_start_up_line_names_urls_transport_sources_and_role(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "easyrtc.toml"
    config.write_text(f"metrics_port = {metrics_port}\n")
    env = _env(EASYRTC_ADMIN_TOKEN="t" * 20)
    with subprocess.Popen(
        _command("--host", "127.0.0.1", "--port", str(port), "--config", str(config)),
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stderr is not None
        try:
            main, metrics = _lines_from(proc.stderr, "listening on", 2)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
    base = f"http://127.0.0.1:{port}"
    assert f"listening on {base}/: open {base}/, demos {base}/demos/, admin {base}/admin/" in main
    assert "transport lean" in main
    assert (
        f"config from defaults < config file {config} < environment (EASYRTC_ADMIN_TOKEN)"
        " < command line (--client-dir, --host, --port)" in main
    )
    assert "running alone" in main
    assert "t" * 20 not in main
    assert f"metrics listening on http://127.0.0.1:{metrics_port}/" in metrics


def _lines_from(stream: IO[str], start: str, count: int) -> list[str]:
    """``count`` lines from the first one containing ``start`` (other log lines come first)."""
    for _ in range(10):
        line = stream.readline()
        if start in line:
            return [line] + [stream.readline() for _ in range(count - 1)]
    raise AssertionError(f"no line with {start!r}")


def _fails(*args: str) -> str:
    result = subprocess.run(_command(*args), capture_output=True, text=True, env=_env(), timeout=30)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert len(errors) == 1, result.stderr  # one line, after the start-up's log lines
    return errors[0]


def test_taken_port_is_one_line_and_an_error_exit() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _fails("--host", "127.0.0.1", "--port", str(port))
    assert line == (
        f"Error: cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(another server running? choose another with --port)"
    )


def test_wrong_address_is_one_line_and_an_error_exit() -> None:
    port = str(free_port())
    assert "unknown host 'no-such-host.invalid'" in _fails(
        "--host", "no-such-host.invalid", "--port", port
    )
    assert "192.0.2.1 is not an address of this machine" in _fails(
        "--host", "192.0.2.1", "--port", port
    )
