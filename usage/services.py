"""Writes of the daily prompt count: consume one prompt, give one back, reset a day."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace

from django.conf import settings
from django.db import connection

from accounts.models import User
from billing.selectors import user_is_pro_sql
from usage.errors import DailyLimitExceeded
from usage.metrics import daily_limit_refusals
from usage.models import DailyUsage, pro_slot
from usage.selectors import UsageSummary, usage_summary, usage_today

logger = logging.getLogger(__name__)

_TABLE = DailyUsage._meta.db_table


# The day's count and tokens on its rows other than the `slot` parameter's: what a count
# adds to its own row's to answer the day's.
_OTHER_SLOTS = f"""
    SELECT coalesce(sum(count), 0)::bigint AS count, coalesce(sum(tokens), 0)::bigint AS tokens
    FROM {_TABLE} WHERE user_id = %(user_id)s AND day = %(day)s AND slot <> %(slot)s
"""  # noqa: S608 (the table name is ours, the values are parameters)

# One statement, so concurrent sends serialise on slot 0's row: the increment only happens
# while the day's count (slot 0's and any other's: a user who was Pro earlier today) is
# below the limit, and no row comes back when it is not. The tier is read in the same
# statement (one round trip on every send), which admits a user who became Pro meanwhile,
# counted here against a limit they cannot reach.
_NO_LIMIT = 2**31 - 1
_CONSUME_SQL = f"""
    WITH tier AS (SELECT {{is_pro}} AS pro), other AS ({_OTHER_SLOTS})
    INSERT INTO {_TABLE} (user_id, day, slot, count)
    SELECT %(user_id)s, %(day)s, %(slot)s, 1 FROM tier, other WHERE pro OR other.count < %(limit)s
    ON CONFLICT (user_id, day, slot) DO UPDATE SET count = {_TABLE}.count + 1
    WHERE {_TABLE}.count + (SELECT count FROM other) < (
        SELECT CASE WHEN pro THEN {_NO_LIMIT} ELSE %(limit)s END FROM tier
    )
    RETURNING count + (SELECT count FROM other), tokens + (SELECT tokens FROM other),
        (SELECT pro FROM tier)
"""  # noqa: S608 (the table name and condition are ours, the values are parameters)


def usage_consume(*, user: User, now: dt.datetime | None = None) -> UsageSummary:
    """Count one prompt for today, or raise DailyLimitExceeded for a Basic user at the limit."""
    day = usage_today(now)
    basic_limit = settings.BASIC_DAILY_LIMIT
    is_pro, pro_params = user_is_pro_sql(user_id=user.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            _CONSUME_SQL.format(is_pro=is_pro),
            {
                "user_id": user.pk,
                "day": day,
                "slot": 0,
                "limit": max(basic_limit, 0),
                **pro_params,
            },
        )
        row = cursor.fetchone()
    if row is None:  # only a Basic user can reach the limit
        daily_limit_refusals.inc()
        # Read after the refusal: a refund may have come in between, the answer says 0 left.
        raise DailyLimitExceeded(
            replace(usage_summary(user=user, is_pro=False, day=day), remaining=0)
        )
    used, tokens, pro = int(row[0]), int(row[1]), bool(row[2])
    return UsageSummary.of_day(
        day=day, limit=None if pro else basic_limit, used=used, tokens=tokens
    )


# A Pro prompt, on its chatroom's slot; the day's count is that row's and the others'.
_COUNT_UNLIMITED_SQL = f"""
    WITH other AS ({_OTHER_SLOTS})
    INSERT INTO {_TABLE} (user_id, day, slot, count)
    VALUES (%(user_id)s, %(day)s, %(slot)s, 1)
    ON CONFLICT (user_id, day, slot) DO UPDATE SET count = {_TABLE}.count + 1
    RETURNING count + (SELECT count FROM other), tokens + (SELECT tokens FROM other)
"""  # noqa: S608 (the table name is ours, the values are parameters)


def usage_count_unlimited(
    *, user: User, chatroom_id: int, now: dt.datetime | None = None
) -> UsageSummary:
    """Count one prompt for today against no limit: a Pro user's, for the record, on the
    row of the chatroom's slot. In a send's transaction its row stays locked until the
    commit, but only sends in chatrooms of the same slot wait for it."""
    day = usage_today(now)
    with connection.cursor() as cursor:
        cursor.execute(
            _COUNT_UNLIMITED_SQL,
            {"user_id": user.pk, "day": day, "slot": pro_slot(chatroom_id)},
        )
        used, tokens = cursor.fetchone()
    return UsageSummary.of_day(day=day, limit=None, used=int(used), tokens=int(tokens))


def usage_count_prompt(
    *, user: User, is_pro: bool, chatroom_id: int, now: dt.datetime | None = None
) -> UsageSummary:
    """Count a send's prompt, as the last statement of the send's transaction: a refusal
    (DailyLimitExceeded) rolls back what the send stored, so concurrent sends can never admit
    more than the limit, and a count that fails fails the send whole (nothing stored,
    nothing counted). `is_pro` is the tier the send read under its lock. A Basic user's
    count reads the tier again, which admits a user who became Pro meanwhile; a Pro user's
    is on the chatroom's slot (usage.models.PRO_SLOTS)."""
    if is_pro:
        return usage_count_unlimited(user=user, chatroom_id=chatroom_id, now=now)
    return usage_consume(user=user, now=now)


def tokens_add_sql(*, written: str) -> str:
    """A statement for a WITH clause: add tokens to a user's count of a day (parameters: the
    user id, the day, the tokens) once for each row of the CTE `written` (none: nothing).
    The worker's final write of a reply runs it in the same statement, so the tokens are
    counted exactly when the reply is (one round trip on every reply's path)."""
    return f"""
        INSERT INTO {_TABLE} (user_id, day, slot, count, tokens)
        SELECT %s, %s, 0, 0, %s FROM {written}
        ON CONFLICT (user_id, day, slot) DO UPDATE SET tokens = {_TABLE}.tokens + EXCLUDED.tokens
    """  # noqa: S608 (the names are ours, the values are parameters)


# The row a refund takes the prompt from: the chatroom's Pro slot when it has a count, else
# slot 0 (a Basic user's). Either way the day's count goes down by one, which is what the
# limit reads. Locked and checked again (a concurrent refund may have emptied it).
_REFUND_SQL = f"""
    UPDATE {_TABLE} SET count = {_TABLE}.count - 1
    FROM (SELECT id FROM {_TABLE}
          WHERE user_id = %(user_id)s AND day = %(day)s AND slot IN (0, %(slot)s) AND count > 0
          ORDER BY slot DESC LIMIT 1 FOR UPDATE) refunded
    WHERE {_TABLE}.id = refunded.id
"""  # noqa: S608 (the table name is ours, the values are parameters)


def usage_refund(*, user_id: int, day: dt.date, chatroom_id: int) -> bool:
    """Give back one prompt of `day` sent in chatroom `chatroom_id` (a failed reply). Never
    goes below zero."""
    with connection.cursor() as cursor:
        cursor.execute(_REFUND_SQL, {"user_id": user_id, "day": day, "slot": pro_slot(chatroom_id)})
        return cursor.rowcount == 1


def usage_reset_today(*, user: User) -> bool:
    """An operator gives the user today's prompts back: today's count goes to 0 (the rows
    stay, with their tokens, for the record). False when there was nothing to reset.

    No cache to forget: every read of the count (`usage_summary`, the send's statement)
    goes to the database."""
    day = usage_today()
    reset = DailyUsage.objects.filter(user=user, day=day, count__gt=0).update(count=0) > 0
    if reset:
        logger.info("Usage of user %s on %s reset by an operator", user.pk, day)
    return reset
