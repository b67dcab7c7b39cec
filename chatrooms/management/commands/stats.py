from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from chatrooms.stats import stats_today


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


class Command(BaseCommand):
    help = "Users, Pro users, and today's prompts, replies, reply latency and tokens."

    def handle(self, *args: Any, **options: Any) -> None:
        stats = stats_today()
        statuses = ", ".join(f"{k} {v}" for k, v in stats.replies_by_status.items()) or "none"
        lines = [
            f"users               {stats.users}",
            f"pro users           {stats.pro_users}",
            f"prompts today       {stats.prompts}  ({stats.day.isoformat()}, USAGE_TIMEZONE)",
            f"replies today       {statuses}",
            f"reply latency       median {_seconds(stats.latency_median_seconds)}, "
            f"p95 {_seconds(stats.latency_p95_seconds)}  (send to completion)",
            f"tokens today        {stats.prompt_tokens} in, {stats.output_tokens} out",
        ]
        self.stdout.write("\n".join(lines))
