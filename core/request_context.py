"""What the log lines written while serving a request (or running a task for it) share.

The request id comes from `X-Request-ID` when the client sent a usable one (1 to 200
characters of `[A-Za-z0-9._-]`, the contract's rule), else it is new. It travels with a
request's tasks in their message headers (`core.task_context`), so a reply's lines in the
worker carry the id of the send that asked for it.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

REQUEST_ID_HEADER = b"x-request-id"
_USABLE_CLIENT_ID = re.compile(rb"[A-Za-z0-9._-]{1,200}")

# The URL name of the catch-all that answers unknown /api paths: no route, for the logs.
UNMATCHED_URL_NAME = "api-unmatched"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


@dataclass(slots=True)
class RequestFacts:
    """Learnt by Django while it serves the request, read by the request's log line."""

    route: str | None = None
    # Whether the route's captures were all numbers (our ids): only then is the path ours
    # and logged as it is. A catch-all such as the admin's captures the client's own text.
    path_is_ids_only: bool = False
    user_id: int | None = None


request_facts_var: ContextVar[RequestFacts | None] = ContextVar("request_facts", default=None)


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The id of a request with these (ASGI) headers: the client's, if usable."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _USABLE_CLIENT_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex
