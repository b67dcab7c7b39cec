"""The numbers of `manage.py stats`: the product's state today, for an operator."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Sum

from accounts.models import User
from billing.selectors import pro_user_count
from chatrooms.models import Message
from usage.selectors import prompts_on, usage_resets_at, usage_today


@dataclass(frozen=True)
class TodayStats:
    day: dt.date
    users: int
    pro_users: int
    prompts: int
    replies_by_status: dict[str, int]
    latency_median_seconds: float | None
    latency_p95_seconds: float | None
    prompt_tokens: int
    output_tokens: int


_LATENCY_SQL = f"""
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds)
    FROM (SELECT EXTRACT(EPOCH FROM completed_at - created_at) AS seconds
          FROM {Message._meta.db_table}
          WHERE role = 'model' AND status = 'completed'
            AND created_at >= %(start)s AND created_at < %(end)s) AS replies
"""  # noqa: S608 (the table name is ours)


def stats_today() -> TodayStats:
    """Today is the usage day (`USAGE_TIMEZONE`); replies count by when they were sent.
    Latency: from the send to the reply's completion, completed replies only."""
    day = usage_today()
    start, end = usage_resets_at(day - dt.timedelta(days=1)), usage_resets_at(day)
    replies = Message.objects.filter(
        role=Message.Role.MODEL, created_at__gte=start, created_at__lt=end
    )
    by_status = dict(replies.values_list("status").annotate(n=Count("id")).order_by("status"))
    tokens = replies.aggregate(prompt=Sum("prompt_tokens"), output=Sum("output_tokens"))
    with connection.cursor() as cursor:
        cursor.execute(_LATENCY_SQL, {"start": start, "end": end})
        median, p95 = cursor.fetchone()
    return TodayStats(
        day=day,
        users=User.objects.count(),
        pro_users=pro_user_count(),
        prompts=prompts_on(day),
        replies_by_status=by_status,
        latency_median_seconds=median,
        latency_p95_seconds=p95,
        prompt_tokens=tokens["prompt"] or 0,
        output_tokens=tokens["output"] or 0,
    )
