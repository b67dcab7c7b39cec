"""The whole product on servers of its own, to inject faults under it while it runs.

    product = Product(log_dir=tmp, settings={"REPLY_LEASE_SECONDS": 4})
    product.start()            # own PostgreSQL and Redis, migrated; uvicorn, one Celery worker
    product.model.script(...)  # the fake Gemini (testing/fake_gemini.py) it calls
    product.postgres.restart() # testing/postgres_server.py: stop, start, restart
    product.redis.restart()    # testing/redis_server.py: back on the same port, empty
    product.worker.kill()      # SIGKILL; then product.start_worker(), as a supervisor would
    product.heal()             # servers up, a live worker, no beat, the product ready
    product.close()

Redis is the cache, the Celery broker and the reply streams alike, as in production. Nothing
here talks to the machine's shared PostgreSQL or Redis: restarting those would pull them from
under everyone else. Beat runs only while a test asks for it (`start_beat`): without it, a
reply the product lost stays lost instead of being rescued by the sweep minutes later.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg
import redis

from testing.e2e import PYTHON, ROOT, ManagedProcess, Stack, process_env, wait_until
from testing.fake_gemini import FakeGemini
from testing.postgres_server import PostgresServer
from testing.redis_server import RedisServer

DATABASE = "product"


class Product:
    def __init__(self, *, log_dir: Path, settings: dict[str, object], model_latency: float) -> None:
        self.log_dir = log_dir
        self.settings = settings
        self.postgres = PostgresServer()
        self.redis = RedisServer(data_dir=log_dir / "redis")
        self.model = FakeGemini(latency=model_latency)  # unscripted replies take this long
        self.stack: Stack | None = None
        self.web: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None
        self.beat: ManagedProcess | None = None
        self._names = itertools.count(1)

    @property
    def database_url(self) -> str:
        return self.postgres.url(DATABASE)

    @property
    def url(self) -> str:
        assert self.stack is not None
        return self.stack.url

    def start(self) -> None:
        self.redis.start()
        self.model.start()
        self.postgres.create_database(DATABASE)
        env = {**os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url}
        subprocess.run(  # noqa: S603 (our own command)
            [PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
        )
        self.stack = Stack(
            env=process_env(
                DATABASE_URL=self.database_url,
                REDIS_URL=self.redis.url,
                CELERY_BROKER_URL=self.redis.url,
                GEMINI_API_KEY=self.model.api_key,
                GEMINI_BASE_URL=self.model.url,
                **self.settings,
            ),
            log_dir=self.log_dir,
        )
        self.web = self.stack.start_web()
        self.start_worker()

    def start_worker(self) -> ManagedProcess:
        """A new worker, the product's from now on; ready when this returns."""
        assert self.stack is not None
        self.worker = self.stack.start_worker(name=f"worker-{next(self._names)}")
        self.stack.wait_ready()
        return self.worker

    def start_beat(self) -> ManagedProcess:
        """Beat, which queues the reply sweep (and the hourly chores) on its schedule."""
        assert self.stack is not None
        self.beat = self.stack.start_beat(name=f"beat-{next(self._names)}")
        self.stack.wait_ready()
        return self.beat

    def heal(self, *, timeout: float = 30) -> None:
        """Whatever the last test did: both servers up, a worker and no beat, the fake model
        with an empty script and record, and the product answering ready."""
        if not self.postgres.running:
            self.postgres.start()
        if not self.redis.running:
            self.redis.start()
        if self.beat is not None:
            self.beat.stop()
            self.beat = None
        if self.worker is None or not self.worker.alive:
            self.start_worker()
        self.model.reset()
        wait_until(
            lambda: _status(f"{self.url}/readyz") == 200,
            timeout=timeout,
            what="the product to be ready",
            interval=0.1,
        )

    def close(self) -> None:
        try:
            if self.stack is not None:
                self.stack.close()
        finally:
            self.model.stop()
            self.redis.stop()
            self.postgres.close()

    def logs(self) -> str:
        return self.stack.logs() if self.stack is not None else ""

    # --- Looking inside, to check what the product stored ------------------------------------

    def sql(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url, decode_responses=True, socket_timeout=5)

    def stream_entries(self, key: str) -> list[dict[str, Any]]:
        """A reply's Redis stream as plain dicts, `done` messages decoded."""
        entries = []
        stream = cast(list[tuple[str, dict[str, str]]], self.redis_client().xrange(key))
        for _id, fields in stream:
            entry: dict[str, Any] = dict(fields)
            if "message" in entry:
                entry["message"] = json.loads(entry["message"])
            entries.append(entry)
        return entries


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None
