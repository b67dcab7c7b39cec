"""Account metrics (exposed by core.metrics at /metrics)."""

from core.metrics import Counter

otp_sends = Counter(
    "gemini_otp_sends",
    "One-time codes issued (and delivered, unless to a number we do not know), by purpose.",
    ["purpose"],
)
