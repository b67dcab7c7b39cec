"""Which AI model answers: Gemini when GEMINI_API_KEY is set, else the offline stand-in."""

from __future__ import annotations

import threading

from django.conf import settings

from chatrooms.ai.base import AiModel
from chatrooms.ai.gemini import GeminiModel
from chatrooms.ai.offline import OfflineModel

_lock = threading.Lock()
_cached: tuple[tuple[object, ...], AiModel] | None = None


def _settings_key() -> tuple[object, ...]:
    return (
        settings.GEMINI_API_KEY,
        settings.GEMINI_MODEL,
        settings.GEMINI_BASE_URL,
        settings.GEMINI_TIMEOUT_SECONDS,
        settings.AI_MAX_OUTPUT_TOKENS,
        settings.OFFLINE_MODEL_CHUNK_DELAY_MS,
    )


def get_model() -> AiModel:
    """The model for this process, built once and shared by every thread.

    Built again when the settings it depends on change (tests override them), so the one
    HTTP client is reused for as long as the configuration holds. With a key set only
    Gemini is ever used: a Gemini failure is a failure, never a silent offline answer.
    """
    global _cached
    key = _settings_key()
    with _lock:
        if _cached is None or _cached[0] != key:
            _cached = (key, _build())
        return _cached[1]


def _build() -> AiModel:
    if settings.GEMINI_API_KEY:
        return GeminiModel(
            api_key=settings.GEMINI_API_KEY,
            model=settings.GEMINI_MODEL,
            base_url=settings.GEMINI_BASE_URL,
            timeout_seconds=settings.GEMINI_TIMEOUT_SECONDS,
            max_output_tokens=settings.AI_MAX_OUTPUT_TOKENS,
        )
    return OfflineModel()
