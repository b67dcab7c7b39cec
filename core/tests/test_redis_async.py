"""Scripts from the event loop (`core.redis_async`): bounded waits, a pause after a failure,
and connections that Redis closed while idle replaced."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from core.redis_async import AsyncScripts, RedisPaused
from testing.silent_server import silent_redis_url

SCRIPT = b"return redis.call('INCR', KEYS[1])"


@pytest.fixture
def silent_server() -> Iterator[str]:
    with silent_redis_url() as url:
        yield url


def test_a_redis_that_does_not_answer_fails_every_waiting_call_within_the_timeout(
    silent_server,
) -> None:
    scripts = AsyncScripts(silent_server, max_connections=2, timeout=0.3)

    async def many() -> list[BaseException | object]:
        calls = [scripts.run(SCRIPT, ["k"]) for _ in range(20)]
        return await asyncio.gather(*calls, return_exceptions=True)

    started = time.monotonic()
    results = asyncio.run(many())
    assert time.monotonic() - started < 1.0  # not 10 rounds of 0.3 s
    # Each failed within its own bound, its wait for a connection included.
    assert all(isinstance(result, redis.RedisError) for result in results)


def test_a_timeout_that_comes_as_a_send_completes_still_ends_the_call(silent_server) -> None:
    """The race that let a call wait redis-py's 5 s socket timeout on Python 3.11: our
    timeout firing just as a send completes. Its window is a loop iteration, so timeouts
    are swept across the moment the first send (the handshake's) completes, about 0.5 ms
    after the call begins here; before the fix a few of them waited the whole 5 s."""

    async def sweep() -> list[tuple[float, float]]:
        late = []
        for step in range(400):  # 50 µs to 4 ms
            timeout = 50e-6 + step * 10e-6
            scripts = AsyncScripts(silent_server, max_connections=1, timeout=timeout)
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                await scripts.run(SCRIPT, ["k"])
            took = time.monotonic() - started
            if took > timeout + 0.5:
                late.append((timeout, took))
                break
        return late

    assert asyncio.run(sweep()) == []


def test_the_connections_have_no_socket_timeout_not_even_one_to_restore() -> None:
    """redis-py's default is 5 s, and its maintenance notifications (RESP3) restore the
    original one: both are cleared."""
    scripts = AsyncScripts("redis://127.0.0.1:6379/0?protocol=3", max_connections=1, timeout=1)

    async def made() -> tuple[object, object]:
        connection = scripts._connections_of_running_loop().connection_factory.make_connection()
        assert not getattr(
            connection.maint_notifications_config, "enabled", False
        )  # they would set one
        return connection.socket_timeout, getattr(connection, "orig_socket_timeout", None)

    assert asyncio.run(made()) == (None, None)


def test_a_socket_timeout_is_refused_for_timeout_alone_bounds_a_call() -> None:
    with pytest.raises(ValueError):
        AsyncScripts("redis://127.0.0.1:6379/0", max_connections=1, timeout=1, socket_timeout=5)


def test_timeouts_in_a_row_pause_calls_and_one_does_not(silent_server) -> None:
    scripts = AsyncScripts(silent_server, max_connections=2, timeout=0.2, pause_seconds=0.5)

    async def three() -> float:
        for _ in range(2):  # the first alone pauses nothing: the second is tried
            with pytest.raises(redis.TimeoutError):
                await scripts.run(SCRIPT, ["k"])
        started = time.monotonic()
        with pytest.raises(RedisPaused):
            await scripts.run(SCRIPT, ["k"])
        return time.monotonic() - started

    assert asyncio.run(three()) < 0.05


def test_calls_in_flight_together_time_out_together_as_one_timeout(silent_server) -> None:
    scripts = AsyncScripts(silent_server, max_connections=4, timeout=0.2, pause_seconds=5)

    async def scenario() -> None:
        together = await asyncio.gather(
            *(scripts.run(SCRIPT, ["k"]) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(result, redis.TimeoutError) for result in together)
        with pytest.raises(redis.TimeoutError):  # tried: the three were one timeout
            await scripts.run(SCRIPT, ["k"])
        with pytest.raises(RedisPaused):  # that was the second
            await scripts.run(SCRIPT, ["k"])

    asyncio.run(scenario())


def test_a_redis_that_hangs_under_steady_traffic_pauses(silent_server) -> None:
    scripts = AsyncScripts(silent_server, max_connections=8, timeout=0.2, pause_seconds=5)

    async def steady() -> list[BaseException | object]:
        calls = []
        for _ in range(12):  # a call every 50 ms: always one in flight when another begins
            calls.append(asyncio.ensure_future(scripts.run(SCRIPT, ["k"])))
            await asyncio.sleep(0.05)
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(steady())
    assert all(isinstance(result, redis.RedisError) for result in results)
    assert any(isinstance(result, RedisPaused) for result in results)


def test_a_refused_connection_pauses_calls_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once it is closed
    scripts = AsyncScripts(f"redis://127.0.0.1:{port}/0", max_connections=2, timeout=1)

    async def twice() -> None:
        with pytest.raises(redis.ConnectionError):
            await scripts.run(SCRIPT, ["k"])
        with pytest.raises(RedisPaused):
            await scripts.run(SCRIPT, ["k"])

    asyncio.run(twice())


def test_connections_redis_closed_while_idle_are_replaced(cache_redis) -> None:
    url = cache_redis.client.connection_pool.connection_kwargs
    scripts = AsyncScripts(f"redis://{url['host']}:{url['port']}/0", max_connections=4, timeout=1)

    async def scenario() -> list[int]:
        first = await asyncio.gather(*(scripts.run(SCRIPT, ["k"]) for _ in range(4)))
        cache_redis.client.client_kill_filter(_type="normal", skipme=True)
        await asyncio.sleep(0.1)  # the loop sees the connections end
        second = await asyncio.gather(*(scripts.run(SCRIPT, ["k"]) for _ in range(4)))
        return [*first, *second]

    assert sorted(asyncio.run(scenario())) == list(range(1, 9))


def test_an_error_of_the_script_pauses_nothing(cache_redis) -> None:
    url = cache_redis.client.connection_pool.connection_kwargs
    scripts = AsyncScripts(f"redis://{url['host']}:{url['port']}/0", max_connections=2, timeout=1)
    cache_redis.client.hset("a-hash", "f", "v")

    async def scenario() -> int:
        with pytest.raises(redis.ResponseError):
            await scripts.run(SCRIPT, ["a-hash"])  # WRONGTYPE
        return int(await scripts.run(SCRIPT, ["a-counter"]))

    assert asyncio.run(scenario()) == 1


def test_after_a_pause_one_call_tries_redis_and_its_answer_ends_the_pause(cache_redis) -> None:
    url = cache_redis.client.connection_pool.connection_kwargs
    scripts = AsyncScripts(
        f"redis://{url['host']}:{url['port']}/0", max_connections=4, timeout=1, pause_seconds=0.2
    )

    async def scenario() -> None:
        cache_redis.refuse_connections()
        try:
            with pytest.raises(redis.ConnectionError):
                await scripts.run(SCRIPT, ["k"])
            await asyncio.sleep(0.25)
            tried = await asyncio.gather(
                *(scripts.run(SCRIPT, ["k"]) for _ in range(4)), return_exceptions=True
            )
            assert isinstance(tried[0], redis.ConnectionError)  # the trial
            assert all(isinstance(result, RedisPaused) for result in tried[1:])
        finally:
            cache_redis.accept_connections()
        await asyncio.sleep(0.25)
        tried = await asyncio.gather(
            *(scripts.run(SCRIPT, ["k"]) for _ in range(4)), return_exceptions=True
        )
        assert tried[0] == 1  # the trial
        assert all(isinstance(result, RedisPaused) for result in tried[1:])
        after = await asyncio.gather(*(scripts.run(SCRIPT, ["k"]) for _ in range(3)))
        assert sorted(after) == [2, 3, 4]

    asyncio.run(scenario())
