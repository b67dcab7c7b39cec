"""Prometheus metrics: the one place the client library is set up, and the `/metrics` view.

Several processes record metrics (the web server's, the Celery worker, beat) and one scrape
must see them all. With `PROMETHEUS_MULTIPROC_DIR` set (the run command, the Docker image
and compose set it), each process writes its values to memory-mapped files in that
directory and a scrape adds them up. Without it (a test, a lone development process),
values live in the process and the scrape shows that process only.

Apps define their metrics with the classes re-exported here, never from prometheus_client
directly: importing this module first is what puts them in multiprocess mode correctly.
"""

from __future__ import annotations

import hmac
import os
import socket
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, values
from prometheus_client import Counter as Counter
from prometheus_client import Gauge as Gauge
from prometheus_client import Histogram as Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
_HOST = socket.gethostname()


def process_identifier(pid: int | None = None) -> str:
    """Names this process's files. The host too: compose's web and worker containers share
    the directory and may both be pid 7."""
    return f"{_HOST}-{os.getpid() if pid is None else pid}"


if MULTIPROC_DIR:
    Path(MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
    # Read by every metric as it is created: before any is.
    values.ValueClass = values.MultiProcessValue(process_identifier=process_identifier)


def process_dead(pid: int) -> None:
    """Forget the live gauges of a process of this host that ended (the web server calls it
    for the processes it restarts or stops)."""
    if MULTIPROC_DIR:
        multiprocess.mark_process_dead(process_identifier(pid), MULTIPROC_DIR)


def live_gauges_of_host_forget() -> None:
    """Forget the live gauges left by earlier processes of this host: a web server killed
    without a chance to mark its processes dead (SIGKILL, a lost container) leaves them, and
    a restarted container with the same host name and pids would add them up again. Called
    by the web server as it starts, before any of its processes has written one."""
    if MULTIPROC_DIR:
        for path in Path(MULTIPROC_DIR).glob("gauge_live*_*.db"):
            # Named gauge_live<mode>_<host>-<pid>.db; a host may have dashes in its name.
            host, _, pid = path.stem.split("_", 2)[-1].rpartition("-")
            if host == _HOST and pid.isdigit():
                path.unlink(missing_ok=True)


_SCRAPE_COLLECTORS: list[Collector] = []


def scrape_collector_register(collector: Collector) -> None:
    """Add a collector evaluated at each scrape, in the scraping process (a query that reads
    the current state, say). Apps call it from their AppConfig.ready(). Its `describe()`
    must return [] so that registering it runs no query."""
    if collector in _SCRAPE_COLLECTORS:
        return
    _SCRAPE_COLLECTORS.append(collector)
    if not MULTIPROC_DIR:
        REGISTRY.register(collector)


def _scrape_registry() -> CollectorRegistry:
    if not MULTIPROC_DIR:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    for collector in _SCRAPE_COLLECTORS:
        registry.register(collector)
    return registry


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if not token or not given.startswith("Bearer "):
        return False
    return hmac.compare_digest(given.removeprefix("Bearer ").encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics, only with `Authorization: Bearer <METRICS_TOKEN>`; otherwise, and when
    no token is set, the same 404 as a path that does not exist."""
    if request.method not in ("GET", "HEAD") or not _authorized(request):
        raise Http404()
    # The text format the scraper asks for in Accept (Prometheus 2 and 3 differ).
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(_scrape_registry()), content_type=content_type)


# --- HTTP requests (recorded by core.request_log) -------------------------------------------

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

http_requests = Counter(
    "gemini_http_requests",
    "HTTP requests answered, by method, route (the URL pattern) and status.",
    ["method", "route", "status"],
)
http_request_duration = Histogram(
    "gemini_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer (a stream's whole life).",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)


def http_request_observe(*, method: str, route: str | None, status: int, seconds: float) -> None:
    # Labels stay few whatever clients send: methods outside the standard ones are one
    # value, and unknown paths one route.
    method = method if method in _METHODS else "other"
    route = route if route is not None else "unmatched"
    http_requests.labels(method, route, str(status)).inc()
    http_request_duration.labels(method, route).observe(seconds)
