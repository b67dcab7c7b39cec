"""Gemini through google-genai. The only module that imports google.genai.

Vendor errors become ours here:

- HTTP 408, 429 and 5xx, timeouts, connection failures and a stream cut short
  -> AiError(retryable=True); the Celery task retries with backoff (the SDK's own retries
  are off, so a failure surfaces at once and is retried in one place);
- any other HTTP error (400, 401, 403, 404...) -> AiError(retryable=False);
- a blocked prompt (`prompt_feedback.block_reason`) or a reply stopped by a filter
  (finish reason SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII...)
  -> AiBlocked(reason). A reply stopped mid-way raises after the text that came before,
  which the caller has already seen as TextDelta items;
- a stream that finishes with no text at all -> AiEmptyReply: an empty reply is never a
  normal completion.

An error's `detail` quotes Gemini's own message for the logs (never with the API key); the
users see our words only. A block reason reaches them only when it looks like one of
Gemini's codes (`SAFETY`), else as `OTHER`.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Generator, Iterator
from typing import Any, cast

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from chatrooms.ai.base import (
    AiBlocked,
    AiEmptyReply,
    AiError,
    Finish,
    StreamItem,
    TextDelta,
    Turn,
)
from chatrooms.ai.context import estimate_tokens

try:  # google-genai uses httpx2 unless told otherwise; httpx is only a dev dependency.
    import httpx
except ImportError:  # pragma: no cover
    httpx = None  # type: ignore[assignment]

# Finish reasons that mean a filter stopped the reply, not the model.
BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
RETRYABLE_STATUSES = frozenset({408, 429})
# What a block reason of Gemini's looks like; anything else is the vendor's prose.
_REASON_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

# One connection per concurrent stream: the worker runs many threads on one client.
_MAX_KEEPALIVE_CONNECTIONS = 256


def _transport_errors(*names: str) -> tuple[type[Exception], ...]:
    modules = [module for module in (httpx2, httpx) if module is not None]
    return tuple(getattr(module, name) for module in modules for name in names)


_TIMEOUTS = _transport_errors("TimeoutException")
_CONNECTION_FAILURES = _transport_errors("NetworkError", "RemoteProtocolError", "ProxyError")


class GeminiModel:
    """The AiModel protocol on Gemini's streaming API."""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str = "",
        timeout_seconds: float,
        max_output_tokens: int,
    ) -> None:
        self.name = model
        self._api_key = api_key
        self._base_url = base_url
        self._timeout_seconds = timeout_seconds
        self._client: genai.Client | None = None
        self._client_pid = 0
        self._client_lock = threading.Lock()
        # Built once, from settings only, and shared by every thread: the SDK copies it before
        # each request, and a system prompt goes into a copy of it (`_stream`).
        self._config = types.GenerateContentConfig(
            # Gemini stops there with finish reason MAX_TOKENS: a cut reply, still an answer.
            max_output_tokens=max_output_tokens,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            # Continuation would re-send requests behind our back; retries are the task's job.
            automatic_continuation=False,
        )

    def stream(self, *, system_prompt: str, turns: list[Turn]) -> Iterator[StreamItem]:
        try:
            yield from self._stream(system_prompt=system_prompt, turns=turns)
        except genai_errors.APIError as exc:
            raise self._api_error(exc) from exc
        except _TIMEOUTS as exc:
            raise AiError(
                f"Gemini did not answer within {self._timeout_seconds:g} s.", retryable=True
            ) from exc
        except _CONNECTION_FAILURES as exc:
            raise AiError(
                f"The connection to Gemini failed ({type(exc).__name__}).", retryable=True
            ) from exc
        except genai_errors.UnknownApiResponseError as exc:
            raise AiError("Gemini sent a response that could not be read.", retryable=True) from exc

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    # --- internals -------------------------------------------------------------

    def _stream(self, *, system_prompt: str, turns: list[Turn]) -> Iterator[StreamItem]:
        config = self._config
        # Gemini rejects empty text parts, so an empty system prompt is not sent at all.
        if system_prompt.strip():
            config = config.model_copy(update={"system_instruction": system_prompt})
        # Contents as dicts, a form the SDK documents: it validates them about five times
        # faster than its own objects.
        contents: list[types.ContentDict] = [
            {"role": turn.role, "parts": [{"text": turn.text}]}
            for turn in turns
            if turn.text.strip()  # an empty turn (e.g. a reply that never came) is a 400
        ]
        # The SDK hands back a generator; typed as one so it can be closed early.
        responses = cast(
            Generator[types.GenerateContentResponse, None, None],
            self._get_client().models.generate_content_stream(
                model=self.name, contents=contents, config=config
            ),
        )
        got_text = False
        finish_reason: str | None = None
        prompt_tokens: int | None = None
        output_tokens: int | None = None
        with contextlib.closing(responses):  # an early stop by the caller frees the connection
            for response in responses:
                feedback = response.prompt_feedback
                if feedback is not None and feedback.block_reason:
                    raise AiBlocked(_reason_code(feedback.block_reason))
                usage = response.usage_metadata
                if usage is not None:
                    prompt_tokens = usage.prompt_token_count or prompt_tokens
                    output_tokens = usage.candidates_token_count or output_tokens
                if not response.candidates:
                    continue
                candidate = response.candidates[0]
                parts = (candidate.content.parts if candidate.content else None) or []
                for part in parts:
                    if part.text and not part.thought:
                        got_text = True
                        yield TextDelta(part.text)
                if candidate.finish_reason:
                    finish_reason = _reason_code(candidate.finish_reason)
                    if finish_reason in BLOCKING_FINISH_REASONS:
                        raise AiBlocked(finish_reason)

        if finish_reason is None:
            raise AiError("Gemini's reply stream ended before the model finished.", retryable=True)
        if not got_text:
            raise AiEmptyReply()
        yield Finish(
            finish_reason=finish_reason, prompt_tokens=prompt_tokens, output_tokens=output_tokens
        )

    def _get_client(self) -> genai.Client:
        """One client per process, shared by every thread (its HTTP pool is thread-safe).

        A forked child builds its own: a connection pool must not cross a fork.
        """
        with self._client_lock:
            if self._client is None or self._client_pid != os.getpid():
                self._client = genai.Client(api_key=self._api_key, http_options=self._options())
                self._client_pid = os.getpid()
            return self._client

    def _options(self) -> types.HttpOptions:
        client_args: dict[str, Any] = {
            "limits": httpx2.Limits(
                max_connections=None, max_keepalive_connections=_MAX_KEEPALIVE_CONNECTIONS
            )
        }
        return types.HttpOptions(
            base_url=self._base_url or None,
            # Milliseconds; httpx applies it to connecting and to every read, so a stream
            # that stalls longer than this fails, while a long steady one does not.
            timeout=int(self._timeout_seconds * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
            client_args=client_args,
        )

    def _api_error(self, exc: genai_errors.APIError) -> AiError:
        status = int(exc.code or 0)
        retryable = status in RETRYABLE_STATUSES or status >= 500
        label = f"HTTP {status} {exc.status}" if exc.status else f"HTTP {status}"
        detail = self._scrub(f"Gemini answered {label}: {exc.message or 'no details'}")
        return AiError(detail, retryable=retryable, status=status or None)

    def _scrub(self, text: str) -> str:
        for secret in {self._api_key, self._api_key.strip()}:
            if secret:
                text = text.replace(secret, "[redacted]")
        return text


def _reason_code(value: Any) -> str:
    """`FinishReason.SAFETY` and plain strings alike -> "SAFETY"; prose -> "OTHER"."""
    name = str(getattr(value, "value", value))
    return name if _REASON_CODE.fullmatch(name) else "OTHER"
