"""A psycopg connection pool that hands out only live connections, and that answers at once
while PostgreSQL is known to be down.

Dead connections. When PostgreSQL restarts, it tells every session and closes its socket;
the pool's idle connections are dead but look fine until used, and each one handed out
would fail a request. So every checkout looks at the socket first: a connection the server
closed is readable (its goodbye, then end of file), while a healthy idle one has nothing to
say. That costs a poll, not a round trip to the server; only a readable socket gets the
round trip that tells a notice from a goodbye. One dead connection means the others were
probably cut off too, and psycopg_pool pauses 1 s, 2 s, 4 s... between consecutive failed
checks of one checkout, which would make the first request after a restart wait out its
timeout: so the first dead one found has the pool check every idle connection at once.

Outages. A checkout that found no connection within the pool's timeout means PostgreSQL is
down (or every connection is stuck). Until a connection is available again, one checkout at
a time waits for one (which also keeps the pool reconnecting), and the others fail at once
instead of each holding a thread for the whole timeout while more requests queue behind.
"""

from __future__ import annotations

import select
import threading
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout


def server_has_spoken(conn: psycopg.Connection[Any]) -> bool:
    """True when an idle connection's socket has something to read (usually the server's
    goodbye) or was closed. Never blocks. (poll, not select: a busy worker has file
    descriptors above select's 1024.)"""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class LiveConnectionPool(ConnectionPool[psycopg.Connection[Any]]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(check=self._check_live, **kwargs)
        self._unreachable = False  # the last checkout timed out
        self._probe = threading.Lock()  # held by the one checkout that waits meanwhile

    def getconn(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        if not self._unreachable or self.get_stats()["pool_available"]:
            return self._getconn_noted(timeout)
        if not self._probe.acquire(blocking=False):
            raise PoolTimeout("PostgreSQL did not answer; another request is waiting for it")
        try:
            return self._getconn_noted(timeout)
        finally:
            self._probe.release()

    def _getconn_noted(self, timeout: float | None) -> psycopg.Connection[Any]:
        try:
            conn = super().getconn(timeout)
        except PoolTimeout:
            self._unreachable = True
            raise
        self._unreachable = False
        return conn

    def _check_live(self, conn: psycopg.Connection[Any]) -> None:
        if not conn.closed and not server_has_spoken(conn):
            return
        try:
            self.check_connection(conn)
        except psycopg.Error:
            self.check()  # the others, now: see the module's docstring
            raise
