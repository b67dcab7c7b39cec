"""Fixtures shared by every app's tests."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import get_resolver
from rest_framework.test import APIClient


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
