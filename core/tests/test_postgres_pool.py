"""The pool of core.postgres against a PostgreSQL server of the test's own: what a checkout
hands out after the server restarted or ended one session, and how long it takes to say no
while the server is down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from core.postgres.pool import LiveConnectionPool
from testing.e2e import wait_until
from testing.postgres_server import PostgresServer

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pool(postgres: PostgresServer) -> Iterator[LiveConnectionPool]:
    with LiveConnectionPool(
        conninfo=postgres.url(), kwargs={"autocommit": True}, min_size=2, max_size=10, timeout=5
    ) as pool:
        # A busy moment leaves ten idle connections behind.
        held = [pool.getconn() for _ in range(10)]
        for conn in held:
            pool.putconn(conn)
        yield pool


def _backend_pid(pool: LiveConnectionPool) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def test_after_a_restart_the_first_checkout_gets_a_live_connection_at_once(
    pool: LiveConnectionPool, postgres: PostgresServer
):
    postgres.restart()  # all ten idle connections are cut off

    started = time.monotonic()
    _backend_pid(pool)
    # psycopg_pool's own check, one failed connection after the other with a growing pause
    # between them, made this wait out the pool's timeout (and fail).
    assert time.monotonic() - started < 1
    assert all(_backend_pid(pool) for _ in range(10))


def test_a_session_the_server_ended_is_replaced_and_the_others_kept(
    pool: LiveConnectionPool, postgres: PostgresServer
):
    before = _every_backend_pid(pool)
    victim = min(before)
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        # Waits until the session is gone (its socket closed), 5 s at most.
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (victim,))

    after = _every_backend_pid(pool)
    assert after & before == before - {victim}
    assert len(after) == 10
    assert pool.get_stats()["connections_lost"] == 1


def _every_backend_pid(pool: LiveConnectionPool) -> set[int]:
    """The server's process ids of all ten connections, taken out at once."""
    held = [pool.getconn() for _ in range(10)]
    try:
        return {conn.info.backend_pid for conn in held}
    finally:
        for conn in held:
            pool.putconn(conn)


def _seconds_to_refusal(pool: LiveConnectionPool) -> float:
    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        pool.getconn()
    return time.monotonic() - started


def test_while_postgres_is_down_one_checkout_waits_and_the_others_are_refused_at_once(
    postgres: PostgresServer,
):
    with LiveConnectionPool(
        conninfo=postgres.url(), min_size=2, timeout=1, reconnect_timeout=1
    ) as pool:
        pool.wait()
        postgres.stop()
        try:
            assert 1 <= _seconds_to_refusal(pool) < 1.5  # the first finds out the hard way
            with ThreadPoolExecutor(max_workers=6) as threads:
                waits = sorted(threads.map(lambda _: _seconds_to_refusal(pool), range(6)))
        finally:
            postgres.start()

        assert waits[-1] >= 1  # one kept trying the server...
        assert waits[-2] < 0.5  # ...while the others were told at once
        wait_until(lambda: _answers(pool), timeout=3, what="the pool to connect again")


def _answers(pool: LiveConnectionPool) -> bool:
    try:
        with pool.connection(timeout=1) as conn:
            conn.execute("SELECT 1")
    except PoolTimeout:
        return False
    return True
