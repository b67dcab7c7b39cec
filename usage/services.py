"""Writes of the daily prompt count: consume one prompt, give one back, reset a day."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import connection
from django.db.models import F

from accounts.models import User
from billing.selectors import user_is_pro_sql
from usage.errors import DailyLimitExceeded
from usage.metrics import daily_limit_refusals
from usage.models import DailyUsage
from usage.selectors import UsageSummary, usage_resets_at, usage_today

logger = logging.getLogger(__name__)

_TABLE = DailyUsage._meta.db_table

# One statement, so concurrent sends serialise on the row: the increment only happens
# while the count is below the limit, and no row comes back when it is not. The tier is
# read in the same statement (one round trip on every send): Pro users are counted too (for
# the admin), against a limit they cannot reach.
_NO_LIMIT = 2**31 - 1
_CONSUME_SQL = f"""
    WITH tier AS (SELECT {{is_pro}} AS pro)
    INSERT INTO {_TABLE} (user_id, day, count)
    SELECT %(user_id)s, %(day)s, 1 FROM tier WHERE pro OR %(limit)s > 0
    ON CONFLICT (user_id, day) DO UPDATE SET count = {_TABLE}.count + 1
    WHERE {_TABLE}.count < (
        SELECT CASE WHEN pro THEN {_NO_LIMIT} ELSE %(limit)s END FROM tier
    )
    RETURNING count, tokens, (SELECT pro FROM tier)
"""  # noqa: S608 (the table name and condition are ours, the values are parameters)


def usage_consume(*, user: User, now: dt.datetime | None = None) -> UsageSummary:
    """Count one prompt for today, or raise DailyLimitExceeded for a Basic user at the limit."""
    day = usage_today(now)
    resets_at = usage_resets_at(day)
    basic_limit = settings.BASIC_DAILY_LIMIT
    is_pro, pro_params = user_is_pro_sql(user_id=user.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            _CONSUME_SQL.format(is_pro=is_pro),
            {"user_id": user.pk, "day": day, "limit": max(basic_limit, 0), **pro_params},
        )
        row = cursor.fetchone()
    if row is None:  # only a Basic user can reach the limit
        daily_limit_refusals.inc()
        used, tokens = DailyUsage.objects.filter(user=user, day=day).values_list(
            "count", "tokens"
        ).first() or (0, 0)
        raise DailyLimitExceeded(
            UsageSummary(
                limit=basic_limit, used=used, remaining=0, resets_at=resets_at, tokens_today=tokens
            )
        )
    used, tokens, pro = int(row[0]), int(row[1]), bool(row[2])
    return UsageSummary.of_day(
        day=day, limit=None if pro else basic_limit, used=used, tokens=tokens
    )


_COUNT_UNLIMITED_SQL = f"""
    INSERT INTO {_TABLE} (user_id, day, count) VALUES (%(user_id)s, %(day)s, 1)
    ON CONFLICT (user_id, day) DO UPDATE SET count = {_TABLE}.count + 1
    RETURNING count, tokens
"""  # noqa: S608 (the table name is ours, the values are parameters)


def usage_count_unlimited(*, user: User, now: dt.datetime | None = None) -> UsageSummary:
    """Count one prompt for today against no limit: a Pro user's, for the record. A send
    runs it after its transaction has committed (`chatrooms.services._pro_prompt_counted`)."""
    day = usage_today(now)
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_UNLIMITED_SQL, {"user_id": user.pk, "day": day})
        used, tokens = cursor.fetchone()
    return UsageSummary.of_day(day=day, limit=None, used=int(used), tokens=int(tokens))


def tokens_add_sql(*, written: str) -> str:
    """A statement for a WITH clause: add tokens to a user's count of a day (parameters: the
    user id, the day, the tokens) once for each row of the CTE `written` (none: nothing).
    The worker's final write of a reply runs it in the same statement, so the tokens are
    counted exactly when the reply is (one round trip on every reply's path)."""
    return f"""
        INSERT INTO {_TABLE} (user_id, day, count, tokens)
        SELECT %s, %s, 0, %s FROM {written}
        ON CONFLICT (user_id, day) DO UPDATE SET tokens = {_TABLE}.tokens + EXCLUDED.tokens
    """  # noqa: S608 (the names are ours, the values are parameters)


def usage_refund(*, user_id: int, day: dt.date) -> bool:
    """Give back one prompt of `day` (a failed reply). Never goes below zero."""
    updated = DailyUsage.objects.filter(user_id=user_id, day=day, count__gt=0).update(
        count=F("count") - 1
    )
    return updated == 1


def usage_reset_today(*, user: User) -> bool:
    """An operator gives the user today's prompts back: today's count goes to 0 (the row
    stays, for the record). False when there was nothing to reset.

    No cache to forget: every read of the count (`usage_summary`, the send's statement)
    goes to the database."""
    day = usage_today()
    reset = DailyUsage.objects.filter(user=user, day=day, count__gt=0).update(count=0) == 1
    if reset:
        logger.info("Usage of user %s on %s reset by an operator", user.pk, day)
    return reset
