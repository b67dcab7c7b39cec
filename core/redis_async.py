"""Lua scripts run from the event loop, on a few Redis connections of the loop's own.

For the requests the event loop answers itself (`gemini_clone.loop_answers`): no thread, so
no blocking client. redis-py's asyncio pool costs a third more client CPU per command than
taking a connection from a plain list (measured: 108 against 78 µs per EVALSHA), so the
connections are kept here: at most `max_connections` per event loop, each carrying one
command at a time; a command waits for one when all are busy.

A connection whose command failed or was cancelled half-way is closed, never reused: what
is left to read on it is unknown. Nothing is retried: a caller that falls back on another
path on any error has no use for a second try.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any

from django.conf import settings
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

from core.redis_scripts import script_sha


class _LoopConnections:
    def __init__(self, factory: ConnectionPool, max_connections: int) -> None:
        self.factory = factory
        self.idle: list[AbstractConnection] = []
        self.free = asyncio.Semaphore(max_connections)


class AsyncScripts:
    """Runs scripts on the Redis at `url`, from any event loop (connections per loop)."""

    def __init__(self, url: str, *, max_connections: int, **connection_options: Any) -> None:
        self.url = url
        self.max_connections = max_connections
        self.connection_options = connection_options
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnections] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, script: bytes, keys: list[str], *args: Any) -> Any:
        """The script's reply; raises RedisError."""
        connections = self._of_running_loop()
        async with connections.free:
            connection = connections.idle.pop() if connections.idle else None
            if connection is None:
                connection = connections.factory.make_connection()
            try:
                try:
                    reply = await _command(
                        connection, "EVALSHA", script_sha(script), len(keys), *keys, *args
                    )
                except NoScriptError:
                    reply = await _command(connection, "EVAL", script, len(keys), *keys, *args)
            except ResponseError:
                connections.idle.append(connection)  # Redis answered: the connection is fine
                raise
            except BaseException:
                await _close(connection)
                raise
            connections.idle.append(connection)
            return reply

    def _of_running_loop(self) -> _LoopConnections:
        loop = asyncio.get_running_loop()
        connections = self._loops.get(loop)
        if connections is None:
            factory = ConnectionPool.from_url(self.url, **self.connection_options)
            connections = self._loops[loop] = _LoopConnections(factory, self.max_connections)
        return connections


async def _command(connection: AbstractConnection, *args: Any) -> Any:
    await connection.send_command(*args)  # connects first when needed
    return await connection.read_response()


async def _close(connection: AbstractConnection) -> None:
    with contextlib.suppress(Exception):  # it is being dropped whatever happened
        await connection.disconnect(nowait=True)


_of_url: dict[tuple[str, int], AsyncScripts] = {}


def cache_redis_scripts() -> AsyncScripts:
    """An `AsyncScripts` for the Redis of the default cache, with its timeouts; at most
    WEB_THREADS connections per event loop, as many as the threads that serve the same
    requests otherwise."""
    cache: dict[str, Any] = settings.CACHES["default"]
    options: dict[str, Any] = cache.get("OPTIONS", {})
    key = (str(cache["LOCATION"]), settings.WEB_THREADS)
    scripts = _of_url.get(key)
    if scripts is None:
        scripts = _of_url[key] = AsyncScripts(
            key[0],
            max_connections=key[1],
            socket_timeout=options.get("SOCKET_TIMEOUT"),
            socket_connect_timeout=options.get("SOCKET_CONNECT_TIMEOUT"),
        )
    return scripts
