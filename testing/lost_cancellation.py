"""What Python 3.11's `asyncio.wait_for` did under redis-py's sends (CPython gh-86296), for
tests of `core.cancellation`: the running task is cancelled, and the cancellation dropped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast


async def cancellation_lost_by_a_library() -> None:
    cast(asyncio.Task, asyncio.current_task()).cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0)
