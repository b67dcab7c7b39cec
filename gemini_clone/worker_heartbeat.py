"""The worker's heartbeat: a consumer bootstep that records it while the worker consumes.

It beats from the consumer's timer, which the worker's event loop runs, so a worker that no
longer consumes (the broker is gone and it is reconnecting, or its loop is stuck) stops
beating. The write runs on a thread of its own: the event loop never waits on PostgreSQL.
Registered in `gemini_clone.celery`; read through `core.workers`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from celery import bootsteps
from django.conf import settings
from django.db import connection

from core.workers import worker_heartbeat_forget, worker_heartbeat_record

logger = logging.getLogger(__name__)


class WorkerHeartbeat(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)  # beat once tasks are consumed

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_entry: Any = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-heartbeat")
        self._last_write: Future[None] | None = None

    def start(self, parent: Any) -> None:
        self._beat(parent.hostname)
        self._timer_entry = parent.timer.call_repeatedly(
            settings.WORKER_HEARTBEAT_INTERVAL_SECONDS, self._beat, (parent.hostname,)
        )

    def stop(self, parent: Any) -> None:
        """The consumer lost its broker, or the worker stops: no more heartbeats."""
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        self._writer.submit(_write, worker_heartbeat_forget, parent.hostname)
        self._writer.shutdown(wait=True)

    def _beat(self, hostname: str) -> None:
        if self._last_write is not None and not self._last_write.done():
            return  # the previous one still waits on the database
        self._last_write = self._writer.submit(_write, worker_heartbeat_record, hostname)


def _write(write: Callable[..., None], hostname: str) -> None:
    try:
        write(hostname=hostname)
    except Exception:
        logger.warning("Worker heartbeat: could not write to PostgreSQL", exc_info=True)
    finally:
        connection.close()  # back to the pool
