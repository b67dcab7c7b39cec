"""Fixtures shared by every app's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.core.cache import cache
from django.urls import get_resolver
from rest_framework.test import APIClient

from core.devservers import start_redis


@pytest.fixture(autouse=True)
def _clean_cache():
    """Each test starts with an empty cache (the Redis database of REDIS_URL is a scratch one)."""
    cache.clear()
    yield


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture(autouse=True, scope="session")
def _views_imported_with_the_configured_settings() -> None:
    """OpenAPI descriptions take their numbers from settings when their views are imported:
    import every view before any test overrides a setting, whatever order tests run in."""
    get_resolver().url_patterns  # noqa: B018


@pytest.fixture
def dead_redis(settings) -> None:
    """The cache pointed at a port where no Redis answers, failing fast.

    Through pytest-django's `settings`, which undoes every override in reverse order: a
    setting the test changes afterwards cannot bring the dead cache back after the test."""
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {
                **settings.CACHES["default"]["OPTIONS"],
                "SOCKET_CONNECT_TIMEOUT": 0.2,
                "SOCKET_TIMEOUT": 0.2,
            },
        }
    }


class RedisOfOurOwn:
    """A Redis server of the test's own behind the cache, which can be made to refuse writes
    (out of memory) while reads still work, or to drop every connection and refuse new ones
    (as a server that went away would), and to come back."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def refuse_connections(self) -> None:
        # This client's own connection stays (SKIPME), authenticated, to undo it later.
        self.client.config_set("requirepass", "test-only-refusing")
        self.client.client_kill_filter(_type="normal", skipme=True)

    def accept_connections(self) -> None:
        self.client.config_set("requirepass", "")

    def refuse_writes(self) -> None:
        self.client.config_set("maxmemory-policy", "noeviction")
        self.client.config_set("maxmemory", 1)

    def accept_writes(self) -> None:
        self.client.config_set("maxmemory", 0)


@pytest.fixture
def cache_redis(settings, tmp_path: Path) -> Iterator[RedisOfOurOwn]:
    server = start_redis(tmp_path / "redis", persist=False)
    caches = {alias: dict(config) for alias, config in settings.CACHES.items()}
    caches["default"]["LOCATION"] = server.url
    settings.CACHES = caches
    client = redis.Redis.from_url(server.url)
    try:
        yield RedisOfOurOwn(client)
    finally:
        client.close()
        server.stop()
