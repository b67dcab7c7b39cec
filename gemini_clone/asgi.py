"""The ASGI entry point: one server for the whole API.

Async views (the reply stream) run on Django's ASGI handler. Left alone, that handler gives
every request a thread of its own for its synchronous parts (Django's request signals, our
database calls), idle but alive while a stream stays open: 300 streams, 300 threads. Here
all streams share `STREAM_SYNC_THREADS` threads instead, each running one call at a time.

Every other view is synchronous (DRF), and Django's ASGI
adaptation of sync code is slow (a thread hand-off per middleware layer and per
request context); those requests go to Django's WSGI handler on `WEB_THREADS` threads
instead (`core.wsgi_bridge`, one hand-off each way), which measured several times faster
on the same machine (see README, "Benchmarks"). A few requests that hold a thread for long
must not take them all: a view's methods that wait on Stripe, hash a password (hundreds of
milliseconds each) or build a whole export are named in its `slow_methods` and run on
`WEB_SLOW_THREADS` threads of their own, as the admin's pages do. In front of
both, `core.request_body` reads
request bodies in full and within the 1 MiB limit, chunked ones included, before either
handler runs, and in front of that `core.request_log` gives every response its
`X-Request-ID` and every request its log line.
"""

import enum
import functools
import itertools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from inspect import iscoroutinefunction
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gemini_clone.settings")

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.urls import Resolver404, resolve

from core.request_body import RequestBodyReader
from core.request_log import RequestLog
from core.wsgi_bridge import WSGIBridge

django_asgi = get_asgi_application()

from gemini_clone.loop_answers import LoopAnswers  # noqa: E402 - needs Django set up

_wsgi_application = get_wsgi_application()
django_wsgi = WSGIBridge(_wsgi_application, threads=settings.WEB_THREADS)
django_wsgi_slow = WSGIBridge(_wsgi_application, threads=settings.WEB_SLOW_THREADS)


# The synchronous steps of a stream are short (an authentication, a row read, a connection
# given back): a few threads keep up with hundreds of streams. Each runs one call at a time,
# as Django's thread-sensitive code expects of a request's thread; no call leaves a
# transaction or a connection open behind it.
_stream_executors = [
    ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-sync")
    for _ in range(settings.STREAM_SYNC_THREADS)
]
_next_executor = itertools.cycle(_stream_executors)


class Route(enum.Enum):
    ASYNC = "async"  # the reply stream: Django's ASGI handler
    SYNC = "sync"  # every other view: the WSGI threads
    SLOW = "slow"  # a view's `slow_methods`: WSGI threads of their own


# A path segment that is a number: in our routes always an id (`<int:...>`; no route has a
# number of its own, core/tests/test_asgi.py checks).
_ID_SEGMENT = re.compile(r"(?<=/)[0-9]+(?=/|\Z)")


def route_of(method: str, path: str) -> Route:
    # Real paths are short; a long one (a client's invention) is resolved, never cached.
    if len(path) > 256:
        return _route_resolved(method, path)
    # Cached with its ids as 0: every chatroom's id would otherwise make its paths new to
    # the cache, and each new path cost a resolve (28 µs) in the event loop.
    return _route_of_known(method, _ID_SEGMENT.sub("0", path))


@functools.lru_cache(maxsize=4096)
def _route_of_known(method: str, path: str) -> Route:
    return _route_resolved(method, path)


def _route_resolved(method: str, path: str) -> Route:
    try:
        match = resolve(path)
    except Resolver404:
        return Route.SYNC
    method = method.upper()
    if iscoroutinefunction(match.func):
        # Any other method on an async route is answered 405 there, by a sync view.
        return Route.ASYNC if method in ("GET", "HEAD") else Route.SYNC
    if "admin" in match.namespaces:
        return Route.SLOW  # the operators' pages: heavier, and their sign-in hashes a password
    view_class = getattr(match.func, "view_class", None)
    handled_as = "GET" if method == "HEAD" else method  # Django answers HEAD with `get`
    return Route.SLOW if handled_as in getattr(view_class, "slow_methods", ()) else Route.SYNC


def _bodiless(receive: Any) -> Any:
    """`receive` for a GET to an async view: an empty body, whatever the client sends.

    Django's ASGI handler reads the whole body (to disk past 2.5 MB) before any middleware
    could refuse it; a stream needs none, so whatever arrives is dropped instead.
    """
    delivered = False

    async def wrapped() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        while True:
            message: dict[str, Any] = await receive()
            if message["type"] != "http.request":
                return message

    return wrapped


async def _dispatch(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        await django_asgi(scope, receive, send)
        return
    route = route_of(scope["method"], scope["path"])
    if route is Route.ASYNC:
        # The outermost context decides: Django's own, inside, then uses this executor.
        async with ThreadSensitiveContext(executor=next(_next_executor)):
            await django_asgi(scope, _bodiless(receive), send)
    elif route is Route.SLOW:
        await django_wsgi_slow(scope, receive, send)
    else:
        await django_wsgi(scope, receive, send)


application = RequestLog(
    RequestBodyReader(
        LoopAnswers(_dispatch, threads=django_wsgi.executor),
        max_bytes=settings.API_MAX_BODY_BYTES,
    )
)
