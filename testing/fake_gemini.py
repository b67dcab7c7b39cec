"""A local stand-in for the Gemini REST API, good enough that google-genai can't tell.

It speaks the wire format of generativelanguage.googleapis.com:

- `POST /{v1,v1beta}/models/{model}:streamGenerateContent?alt=sse` answers Server-Sent
  Events, one `data: {GenerateContentResponse}` frame per chunk (camelCase JSON), over
  HTTP/1.1 chunked transfer encoding;
- `POST /{v1,v1beta}/models/{model}:generateContent` answers one GenerateContentResponse;
- `POST /{v1,v1beta}/models/{model}:countTokens` answers `{"totalTokens": n}`;
- the API key travels in `x-goog-api-key`; a missing key is a 403 and a wrong one a 400
  `API_KEY_INVALID`, as Google answers them; every error body is Google's
  `{"error": {"code", "message", "status"}}`.

What it answers is scripted: a FIFO of `Reply` items, each consumed by one model request.
With the script empty it echoes the last user turn, spread over `latency` seconds.
Every model request is recorded (path, headers without the key, JSON body).

In-process:

    with FakeGemini() as fake:
        fake.script(Reply(text="Hello there", chunks=2), Reply(status=503))
        ... settings.GEMINI_BASE_URL = fake.url, settings.GEMINI_API_KEY = fake.api_key ...
        fake.requests[-1]["body"]["contents"]

As a process, driven over HTTP by end-to-end tests and benchmarks:

    python -m testing.fake_gemini --port 0 --latency 2 --print-url
    POST /_fake/script   a Reply as JSON, or a list of them   -> {"queued": n}
    GET  /_fake/requests                                      -> {"requests": [...]}
    POST /_fake/reset    optional {"latency": s, "chunks": n} -> {"ok": true}
    GET  /_fake/health                                        -> {"ok": true}

This is test and benchmark tooling; nothing in the product imports it. It is one file of
standard-library code on purpose: the side-by-side benchmark (`../shared/peer-bench`) copies
it alone and runs it with any Python 3. So the HTTP server under both local stand-ins,
`StubServer`, lives here, and `fake_stripe` imports it from here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import signal
import socket
import sys
import threading
import uuid
from collections import deque
from dataclasses import asdict, dataclass, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

# --- The HTTP server under the local stand-ins (this one and fake_stripe) ----------------------
#
# A threading server that remembers its open connections, so stopping it also cuts keep-alive
# and in-flight ones (their threads end with the server), and that treats a client hanging up
# (a timeout, a cancel, a closed pool) as routine rather than an error.

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


DEFAULT_API_KEY = "fake-gemini-key"

# Google's canonical status names for the HTTP codes a caller may script.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
_EMPTY_TEXT_MESSAGE = (
    "Unable to submit request because it has an empty text parameter. "
    "Add a value to the parameter and try again."
)
_MODEL_PATH = re.compile(
    r"^/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+)"
    r":(?P<action>streamGenerateContent|generateContent|countTokens)$"
)
# Finish reasons that end a reply early for safety; Gemini sends them in a final, contentless
# chunk that carries a blocking safety rating.
_SAFETY_FINISH_REASONS = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION"}


@dataclass
class Reply:
    """What the fake answers to one model request. Every field is optional."""

    text: str | None = None
    """The reply; None means the default echo of the last user turn."""
    chunks: int = 3
    """How many SSE frames the text is split into (at word boundaries)."""
    chunk_delay: float = 0.0
    """Seconds before each frame."""
    latency: float | None = None
    """Seconds for the whole reply, spread evenly over its frames (instead of chunk_delay)."""
    pre_delay: float = 0.0
    """Seconds before the response starts (time to first byte)."""
    status: int | None = None
    """Answer this HTTP error (Google's JSON body) instead of a reply."""
    message: str | None = None
    """The error message for `status`; a Google-like default otherwise."""
    error_after_chunks: int | None = None
    """With `status`: start a 200 stream and send the error as an event after this many frames."""
    block_reason: str | None = None
    """Block the prompt: `promptFeedback.blockReason` and no candidates."""
    finish_reason: str = "STOP"
    """The candidate's finishReason; SAFETY and friends come in a final contentless frame.
    Empty: no finishReason at all, a stream that ends without saying it is finished."""
    hang: float = 0.0
    """Send nothing for this many seconds (to trip the client's timeout)."""
    hang_after_chunks: int | None = None
    """Hang after this many frames instead of before the response."""
    drop_after_chunks: int | None = None
    """Close the connection abruptly after this many frames."""
    prompt_tokens: int | None = None
    """usageMetadata.promptTokenCount; an estimate from the request otherwise."""
    output_tokens: int | None = None
    """Final usageMetadata.candidatesTokenCount; an estimate from the text otherwise."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        known = {field.name for field in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown Reply fields: {sorted(unknown)}")
        return cls(**data)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def split_text(text: str, parts: int) -> list[str]:
    """Split `text` at word boundaries into at most `parts` pieces that join back to it."""
    words = re.findall(r"\s*\S+\s*|\s+", text)
    if parts <= 1 or len(words) <= 1:
        return [text]
    parts = min(parts, len(words))
    size, extra = divmod(len(words), parts)
    pieces, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        pieces.append("".join(words[start:end]))
        start = end
    return pieces


class _State:
    """What the server threads share: the script, the record and the defaults."""

    def __init__(self, *, api_key: str, latency: float, chunks: int) -> None:
        self.lock = threading.Lock()
        self.api_key = api_key
        self.latency = latency
        self.chunks = chunks
        self.script: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    def next_reply(self) -> Reply:
        with self.lock:
            if self.script:
                return self.script.popleft()
            latency, chunks = self.latency, self.chunks
        return Reply(chunks=chunks, latency=latency)

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the server stops."""
        if seconds > 0:
            self.stopping.wait(seconds)


class _ApiError(Exception):
    """A request the real API would refuse; answered with `error_body`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_body(code: int, message: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message or _DEFAULT_MESSAGES.get(code) or HTTPStatus(code).phrase,
            "status": _STATUS_NAMES.get(code, "UNKNOWN"),
        }
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the Google front end
    server: StubServer[_State]
    server_version = "scaffolding on HTTPServer2"
    sys_version = ""

    # --- plumbing ------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Small SSE frames must leave at once, as from Google's front end (no Nagle delay).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # hundreds of concurrent streams would drown the test output

    @property
    def state(self) -> _State:
        return self.server.state

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, code: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, code: int, message: str | None = None) -> None:
        self._send_json(code, error_body(code, message))

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _write_event(self, payload: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\r\n\r\n")

    def _drop_connection(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # --- routing -------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_fake/requests":
            with self.state.lock:
                requests = list(self.state.requests)
            self._send_json(200, {"requests": requests})
        elif path == "/_fake/health":
            self._send_json(200, {"ok": True})
        else:
            self._read_body()
            self._send_error(404, f"The requested URL {path} was not found on this server.")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        if url.path.startswith("/_fake/"):
            self._control(url.path, body)
            return
        match = _MODEL_PATH.match(url.path)
        if match is None:
            self._send_error(404, f"The requested URL {url.path} was not found on this server.")
            return
        try:
            self._model_call(
                model=match["model"],
                action=match["action"],
                query=parse_qs(url.query),
                raw_body=body,
            )
        except OSError:
            self.close_connection = True  # the client went away, e.g. after its timeout

    def _control(self, path: str, body: bytes) -> None:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            self._send_error(400, "Invalid JSON payload received.")
            return
        try:
            if path == "/_fake/script":
                items = data if isinstance(data, list) else [data]
                replies = [Reply.from_dict(item) for item in items]
                with self.state.lock:
                    self.state.script.extend(replies)
                self._send_json(200, {"queued": len(replies)})
            elif path == "/_fake/reset":
                with self.state.lock:
                    self.state.script.clear()
                    self.state.requests.clear()
                    self.state.latency = float(data.get("latency", self.state.latency))
                    self.state.chunks = int(data.get("chunks", self.state.chunks))
                self._send_json(200, {"ok": True})
            else:
                self._send_error(404, f"No control endpoint {path}.")
        except (TypeError, ValueError, AttributeError) as exc:
            self._send_error(400, str(exc))

    # --- the model API ---------------------------------------------------------

    def _model_call(
        self, *, model: str, action: str, query: dict[str, list[str]], raw_body: bytes
    ) -> None:
        body = _parse_json(raw_body)
        self.state.record(
            {
                "method": "POST",
                "path": urlsplit(self.path).path,
                "query": {key: values[-1] for key, values in query.items() if key != "key"},
                "model": model,
                "action": action,
                "headers": {
                    name.lower(): value
                    for name, value in self.headers.items()
                    if name.lower() != "x-goog-api-key"
                },
                "body": body,
            }
        )
        api_key = self.headers.get("x-goog-api-key") or query.get("key", [""])[-1]
        if not api_key:
            self._send_error(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
            return
        if api_key != self.state.api_key:
            self._send_error(400, "API key not valid. Please pass a valid API key.")
            return
        try:
            request = _validated_request(body, action)
        except _ApiError as exc:
            self._send_error(exc.code, exc.message)
            return
        if action == "countTokens":
            self._send_json(200, {"totalTokens": _prompt_tokens(request)})
            return
        if action == "streamGenerateContent" and query.get("alt", [""])[-1] != "sse":
            self._send_error(400, "This fake only streams with alt=sse, as google-genai asks.")
            return

        reply = self.state.next_reply()
        self.state.sleep(reply.pre_delay)
        if reply.hang_after_chunks is None:
            self.state.sleep(reply.hang)
        if reply.status is not None and reply.error_after_chunks is None:
            self._send_error(reply.status, reply.message)
            return
        frames = _frames(reply, request=request, model=model)
        delay = reply.chunk_delay if reply.latency is None else reply.latency / len(frames)
        if action == "generateContent":
            self.state.sleep(delay * len(frames))
            self._send_json(200, _merge_frames(frames))
        else:
            self._stream(reply, frames, delay=delay)

    def _stream(self, reply: Reply, frames: list[dict[str, Any]], *, delay: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Vary", "Origin, X-Origin, Referer")
        self.end_headers()
        for sent, frame in enumerate(frames):
            if sent == reply.hang_after_chunks:
                self.state.sleep(reply.hang)
            if sent == reply.drop_after_chunks:
                self._drop_connection()
                return
            if sent == reply.error_after_chunks and reply.status is not None:
                self._write_event(error_body(reply.status, reply.message))
                break
            self.state.sleep(delay)
            self._write_event(frame)
        else:
            if reply.drop_after_chunks is not None and reply.drop_after_chunks >= len(frames):
                self._drop_connection()
                return
            if reply.error_after_chunks is not None and reply.status is not None:
                self._write_event(error_body(reply.status, reply.message))
        self._write_chunk(b"")


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _validated_request(body: Any, action: str) -> dict[str, Any]:
    """Reject what the real API rejects, with its status; return the GenerateContentRequest."""
    if not isinstance(body, dict):
        raise _ApiError(400, "Invalid JSON payload received.")
    if action == "countTokens" and "generateContentRequest" in body:
        body = body["generateContentRequest"]
    contents = body.get("contents")
    if not contents or not isinstance(contents, list):
        raise _ApiError(400, "* GenerateContentRequest.contents: contents is not specified\n")
    for content in contents:
        if not isinstance(content, dict):
            raise _ApiError(400, "Invalid JSON payload received.")
        if content.get("role", "user") not in ("user", "model"):
            raise _ApiError(400, "Please use a valid role: user, model.")
        _check_parts(content.get("parts"))
    if "systemInstruction" in body:
        system = body["systemInstruction"]
        _check_parts(system.get("parts") if isinstance(system, dict) else None)
    return body


def _check_parts(parts: Any) -> None:
    if not parts or not isinstance(parts, list):
        raise _ApiError(400, "* GenerateContentRequest.contents.parts: parts must not be empty\n")
    for part in parts:
        if not isinstance(part, dict):
            raise _ApiError(400, "Invalid JSON payload received.")
        if "text" in part and (not isinstance(part["text"], str) or part["text"] == ""):
            raise _ApiError(400, _EMPTY_TEXT_MESSAGE)


def _all_text(request: dict[str, Any]) -> str:
    pieces = []
    system = request.get("systemInstruction")
    for content in [system, *request["contents"]] if system else request["contents"]:
        pieces += [part.get("text", "") for part in content.get("parts", [])]
    return "".join(pieces)


def _prompt_tokens(request: dict[str, Any]) -> int:
    return estimate_tokens(_all_text(request))


def _echo(request: dict[str, Any]) -> str:
    last_user = next(
        (c for c in reversed(request["contents"]) if c.get("role", "user") == "user"), None
    )
    said = "".join(p.get("text", "") for p in last_user["parts"]) if last_user else ""
    return f"Echo: {said}"


def _frames(reply: Reply, *, request: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """The GenerateContentResponse frames of one reply, as Gemini would stream them."""
    response_id = uuid.uuid4().hex[:22]
    prompt_tokens = (
        reply.prompt_tokens if reply.prompt_tokens is not None else _prompt_tokens(request)
    )
    common = {"modelVersion": model, "responseId": response_id}

    if reply.block_reason:
        return [
            {
                "promptFeedback": {
                    "blockReason": reply.block_reason,
                    "safetyRatings": [_blocking_rating()],
                },
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "totalTokenCount": prompt_tokens,
                },
                **common,
            }
        ]

    text = _echo(request) if reply.text is None else reply.text
    pieces = split_text(text, reply.chunks) if text else []
    safety_stop = reply.finish_reason in _SAFETY_FINISH_REASONS
    frames: list[dict[str, Any]] = []
    for index, piece in enumerate(pieces):
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": piece}], "role": "model"},
            "index": 0,
        }
        if index == len(pieces) - 1 and reply.finish_reason and not safety_stop:
            candidate["finishReason"] = reply.finish_reason
        frames.append({"candidates": [candidate], **common})
    if not pieces or safety_stop:
        # Nothing generated, or stopped by a filter: a final frame without parts.
        final: dict[str, Any] = {"content": {"role": "model"}, "index": 0}
        if reply.finish_reason:
            final["finishReason"] = reply.finish_reason
        if safety_stop:
            final["safetyRatings"] = [_blocking_rating()]
        frames.append({"candidates": [final], **common})

    so_far = ""
    for position, frame in enumerate(frames):
        so_far += "".join(
            part.get("text", "") for part in frame["candidates"][0]["content"].get("parts", [])
        )
        running_output = estimate_tokens(so_far)  # like Gemini's, a running total
        if position == len(frames) - 1 and reply.output_tokens is not None:
            running_output = reply.output_tokens
        frame["usageMetadata"] = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": running_output,
            "totalTokenCount": prompt_tokens + running_output,
        }
    return frames


def _blocking_rating() -> dict[str, Any]:
    return {
        "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
        "probability": "HIGH",
        "blocked": True,
    }


def _merge_frames(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streaming answer: the frames folded into one response."""
    merged = dict(frames[-1])
    if "candidates" in merged:
        text = "".join(
            part.get("text", "")
            for frame in frames
            for part in frame["candidates"][0]["content"].get("parts", [])
        )
        candidate = dict(merged["candidates"][0])
        candidate["content"] = (
            {"parts": [{"text": text}], "role": "model"} if text else {"role": "model"}
        )
        merged["candidates"] = [candidate]
    return merged


def _server(address: tuple[str, int], state: _State) -> StubServer[_State]:
    return StubServer(
        address, _Handler, state, backlog=1024
    )  # a benchmark opens hundreds of streams at once


class FakeGemini:
    """The fake Gemini API on a free local port, served from a background thread."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        latency: float = 0.0,
        chunks: int = 3,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._state = _State(api_key=api_key, latency=latency, chunks=chunks)
        self._address = (host, port)
        self._server: StubServer[_State] | None = None
        self._thread: threading.Thread | None = None

    @property
    def api_key(self) -> str:
        return self._state.api_key

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("The fake Gemini server is not running.")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGemini:
        self._state.stopping.clear()
        self._server = _server(self._address, self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-gemini",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._state.stopping.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def script(self, *replies: Reply | dict[str, Any]) -> None:
        """Queue replies; each model request takes the oldest one."""
        items = [r if isinstance(r, Reply) else Reply.from_dict(r) for r in replies]
        with self._state.lock:
            self._state.script.extend(items)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every model request received so far, oldest first (the API key left out)."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def pending_replies(self) -> int:
        with self._state.lock:
            return len(self._state.script)

    def reset(self) -> None:
        with self._state.lock:
            self._state.script.clear()
            self._state.requests.clear()


def reply_json(reply: Reply) -> dict[str, Any]:
    """A Reply as the JSON body `POST /_fake/script` accepts (for driving a separate process)."""
    return {key: value for key, value in asdict(reply).items() if value != getattr(Reply, key)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per default reply")
    parser.add_argument("--chunks", type=int, default=3, help="frames per default reply")
    parser.add_argument("--print-url", action="store_true", help="print the base URL and flush")
    args = parser.parse_args(argv)

    state = _State(api_key=args.api_key, latency=args.latency, chunks=args.chunks)
    server = _server((args.host, args.port), state)
    host, port = server.server_address[:2]
    url = f"http://{host!s}:{port}"
    if args.print_url:
        print(url, flush=True)
    else:
        print(f"Fake Gemini listening on {url} (API key {args.api_key!r})", file=sys.stderr)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        state.stopping.set()
        server.close_connections()
        server.server_close()


if __name__ == "__main__":
    main()
