"""Running calls at the same instant, for tests of races: each call on its own thread, all
released together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from django.db import connection, connections

T = TypeVar("T")


def at_once(
    calls: list[Callable[[], T]], *, connect_first: bool = False, timeout: float = 60
) -> list[T]:
    """Run every call on its own thread, all released by one barrier; their results in
    order. With `connect_first`, each thread opens its database connection before the
    barrier, so the calls meet at the database and not at its door. Each thread closes its
    database connections when its call ends; the first exception a call raised is raised
    here."""
    barrier = threading.Barrier(len(calls))
    results: list[T | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], T]) -> None:
        try:
            if connect_first:
                connections["default"].ensure_connection()
            barrier.wait(timeout=timeout)
            results[index] = call()
        except BaseException as exc:
            barrier.abort()  # the others stop waiting for a thread that will never come
            errors.append(exc)
        finally:
            connections.close_all()

    # Daemon threads: a call that hangs fails its test, not the end of the test run.
    threads = [threading.Thread(target=run, args=item, daemon=True) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0))
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError(f"calls still running after {timeout} s")
    real = [error for error in errors if not isinstance(error, threading.BrokenBarrierError)]
    if errors:
        raise (real or errors)[0]
    return results  # type: ignore[return-value]  # every slot was filled


class InThread(Generic[T]):
    """Runs `call()` in a thread on its own database connection, for a test that holds a lock
    and watches the call wait for it. `join()` gives its result, or raises what it raised."""

    def __init__(self, call: Callable[[], T]) -> None:
        self.pid: int | None = None
        self._call = call
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            self._result = self._call()
        except BaseException as exc:
            self._error = exc
        finally:
            connection.close()

    def wait_until_blocked(self, timeout: float = 10.0) -> None:
        """Until the thread's statement waits for a lock that another transaction holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                self.join()  # raises what the call raised
                raise AssertionError("the call ended without waiting for a lock")
            if self.pid is not None:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [self.pid]
                    )
                    if cursor.fetchone():
                        return
            time.sleep(0.01)
        raise AssertionError("the thread never waited for a lock")

    def join(self, timeout: float = 30.0) -> T:
        self._thread.join(timeout=timeout)
        assert not self._thread.is_alive(), f"the call still runs after {timeout} s"
        if self._error is not None:
            raise self._error
        return cast(T, self._result)


def until_another_waits_for_this_transaction(timeout: float = 10.0) -> None:
    """Until another server process waits for a lock that this connection's transaction
    holds: the holder's side of `InThread.wait_until_blocked`, for a test whose other party
    is a request it cannot name."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                " AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            )
            if cursor.fetchone():
                return
            time.sleep(0.01)
    raise AssertionError(f"nothing waited for this transaction's locks within {timeout} s")
