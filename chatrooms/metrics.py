"""The reply pipeline's metrics (exposed by core.metrics at /metrics)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError, connection, transaction
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from chatrooms.models import Message
from core.metrics import Counter, Gauge, Histogram, scrape_collector_register

logger = logging.getLogger(__name__)

# Model calls take seconds; the buckets go up to the reply's time limit.
_MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 60.0, 120.0)

replies_finished = Counter(
    "gemini_replies",
    "Replies that reached a final status (completed, failed, blocked, canceled).",
    ["status"],
)
model_latency = Histogram(
    "gemini_model_latency_seconds",
    "One attempt's call to the model, from the request to its last chunk (attempts that "
    "raised an error included).",
    buckets=_MODEL_BUCKETS,
)
model_first_token = Histogram(
    "gemini_model_time_to_first_token_seconds",
    "From the request to the model to the first text it streamed back.",
    buckets=_MODEL_BUCKETS,
)
model_tokens = Counter(
    "gemini_model_tokens",
    "Tokens of completed replies, as the model reported them (or our estimate for the "
    "offline model): in (the conversation sent) and out (the reply).",
    ["direction"],
)
open_streams = Gauge(
    "gemini_open_streams",
    "Server-Sent Event streams open on the web servers.",
    multiprocess_mode="livesum",
)

_QUEUE_SQL = f"""
    SELECT count(*) FILTER (WHERE status = %(pending)s),
           extract(epoch FROM now() - min(created_at) FILTER (WHERE status = %(pending)s)),
           count(*) FILTER (WHERE status = %(streaming)s)
    FROM {Message._meta.db_table} WHERE status IN (%(pending)s, %(streaming)s)
"""  # noqa: S608 (the table name is ours, the values are parameters)


class ReplyQueueCollector:
    """Read at each scrape, from PostgreSQL (the partial index of replies in flight keeps it
    cheap): replies waiting for a worker, how long the oldest has waited, and replies being
    generated. With the database down the scrape still answers, without these."""

    def describe(self) -> list[Metric]:
        return []  # registering runs no query

    def collect(self) -> Iterator[Metric]:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = 2000")
                cursor.execute(
                    _QUEUE_SQL,
                    {"pending": Message.Status.PENDING, "streaming": Message.Status.STREAMING},
                )
                pending, oldest_age, streaming = cursor.fetchone()
        except DatabaseError:
            logger.warning("Metrics: the reply queue could not be read", exc_info=True)
            return
        yield GaugeMetricFamily(
            "gemini_reply_queue_depth", "Replies pending: waiting for a worker.", value=pending
        )
        yield GaugeMetricFamily(
            "gemini_reply_queue_oldest_age_seconds",
            "How long the oldest pending reply has waited (0 when none).",
            value=float(oldest_age or 0),
        )
        yield GaugeMetricFamily(
            "gemini_replies_streaming", "Replies a worker is generating now.", value=streaming
        )


# Read by every /metrics scrape of this process (the web server's; the view imports this
# module through the chatroom views).
scrape_collector_register(ReplyQueueCollector())
