"""`core.cancellation`: a cancellation that library code caught and dropped is still seen."""

from __future__ import annotations

import asyncio

import pytest

from core.cancellation import cancellation_lost, raise_if_cancellation_lost
from testing.lost_cancellation import cancellation_lost_by_a_library


def test_a_cancellation_caught_and_dropped_is_still_seen() -> None:
    async def scenario() -> None:
        assert not cancellation_lost()
        await cancellation_lost_by_a_library()
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
