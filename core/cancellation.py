"""Cancellations that a library lost, still honoured.

redis-py sends each command of a connection with a socket timeout under
`asyncio.wait_for`, which on Python 3.11 returns normally when the task running it is
cancelled just as the send completes (CPython gh-86296): the cancellation is lost, but the
task still counts it (`Task.cancelling()`). A loop that should end when its task is
cancelled (a stream whose client left, a reader at its event loop's shutdown) checks here
at each turn, and ends at most one turn late instead of running on.

Our own async Redis connections have no socket timeout (`core.redis_async`,
`chatrooms.stream_reader`; their maintenance notifications, which would set one, are off),
so this guards against a library that still sends under `asyncio.wait_for`.
"""

from __future__ import annotations

import asyncio


def cancellation_lost() -> bool:
    """Whether the running task was asked to cancel and is still running. True also while
    a delivered cancellation is being handled: check at a loop's turns, never in cleanup."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_cancellation_lost() -> None:
    if cancellation_lost():
        raise asyncio.CancelledError
