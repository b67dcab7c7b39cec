"""Reads of the daily prompt count."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from billing.selectors import user_is_pro_sql
from core.timestamps import iso_utc
from usage.models import DailyUsage


@dataclass(frozen=True)
class UsageSummary:
    limit: int | None
    used: int
    remaining: int | None
    resets_at: dt.datetime
    tokens_today: int = 0  # in and out, of the replies completed today

    @classmethod
    def of_day(cls, *, day: dt.date, limit: int | None, used: int, tokens: int) -> UsageSummary:
        """The summary of `day` for a count of `used` against `limit` (None: no limit)."""
        return cls(
            limit=limit,
            used=used,
            remaining=None if limit is None else max(limit - used, 0),
            resets_at=usage_resets_at(day),
            tokens_today=tokens,
        )

    @property
    def unlimited(self) -> bool:
        """No daily limit applies: the user is Pro."""
        return self.limit is None

    def as_dict(self) -> dict[str, object]:
        return {
            "limit": self.limit,
            "used": self.used,
            "remaining": self.remaining,
            "resets_at": iso_utc(self.resets_at),
            "tokens_today": self.tokens_today,
        }


def usage_zone() -> ZoneInfo:
    return ZoneInfo(settings.USAGE_TIMEZONE)


def usage_today(now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(usage_zone()).date()


def usage_resets_at(day: dt.date) -> dt.datetime:
    """The instant the day after `day` begins in `USAGE_TIMEZONE`."""
    next_day = day + dt.timedelta(days=1)
    return dt.datetime.combine(next_day, dt.time.min, tzinfo=usage_zone())


def rate_limit_headers(summary: UsageSummary, now: dt.datetime | None = None) -> dict[str, str]:
    """`X-RateLimit-*` headers for a Basic user (Pro users have no limit, so none)."""
    if summary.limit is None or summary.remaining is None:
        return {}
    reset_after = max(int((summary.resets_at - (now or timezone.now())).total_seconds()), 1)
    return {
        "X-RateLimit-Limit": str(summary.limit),
        "X-RateLimit-Remaining": str(summary.remaining),
        "X-RateLimit-Reset": str(int(summary.resets_at.timestamp())),
        "X-RateLimit-Reset-After": str(reset_after),
    }


_USED_SQL = f"""
    SELECT sum(count)::bigint, sum(tokens)::bigint FROM {DailyUsage._meta.db_table}
    WHERE user_id = %(user_id)s AND day = %(day)s
"""  # noqa: S608 (the table name is ours, the values are parameters)


def usage_summary(
    *, user: User, is_pro: bool | None = None, day: dt.date | None = None
) -> UsageSummary:
    """The count and tokens of `day` (today unless given), all its rows together; with
    `is_pro` unknown, read in the same round trip as the tier."""
    day = day or usage_today()
    params: dict[str, Any] = {"user_id": user.pk, "day": day}
    with connection.cursor() as cursor:
        if is_pro is None:
            condition, pro_params = user_is_pro_sql(user_id=user.pk)
            cursor.execute(
                f"SELECT {condition}, today.* FROM ({_USED_SQL}) today",  # noqa: S608 (ours)
                {**params, **pro_params},
            )
            pro, used, tokens = cursor.fetchone()
        else:
            cursor.execute(_USED_SQL, params)
            pro, (used, tokens) = is_pro, cursor.fetchone()
    limit = None if pro else settings.BASIC_DAILY_LIMIT
    return UsageSummary.of_day(day=day, limit=limit, used=used or 0, tokens=tokens or 0)


def prompts_on(day: dt.date) -> int:
    """Prompts counted on `day`, all users together."""
    return DailyUsage.objects.filter(day=day).aggregate(total=Sum("count"))["total"] or 0


def used_today_subquery(user_ref: str = "pk") -> Coalesce:
    """Today's count of the user whose id is `user_ref` (all its rows), 0 without a row: an
    annotation."""
    counts = (
        DailyUsage.objects.filter(user_id=OuterRef(user_ref), day=usage_today())
        .values("user_id")
        .annotate(total=Sum("count"))
        .values("total")
    )
    return Coalesce(Subquery(counts[:1]), Value(0))
