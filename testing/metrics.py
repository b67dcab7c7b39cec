"""What the code under test recorded, read from /metrics as a scraper reads it (so in the
multiprocess mode too)."""

from __future__ import annotations

from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

_TOKEN = "scrape-token-of-the-tests"  # noqa: S105 (a test value)


def metric_value(name: str, **labels: str) -> float:
    """The sample `name` with exactly `labels`; 0 when absent (a counter never moved)."""
    with override_settings(METRICS_TOKEN=_TOKEN):
        response = Client().get("/metrics", headers={"Authorization": f"Bearer {_TOKEN}"})
    assert response.status_code == 200, response.content
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0
