"""A Lua script that runs in pipelines: ``EVALSHA``, and ``EVAL`` where Redis does not know it
(a restarted Redis, or a replica promoted by a failover: scripts are not replicated). redis-py's
own ``Script`` sends ``EVALSHA`` in a pipeline without the fallback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from .redisclient import AsyncClient


class LuaScript:
    """A Lua script run by ``EVALSHA`` (in pipelines too), and by ``EVAL`` where a node does
    not know it yet (a fresh master after a failover, a restarted Redis)."""

    def __init__(self, client: AsyncClient, text: str) -> None:
        self.client = client
        self.text = text
        self.sha: str = client.register_script(text).sha

    def queue(self, pipe: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)

    async def run_all(self, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Every call in one pipeline (one round trip per master), their replies in order; a
        call that failed gives its exception in its place."""
        async with self.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                self.queue(pipe, keys, args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):  # nothing ran: run it with its text
                keys, args = calls[i]
                try:
                    replies[i] = await self.client.eval(self.text, len(keys), *keys, *args)
                except RedisError as exc:
                    replies[i] = exc
        return replies

    async def run(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        (reply,) = await self.run_all([(keys, args)])
        if isinstance(reply, BaseException):
            raise reply
        return reply
