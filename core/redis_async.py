"""Lua scripts run from the event loop, on a few Redis connections of the loop's own.

For the requests the event loop answers itself (`gemini_clone.loop_answers`): no thread, so
no blocking client. redis-py's asyncio pool costs a third more client CPU per command than
taking a connection from a plain list (measured: 108 against 78 µs per EVALSHA), so the
connections are kept here: at most `max_connections` per event loop, each carrying one
command at a time; a command waits for one when all are busy.

Every call is bounded by `timeout` seconds, its wait for a connection included, and by
nothing else: the connections have no socket timeout, under which redis-py's sends can lose
our timeout's cancellation (`core.cancellation`) and wait for the socket timeout on top. Callers
have another way to answer, so a Redis that fails is not made to fail each of them in turn
(`core.breaker`): after a connection error, or a second timeout, calls fail at once
(`RedisPaused`) for `pause_seconds`, those already waiting for a connection included; then
one call a pause tries Redis again. Calls in flight together time out together: that is one
timeout (one slow script, or a stall of the event loop, is not an outage); the second is
one of a call begun after the first was noted. An answer of Redis's to a call begun after
the last failure, a script's error included, closes the pause.

A connection whose command failed or was cancelled half-way is closed, never reused: what
is left to read on it is unknown. One that Redis closed while it was idle (a restart, its
idle `timeout`) is replaced before use. Nothing is retried: a script may have run already.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from django.conf import settings
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from core.breaker import Breaker
from core.redis_scripts import script_sha


class RedisPaused(RedisError):
    """Not tried: Redis failed less than `pause_seconds` ago."""


class _LoopConnections:
    def __init__(self, connection_factory: ConnectionPool, max_connections: int) -> None:
        # A redis-py pool used only to make connections with the URL's options.
        self.connection_factory = connection_factory
        self.idle: list[AbstractConnection] = []
        self.slots = asyncio.Semaphore(max_connections)

    async def take(self) -> AbstractConnection:
        while self.idle:
            connection = self.idle.pop()
            # redis-py (checked with 8.1) has no public way to tell that Redis closed a
            # connection: its reader has seen the end of the stream.
            reader = getattr(connection, "_reader", None)
            if reader is not None and not reader.at_eof():
                return connection
            await _close(connection)  # closed by Redis while idle
        return self.connection_factory.make_connection()


class AsyncScripts:
    """Runs scripts on the Redis at `url`, from any event loop (connections per loop)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        timeout: float,
        pause_seconds: float = 1.0,
        **connection_options: Any,
    ) -> None:
        if "socket_timeout" in connection_options:
            raise ValueError("`timeout` bounds each call; the connections have no socket timeout")
        self.url = url
        self.max_connections = max_connections
        self.timeout = timeout
        self.connection_options = connection_options
        self._loops: dict[asyncio.AbstractEventLoop, _LoopConnections] = {}
        self._breaker = Breaker(pause_seconds)
        self._timed_out_at: float | None = None  # the last timeout, until an answer

    async def run(self, script: bytes, keys: list[str], *args: Any) -> Any:
        """The script's reply; raises RedisError (RedisPaused among them)."""
        if not self._breaker.allows():
            raise RedisPaused("Redis failed less than a pause ago")
        started = time.monotonic()
        connections = self._connections_of_running_loop()
        try:
            async with asyncio.timeout(self.timeout), connections.slots:
                if self._breaker.failed_since(started):  # while this one waited for a slot
                    raise RedisPaused("Redis failed while this call waited")
                reply = await self._run_on(connections, script, keys, args)
        except ResponseError:  # Redis answered, with the script's error
            self._note_answer(started)
            raise
        except RedisConnectionError:
            self._breaker.failed()
            raise
        except RedisTimeoutError:
            self._note_timeout(started)
            raise
        except TimeoutError as exc:  # waited `timeout` in all, for a connection included
            self._note_timeout(started)
            raise RedisTimeoutError(f"no answer within {self.timeout} s") from exc
        self._note_answer(started)
        return reply

    def _note_timeout(self, started: float) -> None:
        """Pauses at a second timeout: one of a call begun after the first was noted. The
        calls that were already in flight time out with the first and note nothing, so a
        Redis that hangs under steady traffic still pauses at its second round of calls."""
        if self._timed_out_at is None:
            self._timed_out_at = time.monotonic()
        elif started >= self._timed_out_at:
            self._breaker.failed()
            self._timed_out_at = time.monotonic()

    def _note_answer(self, started: float) -> None:
        if not self._breaker.failed_since(started):  # an answer older than the failure
            self._breaker.succeeded()
        if self._timed_out_at is not None and started >= self._timed_out_at:
            self._timed_out_at = None

    async def _run_on(
        self, connections: _LoopConnections, script: bytes, keys: list[str], args: tuple[Any, ...]
    ) -> Any:
        connection = await connections.take()
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

    def _connections_of_running_loop(self) -> _LoopConnections:
        loop = asyncio.get_running_loop()
        connections = self._loops.get(loop)
        if connections is None:
            # A loop that closed (a test's, a restarted server's) leaves its connections to
            # the garbage collector, which closes their sockets.
            for closed in [known for known in self._loops if known.is_closed()]:
                del self._loops[closed]
            factory = ConnectionPool.from_url(
                self.url,
                **self.connection_options,
                # Off: during a maintenance event (RESP3) they would set a socket timeout.
                maint_notifications_config=MaintNotificationsConfig(enabled=False),
            )
            # None, not left out: redis-py's default is 5 s. Set after from_url, where one in
            # the URL's query would win; the original too, which maintenance notifications
            # (RESP3) would restore.
            factory.connection_kwargs.update(socket_timeout=None, orig_socket_timeout=None)
            connections = self._loops[loop] = _LoopConnections(factory, self.max_connections)
        return connections


async def _command(connection: AbstractConnection, *args: Any) -> Any:
    await connection.send_command(*args)  # connects first when needed
    return await connection.read_response()


async def _close(connection: AbstractConnection) -> None:
    with contextlib.suppress(Exception):  # it is being dropped whatever happened
        await connection.disconnect(nowait=True)


_scripts_by_url: dict[tuple[str, int], AsyncScripts] = {}

# The default cache's options that the connections here follow; with any other (a password
# or TLS options outside the URL, another client class) they would not reach Redis as the
# cache does: `cache_redis_scripts_supported` says no.
_FOLLOWED_OPTIONS = {
    "CLIENT_CLASS",
    "SOCKET_CONNECT_TIMEOUT",
    "SOCKET_TIMEOUT",
    "IGNORE_EXCEPTIONS",
}
_DEFAULT_CLIENT = "django_redis.client.DefaultClient"


def cache_redis_scripts_supported() -> bool:
    """Whether `cache_redis_scripts` reaches the default cache's Redis as the cache does: its
    one URL (credentials and TLS, `rediss://`, in it) and its timeouts."""
    cache: dict[str, Any] = settings.CACHES["default"]
    options: dict[str, Any] = cache.get("OPTIONS", {})
    return (
        isinstance(cache.get("LOCATION"), str)
        and set(options) <= _FOLLOWED_OPTIONS
        and options.get("CLIENT_CLASS", _DEFAULT_CLIENT) == _DEFAULT_CLIENT
    )


def cache_redis_scripts() -> AsyncScripts:
    """An `AsyncScripts` for the Redis of the default cache (see
    `cache_redis_scripts_supported`); at most WEB_THREADS connections per event loop, as
    many as the threads that serve the same requests otherwise."""
    cache: dict[str, Any] = settings.CACHES["default"]
    options: dict[str, Any] = cache.get("OPTIONS", {})
    key = (str(cache["LOCATION"]), settings.WEB_THREADS)
    scripts = _scripts_by_url.get(key)
    if scripts is None:
        socket_timeout = options.get("SOCKET_TIMEOUT") or 1.0
        scripts = _scripts_by_url[key] = AsyncScripts(
            key[0],
            max_connections=key[1],
            timeout=socket_timeout,
            socket_connect_timeout=options.get("SOCKET_CONNECT_TIMEOUT") or socket_timeout,
        )
    return scripts
