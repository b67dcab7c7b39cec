"""Cursor helpers shared by the paginated lists: `?limit=` parsing, capped, never refused."""

from __future__ import annotations

from django.conf import settings
from django.http import QueryDict


def page_limit(query: QueryDict) -> int:
    raw = query.get("limit")
    try:
        limit = int(raw) if raw is not None else settings.PAGE_SIZE_DEFAULT
    except ValueError:
        limit = settings.PAGE_SIZE_DEFAULT
    return max(1, min(limit, settings.PAGE_SIZE_MAX))
