"""Running a Lua script in Redis in one command: EVALSHA, and EVAL the first time a Redis
server has not seen it (which also caches it there).

One script that does what a pipeline of commands would costs the client less CPU (measured
with redis-py 8: 50 µs less for two commands) and is atomic besides.

The hot requests' scripts (authentication's, the cached list's) and the worker's writes to the
reply streams run on a connection of the calling thread's own, made with the client's pool
settings, not through the pool: redis-py's check-out and check-in (a fork check, a lock, a poll
of the socket for stray data, its retry and deprecation wrappers) cost as much client CPU as
the command itself (measured in-process: 23 µs per EVALSHA through the client, 12 µs on a
connection of its own). That is one connection per thread that runs scripts: per web process,
its request threads (WEB_THREADS and WEB_SLOW_THREADS) and its stream threads; per worker, its
threads (WORKER_CONCURRENCY), as many as its pool would open under a full load anyway. Such a
connection is outside the pool's bookkeeping: its `max_connections` does not count it and its
`disconnect()` does not close it; a pool of another kind (blocking, Sentinel) or with
client-side caching keeps the client's own path.

A connection that fails is closed and the command tried once more on a new one (a Redis restart
leaves every idle connection dead). A failure while the reply was on its way means Redis may
have run the script already: the second try runs it again, so only scripts for which that is
harmless come here (a throttle count one too high; reads; the stream writes, which first check
whether their first try was applied). A timeout is not tried again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
import weakref
from typing import Any

from redis import Redis
from redis.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError, NoScriptError, ResponseError


@functools.cache
def script_sha(script: bytes) -> str:
    return hashlib.sha1(script, usedforsecurity=False).hexdigest()


def script_run(client: Redis, script: bytes, keys: list[str], *args: Any) -> Any:
    command = _command if _plain_pool(client.connection_pool) else _client_command
    try:
        return command(client, "EVALSHA", script_sha(script), len(keys), *keys, *args)
    except NoScriptError:
        return command(client, "EVAL", script, len(keys), *keys, *args)


def _plain_pool(pool: ConnectionPool) -> bool:
    return type(pool) is ConnectionPool and getattr(pool, "cache", None) is None


def _client_command(client: Redis, *args: Any) -> Any:
    return client.execute_command(*args)


class _Connections:
    """One thread's connections, by pool; closed when the thread ends (a connection is in a
    reference cycle of redis-py's, which would keep it open until a garbage collection)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.by_pool: weakref.WeakKeyDictionary[ConnectionPool, AbstractConnection] = (
            weakref.WeakKeyDictionary()
        )

    def __del__(self) -> None:
        for connection in list(self.by_pool.values()):
            with contextlib.suppress(Exception):  # the thread is gone: nothing to tell
                connection.disconnect()


_thread = threading.local()


def _thread_connection(pool: ConnectionPool) -> AbstractConnection:
    connections: _Connections | None = getattr(_thread, "connections", None)
    if connections is None or connections.pid != os.getpid():
        # A forked child must not share its parent's sockets: its own, from here on.
        connections = _thread.connections = _Connections()
    connection = connections.by_pool.get(pool)
    if connection is None:
        connection = pool.connection_class(**pool.connection_kwargs)
        connections.by_pool[pool] = connection
    return connection


def _command(client: Redis, *args: Any) -> Any:
    connection = _thread_connection(client.connection_pool)
    for attempt in (1, 2):
        try:
            connection.send_command(*args)
            return connection.read_response()
        except ResponseError:
            raise  # Redis answered (NOSCRIPT, a script's error): the connection is fine
        except ConnectionError:
            connection.disconnect()
            if attempt == 2:
                raise
        except BaseException:
            # A timeout, or an interruption half-way: what is left to read is unknown.
            connection.disconnect()
            raise
    raise AssertionError("unreachable")
