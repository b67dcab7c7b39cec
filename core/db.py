"""Database connections for code that waits on something else: the worker's reply threads
and the async stream view.

A worker thread waits seconds on the model and hundreds of them run at once; an open stream
waits minutes on Redis. None of them may keep a PostgreSQL connection while it waits: each
takes one for a short step (`db_session`) and gives it back, and at most
REPLY_DB_CONNECTIONS threads of a process hold one at the same time (besides the worker's
lease keeper, `chatrooms.keeper`, whose renewals must not wait behind them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.conf import settings
from django.db import OperationalError, connection

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The pause before trying a database step again while PostgreSQL does not answer.
DB_RETRY_SECONDS = 1.0

_slots = threading.BoundedSemaphore(settings.REPLY_DB_CONNECTIONS)


def db_connection_release() -> None:
    """Give this thread's database connection back (to the pool, or closed)."""
    connection.close()


@contextmanager
def db_session() -> Iterator[None]:
    """One of the process's few database slots, its connection given back afterwards."""
    with _slots:
        try:
            yield
        finally:
            db_connection_release()


def db_patiently(step: Callable[[], T], *, what: str, give_up_after: float) -> T:
    """Run a database step in a session, trying again while PostgreSQL does not answer, for
    up to `give_up_after` seconds; then the error goes up. For steps that are safe to repeat
    (reads, and writes fenced so that one which did land is refused the second time)."""
    give_up_at = time.monotonic() + give_up_after
    while True:
        try:
            with db_session():
                return step()
        except OperationalError as exc:
            if time.monotonic() >= give_up_at:
                raise
            logger.warning("%s: PostgreSQL unavailable (%s); trying again", what, exc)
            time.sleep(DB_RETRY_SECONDS)


def constraints_check_now() -> None:
    """Check the deferred constraints (Django's foreign keys are checked at commit) now, in
    the current transaction: IntegrityError here instead of at the commit, before a step
    that cannot be undone."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
