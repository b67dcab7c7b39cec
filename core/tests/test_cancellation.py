"""`core.cancellation`: a cancellation that library code caught and dropped is still seen."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from core.cancellation import cancellation_lost, raise_if_cancellation_lost


def test_a_cancellation_caught_and_dropped_is_still_seen() -> None:
    async def scenario() -> None:
        assert not cancellation_lost()
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        # Dropped, as asyncio.wait_for dropped it on Python 3.11 as its inner call completed.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            raise_if_cancellation_lost()

    asyncio.run(scenario())


def test_a_timeout_that_fired_and_was_handled_is_no_lost_cancellation() -> None:
    async def scenario() -> bool:
        try:
            async with asyncio.timeout(0):
                await asyncio.sleep(1)
        except TimeoutError:
            pass
        return cancellation_lost()

    assert asyncio.run(scenario()) is False
