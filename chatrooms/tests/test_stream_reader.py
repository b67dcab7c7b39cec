"""The shared reader of a web process's reply streams (chatrooms/stream_reader.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import cast

import pytest
from asgiref.sync import async_to_sync
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatrooms import streaming
from chatrooms.stream_reader import Follow, StreamReader, answered_within
from testing.lost_cancellation import cancellation_lost_by_a_library
from testing.silent_server import silent_redis_url

KEY = "test:stream-reader:reply"


@pytest.fixture
def stream_key():
    redis = streaming.redis_client()
    redis.delete(KEY)
    yield KEY
    redis.delete(KEY)


def test_a_failed_read_ends_every_follow_and_the_next_follow_reads_again(stream_key):
    redis = streaming.redis_client()

    async def go() -> tuple[bool, list[str]]:
        reader = StreamReader()
        first = reader.follow(key=stream_key, after_id="0")
        real_xread = reader._reading_client.xread

        async def broken_once(*args, **kwargs):
            reader._reading_client.xread = real_xread  # type: ignore[method-assign]
            raise RedisConnectionError("connection reset")

        reader._reading_client.xread = broken_once  # type: ignore[method-assign]
        try:
            await first.wait(seconds=2)
            failed = False
        except RedisConnectionError:
            failed = True
        second = reader.follow(key=stream_key, after_id="0")
        redis.xadd(stream_key, {"text": "after"})
        entries = await second.wait(seconds=2)
        return failed, [fields["text"] for _, fields in entries]

    failed, texts = async_to_sync(go)()
    assert failed
    assert texts == ["after"]


def test_followers_of_one_stream_each_get_its_entries(stream_key):
    redis = streaming.redis_client()

    async def go() -> list[list[str]]:
        reader = StreamReader()
        follows = [reader.follow(key=stream_key, after_id="0") for _ in range(3)]
        await asyncio.sleep(0.05)
        redis.xadd(stream_key, {"text": "one"})
        batches = await asyncio.gather(*(follow.wait(seconds=2) for follow in follows))
        return [[fields["text"] for _, fields in batch] for batch in batches]

    assert async_to_sync(go)() == [["one"], ["one"], ["one"]]


def test_a_follow_that_joins_further_back_during_a_read_misses_nothing(stream_key):
    """Another follower had read further: the call in flight reads after it. The newcomer
    gets nothing from that call, and everything from its own place on the next."""
    redis = streaming.redis_client()
    first = str(redis.xadd(stream_key, {"text": "one"}))
    second = str(redis.xadd(stream_key, {"text": "two"}))

    async def go() -> list[str]:
        reader = StreamReader()
        ahead = reader.follow(key=stream_key, after_id=second)
        await asyncio.sleep(0.1)  # the reader now waits for what comes after "two"
        behind = reader.follow(key=stream_key, after_id=first)
        redis.xadd(stream_key, {"text": "three"})
        texts: list[str] = []
        for _ in range(4):  # a few waits at most, whatever happens
            texts += [fields["text"] for _, fields in await behind.wait(seconds=1)]
            if len(texts) >= 2:
                break
        reader.unfollow(ahead)
        reader.unfollow(behind)
        return texts

    assert async_to_sync(go)() == ["two", "three"]


def test_a_wait_cancelled_as_its_entries_arrive_ends_cancelled_and_keeps_them() -> None:
    """A client that leaves just as entries arrive: its stream must still end (asyncio's
    `wait_for` on Python 3.11 returned the entries instead, and the stream went on)."""
    entry = ("1-0", {"type": "delta", "text": "a"})

    async def cancelled_after(spins: int) -> tuple[bool, object, list]:
        follow = Follow("k", "0-0")
        waiting = asyncio.ensure_future(follow.wait(seconds=5))
        await asyncio.sleep(0)  # it waits
        follow.deliver([entry])
        for _ in range(spins):
            await asyncio.sleep(0)
        still_waiting = waiting.cancel()
        try:
            outcome: object = await waiting
        except asyncio.CancelledError:
            outcome = "cancelled"
        left = await follow.wait(seconds=0) if outcome == "cancelled" else []
        return still_waiting, outcome, left

    for spins in range(6):  # the cancel at each step of the delivery
        still_waiting, outcome, left = asyncio.run(cancelled_after(spins))
        assert still_waiting or spins > 0  # the race itself is at step 0
        if still_waiting:
            assert (outcome, left) == ("cancelled", [entry]), spins
        else:
            assert outcome == [entry], spins


def test_the_reader_ends_when_a_redis_call_lost_its_cancellation(stream_key) -> None:
    """redis-py's `wait_for` (Python 3.11) can return normally from a cancelled send: the
    reader must end anyway, or its event loop's shutdown waits for it for ever."""

    async def loses_its_cancellation(*args: object, **kwargs: object) -> list:
        await cancellation_lost_by_a_library()
        return []

    async def go() -> bool | str:
        reader = StreamReader()
        reader.follow(key=stream_key, after_id="0")
        reader._reading_client.xread = loses_its_cancellation  # type: ignore[method-assign]
        task = cast(asyncio.Task, reader._task)
        done, _ = await asyncio.wait({task}, timeout=2)
        if not done:
            reader._follows.clear()  # so that it ends after all
            await asyncio.wait({task}, timeout=2)
            return "it read on"
        return task.cancelled()

    assert asyncio.run(go()) is True


@pytest.fixture
def silent_redis(settings) -> Iterator[str]:
    """REDIS_URL on a TCP server that accepts connections and never answers."""
    with silent_redis_url() as url:
        settings.REDIS_URL = url
        yield url


def test_the_stream_clients_connections_have_no_socket_timeout(settings) -> None:
    """redis-py sends under `asyncio.wait_for` when a connection has one; maintenance
    notifications (RESP3) would restore the original one, or set one of their own during a
    maintenance event: both are cleared, and the notifications are off."""
    settings.REDIS_URL = "redis://127.0.0.1:6379/0?protocol=3"
    reader = StreamReader()
    for client in (reader.client, reader._reading_client):
        connection = client.connection_pool.make_connection()
        assert (connection.socket_timeout, getattr(connection, "orig_socket_timeout", None)) == (
            None,
            None,
        )
        assert not getattr(connection.maint_notifications_config, "enabled", False)


def test_a_stream_call_that_redis_never_answers_fails_within_its_bound(silent_redis) -> None:
    """As a RedisError, the failure every caller already handles. The bound is swept across
    the moment the handshake's first send completes (about 0.5 ms into the call), where a
    socket timeout's `wait_for` could lose it on Python 3.11 and wait 5 s instead."""

    async def sweep() -> list[tuple[float, float]]:
        late = []
        for step in range(300):  # 50 µs to 3 ms
            bound = 50e-6 + step * 10e-6
            reader = StreamReader()
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                async with answered_within(bound):
                    await reader.client.xrange("k")
            took = time.monotonic() - started
            if took > bound + 0.5:
                late.append((bound, took))
                break
        return late

    assert asyncio.run(sweep()) == []
