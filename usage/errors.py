from __future__ import annotations

from core.errors import ApiError
from usage.selectors import UsageSummary, rate_limit_headers


class DailyLimitExceeded(ApiError):
    status_code = 429
    code = "daily_limit_exceeded"

    def __init__(self, summary: UsageSummary) -> None:
        assert summary.limit is not None
        headers = rate_limit_headers(summary)
        headers["Retry-After"] = headers["X-RateLimit-Reset-After"]
        del headers["X-RateLimit-Reset-After"]
        super().__init__(
            f"The Basic plan allows {summary.limit} prompts a day. "
            "Upgrade to Pro for unlimited prompts, or try again after the reset.",
            details={
                "limit": summary.limit,
                "used": summary.used,
                "resets_at": summary.as_dict()["resets_at"],
            },
            headers=headers,
        )
