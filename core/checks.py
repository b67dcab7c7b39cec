"""Checks of settings that only go wrong together.

The admin's middleware checks (admin.E408 to E410) are silenced in settings, because those
middleware run from SITE_MIDDLEWARE (core.middleware.SiteOnlyMiddleware): the first check
puts the guard back where they now are. The second keeps the web threads within the
database pool."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.checks import Warning as CheckWarning  # not the builtin Warning

ADMIN_NEEDS = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)


@register()
def site_middleware_check(**kwargs: Any) -> list[Error]:
    errors = []
    if "core.middleware.SiteOnlyMiddleware" not in settings.MIDDLEWARE:
        errors.append(
            Error("core.middleware.SiteOnlyMiddleware must be in MIDDLEWARE.", id="core.E001")
        )
    site = list(getattr(settings, "SITE_MIDDLEWARE", []))
    missing = [path for path in ADMIN_NEEDS if path not in site]
    if missing:
        errors.append(
            Error(f"The admin needs {', '.join(missing)} in SITE_MIDDLEWARE.", id="core.E002")
        )
    elif [path for path in site if path in ADMIN_NEEDS] != list(ADMIN_NEEDS):
        errors.append(
            Error(f"SITE_MIDDLEWARE must keep the order {', '.join(ADMIN_NEEDS)}.", id="core.E003")
        )
    return errors


@register()
def web_threads_within_database_pool_check(**kwargs: Any) -> list[CheckWarning]:
    """Every thread of a web process may hold a database connection at once: more threads
    than the pool has connections turn a busy moment into waits of up to
    DB_CONNECT_TIMEOUT_SECONDS, then 503s."""
    threads = settings.WEB_THREADS + settings.WEB_SLOW_THREADS + settings.STREAM_SYNC_THREADS
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    size = pool.get("max_size") if isinstance(pool, dict) else None
    if size is None or threads <= size:
        return []
    return [
        CheckWarning(
            f"A web process runs {threads} threads that may each hold a database connection "
            f"(WEB_THREADS + WEB_SLOW_THREADS + {settings.STREAM_SYNC_THREADS}), more than "
            f"its pool's {size} (DB_POOL_MAX_SIZE).",
            hint="Raise DB_POOL_MAX_SIZE, or lower WEB_THREADS or WEB_SLOW_THREADS.",
            id="core.W001",
        )
    ]
