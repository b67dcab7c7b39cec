"""The AI model as the rest of the project sees it: a small protocol and its errors.

Implementations: `chatrooms.ai.gemini` (google-genai) and `chatrooms.ai.offline`
(a labelled development stand-in). `chatrooms.ai.registry.get_model()` picks one from settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class Turn:
    """One message of the history, as the model receives it."""

    role: Literal["user", "model"]
    text: str


@dataclass(frozen=True)
class TextDelta:
    """A chunk of generated text."""

    text: str


@dataclass(frozen=True)
class Finish:
    """The last item of a stream: why it ended and what it cost."""

    finish_reason: str  # "STOP", "MAX_TOKENS", "SAFETY", ... as the model reports it
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    tokens_estimated: bool = False  # counted by us, not reported by the model


StreamItem = TextDelta | Finish


class AiError(Exception):
    """A call to the model failed. `retryable` for 429, 5xx and timeouts.

    `detail` says what went wrong, for the logs: it may quote the vendor's answer, so it is
    never shown to a user (a failed reply says why in our own words)."""

    code = "ai_error"

    def __init__(self, detail: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable
        self.status = status


class AiEmptyReply(AiError):
    """The model finished without any text."""

    code = "empty_reply"

    def __init__(self, detail: str = "The model returned an empty reply.") -> None:
        super().__init__(detail, retryable=False)


class AiBlocked(Exception):
    """The prompt or the reply was blocked by the model's safety filters."""

    code = "blocked"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AiModel(Protocol):
    name: str
    """Shown in logs and stored on each reply; the offline model says so in its name."""

    def stream(self, *, system_prompt: str, turns: list[Turn]) -> Iterator[StreamItem]:
        """Yield TextDelta items, then exactly one Finish. Raise AiError or AiBlocked."""
        ...

    def count_tokens(self, text: str) -> int:
        """An estimate, used to fit the history into AI_CONTEXT_TOKENS without a network call."""
        ...
