"""Running calls at the same instant, for tests of races: each call on its own thread, all
released together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import connections

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
            barrier.wait()
            results[index] = call()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError(f"calls still running after {timeout} s")
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]  # every slot was filled
