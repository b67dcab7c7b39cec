"""Usage metrics (exposed by core.metrics at /metrics)."""

from core.metrics import Counter

daily_limit_refusals = Counter(
    "gemini_daily_limit_refusals",
    "Prompts refused because a Basic user reached BASIC_DAILY_LIMIT.",
)
