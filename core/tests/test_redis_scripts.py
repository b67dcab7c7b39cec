"""script_run: a connection of the thread's own, that survives a server dropping it."""

from __future__ import annotations

import os
import threading
import time

import pytest
import redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

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
    deadline = time.monotonic() + 2
    while _clients(cache_redis) != before + 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _clients(cache_redis) == before + 1
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


# Returns ARGV[1] after spinning ARGV[2] seconds by Redis's own clock.
_SLOW = b"""
local start = redis.call('TIME')
while true do
  local now = redis.call('TIME')
  if (now[1] - start[1]) + (now[2] - start[2]) / 1e6 > tonumber(ARGV[2]) then break end
end
return ARGV[1]
"""


def test_a_late_reply_is_never_read_by_the_next_command(cache_redis) -> None:
    """A script that timed out answers later: that answer must not be taken for the next
    command's (another user's row, say)."""
    kwargs = cache_redis.client.get_connection_kwargs()
    client = redis.Redis(host=kwargs["host"], port=kwargs["port"], socket_timeout=0.3)
    assert script_run(client, _SLOW, ["k"], "warm", "0") == b"warm"
    with pytest.raises(RedisTimeout):
        script_run(client, _SLOW, ["k"], "first", "0.6")
    time.sleep(0.5)  # its answer has come by now
    assert script_run(client, _SLOW, ["k"], "second", "0") == b"second"


def test_a_forked_child_makes_a_connection_of_its_own(client: redis.Redis) -> None:
    assert script_run(client, _ECHO, ["n"], "parent") == [b"parent", 1]
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest from here on
        try:
            answer = script_run(client, _ECHO, ["n"], "child")
            os.write(writer, b"1" if answer == [b"child", 2] else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(reader, 1) == b"1"
    assert script_run(client, _ECHO, ["n"], "parent again") == [b"parent again", 3]
