"""A TCP server that accepts connections and never answers: a Redis that hangs, for tests
of the bounds of calls to it."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def silent_redis_url() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)  # never accepted: the kernel's queue holds what the tests open
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.close()
