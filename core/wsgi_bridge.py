"""Serves a WSGI application (Django's) from an ASGI server, one thread hop per request.

The request runs whole on one of a few threads and its response comes back to the event
loop in one piece: one hand-off there and one back. A general-purpose adapter (a2wsgi,
which this replaced) crosses between the threads once per `start_response`, per body chunk
and per body read, each a wake-up of the other side; on two cores that traffic cost half
the CPU of a cached list, most of it in the kernel (measured in README, "Benchmarks").

The body comes from the layer in front (`core.request_body.RequestBodyReader`), which read
it whole, within the limit, and left it in the scope (it refuses a body announced over the
limit itself); this never reads the connection.
Responses are buffered in full, which is what a REST API sends; the only streams this
project has (the reply's SSE) are async views that never come here.

Each thread serves its requests in a context of its own that lasts, as a WSGI server's
threads do, not in a copy of each request's: Django keeps its caches in a context variable
(an asgiref `Local`), so in a fresh copy per request they were built again every time, a
new Redis client included (a tenth of a cached list's CPU, measured with py-spy). Only the
request's own variables (`core.request_context`) are carried over.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import io
import json
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connections

from core.errors import error_body
from core.request_body import BODY_SCOPE_KEY
from core.request_context import request_facts_var, request_id_var

logger = logging.getLogger(__name__)
_SERVER_ERROR = json.dumps(error_body("server_error", "An unexpected error occurred.")).encode()

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[bytes, bytes]]

_REQUEST_VARS: tuple[contextvars.ContextVar[Any], ...] = (request_id_var, request_facts_var)
_thread = threading.local()


def _thread_context() -> contextvars.Context:
    context: contextvars.Context | None = getattr(_thread, "context", None)
    if context is None:
        context = _thread.context = contextvars.Context()
    return context


# Environ entries that an ASGI layer in front of the bridge adds to a request it hands over
# (a dict in the scope): the scope is the server's, never the client's.
EXTRA_ENVIRON_SCOPE_KEY = "wsgi_bridge.extra_environ"


def wsgi_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The PEP 3333 environ of an ASGI HTTP scope whose body is `body`."""
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    server_name, server_port = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        # PEP 3333: "native strings" carrying the bytes as latin-1.
        "SCRIPT_NAME": root_path.encode().decode("latin-1"),
        "PATH_INFO": path.encode().decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port or 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope["headers"]:
        if b"_" in raw_name:
            # X_Forwarded_For would land in HTTP_X_FORWARDED_FOR beside the proxy's own
            # X-Forwarded-For: dropped, as gunicorn and Django's runserver do.
            continue
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = "HTTP_" + name
        value = raw_value.decode("latin-1")
        environ[name] = f"{environ[name]},{value}" if name in environ else value
    environ.update(scope.get(EXTRA_ENVIRON_SCOPE_KEY, ()))
    return environ


class WSGIBridge:
    def __init__(self, app: WSGIApp, *, threads: int) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        environ = wsgi_environ(scope, scope.get(BODY_SCOPE_KEY, b""))
        loop = asyncio.get_running_loop()
        request_values = [(var, var.get()) for var in _REQUEST_VARS]
        respond = functools.partial(self._respond_in_thread_context, request_values, environ)
        status, headers, body = await loop.run_in_executor(self.executor, respond)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _respond_in_thread_context(
        self, request_values: list[tuple[contextvars.ContextVar[Any], Any]], environ: dict[str, Any]
    ) -> tuple[int, Headers, bytes]:
        return _thread_context().run(self._respond_with, request_values, environ)

    def _respond_with(
        self, request_values: list[tuple[contextvars.ContextVar[Any], Any]], environ: dict[str, Any]
    ) -> tuple[int, Headers, bytes]:
        tokens = [var.set(value) for var, value in request_values]
        try:
            return self._respond(environ)
        finally:
            for (var, _), token in zip(reversed(request_values), reversed(tokens), strict=True):
                var.reset(token)

    def _respond(self, environ: dict[str, Any]) -> tuple[int, Headers, bytes]:
        """Django's answer; a JSON 500 if anything escaped it (its handler catches what the
        views raise, not what fails around them), never the server's text/plain page."""
        try:
            return self._call_app(environ)
        except Exception:
            logger.exception("The WSGI application failed outside its error handling")
            # Its request_finished may not have run: give this thread's connection back.
            connections.close_all()
            return 500, [(b"content-type", b"application/json")], _SERVER_ERROR

    def _call_app(self, environ: dict[str, Any]) -> tuple[int, Headers, bytes]:
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            started[:] = [status, headers]
            return _no_write

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        encoded = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        return int(status[:3]), encoded, body


def _no_write(data: bytes) -> None:
    """PEP 3333's legacy `write` callable, which Django never uses."""
    raise NotImplementedError("write() is not supported; return the body instead")
