"""script_run: a connection of the thread's own, that survives a server dropping it."""

from __future__ import annotations

import threading

import pytest
import redis
from redis.exceptions import RedisError

from core.redis_scripts import script_run

_ECHO = b"return {ARGV[1], redis.call('INCR', KEYS[1])}"


@pytest.fixture
def client(cache_redis) -> redis.Redis:
    kwargs = cache_redis.client.get_connection_kwargs()
    return redis.Redis(host=kwargs["host"], port=kwargs["port"], socket_timeout=1)


def _clients(cache_redis) -> int:
    return len(cache_redis.client.client_list(_type="normal"))


def test_a_script_runs_and_is_loaded_once(client: redis.Redis, cache_redis) -> None:
    assert script_run(client, _ECHO, ["n"], "a") == [b"a", 1]
    assert script_run(client, _ECHO, ["n"], "b") == [b"b", 2]
    stats = cache_redis.client.info("commandstats")
    assert stats["cmdstat_eval"]["calls"] == 1
    assert stats["cmdstat_evalsha"]["calls"] == 2  # the first answered NOSCRIPT


def test_each_thread_keeps_one_connection_of_its_own(client: redis.Redis, cache_redis) -> None:
    before = _clients(cache_redis)
    for _ in range(5):
        script_run(client, _ECHO, ["n"], "x")
    assert _clients(cache_redis) == before + 1
    other = threading.Thread(target=lambda: script_run(client, _ECHO, ["n"], "y"))
    other.start()
    other.join()
    # The other thread's connection closes with it.
    assert _clients(cache_redis) in (before + 1, before + 2)
    assert script_run(client, _ECHO, ["n"], "z") == [b"z", 7]


def test_a_dropped_connection_is_replaced_at_once(client: redis.Redis, cache_redis) -> None:
    script_run(client, _ECHO, ["n"], "a")
    cache_redis.client.client_kill_filter(_type="normal", skipme=True)  # a restart, as seen
    assert script_run(client, _ECHO, ["n"], "b") == [b"b", 2]


def test_a_server_that_refuses_raises_and_recovers(client: redis.Redis, cache_redis) -> None:
    script_run(client, _ECHO, ["n"], "a")
    cache_redis.refuse_connections()
    with pytest.raises(RedisError):
        script_run(client, _ECHO, ["n"], "b")
    cache_redis.accept_connections()
    assert script_run(client, _ECHO, ["n"], "c") == [b"c", 2]
