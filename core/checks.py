"""The admin's middleware checks (admin.E408 to E410) are silenced in settings, because those
middleware run from SITE_MIDDLEWARE (core.middleware.SiteOnlyMiddleware): this check puts
the guard back where they now are."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

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
