"""The ASGI entry point: one server for the whole API.

Async views (the reply stream) run on Django's ASGI handler. Left alone, that handler gives
every request a thread of its own for its synchronous parts (Django's request signals, our
database calls), idle but alive while a stream stays open: 300 streams, 300 threads. Here
all streams share `STREAM_SYNC_THREADS` threads instead, each running one call at a time.

Every other view is synchronous (DRF), and Django's ASGI
adaptation of sync code is slow (a thread hand-off per middleware layer and per
request context); those requests go to Django's WSGI handler on `WEB_THREADS` threads
instead (`core.wsgi_bridge`, one hand-off each way), which measured several times faster
on the same machine (see README, "Benchmarks"). In front of both, `core.request_body` reads
request bodies in full and within the 1 MiB limit, chunked ones included, before either
handler runs, and in front of that `core.request_log` gives every response its
`X-Request-ID` and every request its log line.
"""

import functools
import itertools
import os
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
django_wsgi = WSGIBridge(
    get_wsgi_application(),
    threads=int(os.environ.get("WEB_THREADS", "8")),
)


# The synchronous steps of a stream are short (an authentication, a row read, a connection
# given back): a few threads keep up with hundreds of streams. Each runs one call at a time,
# as Django's thread-sensitive code expects of a request's thread; no call leaves a
# transaction or a connection open behind it.
STREAM_SYNC_THREADS = 4
_stream_executors = [
    ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-sync")
    for _ in range(STREAM_SYNC_THREADS)
]
_next_executor = itertools.cycle(_stream_executors)


def _is_async_view(path: str) -> bool:
    # Real paths are short; a long one (a client's invention) is resolved, never cached.
    return _resolves_to_async_view(path) if len(path) <= 256 else _resolve_async(path)


@functools.lru_cache(maxsize=4096)
def _resolves_to_async_view(path: str) -> bool:
    return _resolve_async(path)


def _resolve_async(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


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
    elif scope["method"] in ("GET", "HEAD") and _is_async_view(scope["path"]):
        # The outermost context decides: Django's own, inside, then uses this executor.
        async with ThreadSensitiveContext(executor=next(_next_executor)):
            await django_asgi(scope, _bodiless(receive), send)
    else:
        # Sync views, and any other method on an async route (answered 405 there).
        await django_wsgi(scope, receive, send)


application = RequestLog(RequestBodyReader(_dispatch, max_bytes=settings.API_MAX_BODY_BYTES))
