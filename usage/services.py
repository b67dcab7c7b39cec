"""Writes of the daily prompt count: consume one prompt, give one back."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import connection
from django.db.models import F

from accounts.models import User
from billing.selectors import user_is_pro
from usage.errors import DailyLimitExceeded
from usage.models import DailyUsage
from usage.selectors import UsageSummary, usage_resets_at, usage_today

_TABLE = DailyUsage._meta.db_table

# One statement, so concurrent sends serialise on the row: the increment only happens
# while the count is below the limit, and no row comes back when it is not.
_CONSUME_SQL = f"""
    INSERT INTO {_TABLE} (user_id, day, count) VALUES (%(user_id)s, %(day)s, 1)
    ON CONFLICT (user_id, day) DO UPDATE SET count = {_TABLE}.count + 1
    WHERE {_TABLE}.count < %(limit)s
    RETURNING count
"""  # noqa: S608 (the table name is ours, the values are parameters)


def usage_consume(
    *, user: User, is_pro: bool | None = None, now: dt.datetime | None = None
) -> UsageSummary:
    """Count one prompt for today, or raise DailyLimitExceeded for a Basic user at the limit."""
    day = usage_today(now)
    pro = user_is_pro(user=user) if is_pro is None else is_pro
    limit = None if pro else settings.BASIC_DAILY_LIMIT
    resets_at = usage_resets_at(day)
    if limit is not None and limit <= 0:
        raise DailyLimitExceeded(
            UsageSummary(limit=limit, used=0, remaining=0, resets_at=resets_at)
        )
    with connection.cursor() as cursor:
        cursor.execute(
            _CONSUME_SQL,
            # Pro users are counted too (for the admin), against a limit they cannot reach.
            {"user_id": user.pk, "day": day, "limit": limit if limit is not None else 2**31 - 1},
        )
        row = cursor.fetchone()
    if row is None:
        assert limit is not None
        used = DailyUsage.objects.filter(user=user, day=day).values_list("count", flat=True).get()
        raise DailyLimitExceeded(
            UsageSummary(limit=limit, used=used, remaining=0, resets_at=resets_at)
        )
    used = int(row[0])
    remaining = None if limit is None else max(limit - used, 0)
    return UsageSummary(limit=limit, used=used, remaining=remaining, resets_at=resets_at)


def usage_refund(*, user_id: int, day: dt.date) -> bool:
    """Give back one prompt of `day` (a failed reply). Never goes below zero."""
    updated = DailyUsage.objects.filter(user_id=user_id, day=day, count__gt=0).update(
        count=F("count") - 1
    )
    return updated == 1
