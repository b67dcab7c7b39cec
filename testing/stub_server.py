"""The HTTP server under the local stand-ins (fake_gemini, fake_stripe).

A threading server that remembers its open connections, so stopping it also cuts keep-alive
and in-flight ones (their threads end with the server), and that treats a client hanging up
(a timeout, a cancel, a closed pool) as routine rather than an error."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

StateT = TypeVar("StateT")


class StubServer(ThreadingHTTPServer, Generic[StateT]):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        state: StateT,
        *,
        backlog: int = 128,
    ) -> None:
        self.state = state
        self.request_queue_size = backlog
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
