"""WhiteNoise for the synchronous (WSGI) side only.

WhiteNoise's middleware is sync-only, which would make Django run every async request
(the reply stream) on a thread of its own for its whole life. Static files are never
served from the async side (gemini_clone.asgi sends them to WSGI), so there it steps aside.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.whitenoise: WhiteNoiseMiddleware | None = None
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)
        else:
            self.whitenoise = WhiteNoiseMiddleware(get_response)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.whitenoise is None:
            return self.get_response(request)
        return self.whitenoise(request)
