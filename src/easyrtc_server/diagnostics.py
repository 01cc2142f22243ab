"""What a stuck server is doing: on ``SIGUSR1``, where every asyncio task is waiting, logged.

A node whose log reader "applied nothing for 10 s", a drain that does not end: a thread dump
(py-spy, faulthandler) shows the event loop's thread in ``epoll_wait``, which says nothing of
the tasks. ``kill -USR1 PID`` logs one WARNING line per task (sorted by name): its name and the
chain of coroutines it awaits, outermost first, as ``file:line function``. Code locations
only, no values: no client text and no secret reaches the log. Installed by the command line's
server (an application embedding the server keeps its signals to itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from types import FrameType

log = logging.getLogger("easyrtc_server.diagnostics")

FRAMES = 12
"""Frames shown per task (the innermost ones)."""


def awaiting(coro: object) -> list[FrameType]:
    """The frames of ``coro`` and of what it awaits, outermost first (a suspended task's own
    stack is one frame: the chain of awaits is what tells where it waits)."""
    frames: list[FrameType] = []
    while coro is not None and len(frames) < FRAMES:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def task_lines() -> list[str]:
    """One line per task of the running loop: where it is waiting."""
    lines = []
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        frames = [
            f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"
            for frame in awaiting(task.get_coro())
        ]
        state = "done" if task.done() else "waiting"
        lines.append(f"task {task.get_name()} ({state}): {' > '.join(frames) or '(no frame)'}")
    return lines


def dump_tasks() -> None:
    lines = task_lines()
    log.warning("%d asyncio tasks (SIGUSR1):", len(lines))
    for line in lines:
        log.warning("%s", line)


async def install_task_dump(_app: object = None) -> None:
    """``SIGUSR1`` dumps the tasks (an aiohttp ``on_startup`` callback)."""
    loop = asyncio.get_running_loop()
    # A loop without signal handlers (Windows' raises NotImplementedError) or a thread that is
    # not the main one (RuntimeError, ValueError): no dump there, the server runs all the same.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
