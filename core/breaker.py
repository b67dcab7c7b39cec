"""When to stop trying a dependency that failed, and when to try it again: for callers that
have another way to answer (the event loop's answers hand a request to Django)."""

from __future__ import annotations

import time
from collections.abc import Callable


class Breaker:
    """Lets every call through until `failed()`. Then none for `pause_seconds`; after that,
    one call per pause, the trial, while the others still go their other way: a success
    closes it, a failure starts another pause. A trial that never reports (cancelled, or
    ended by something that is neither) holds nothing: the next one comes a pause later.

    For the callers of one event loop: the check and its update are not atomic across
    threads (two threads could both take a trial, which does no harm)."""

    def __init__(
        self, pause_seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.pause_seconds = pause_seconds
        self._clock = clock
        self._next_try_at: float | None = None  # None: closed
        self._failed_at = float("-inf")

    def allows(self) -> bool:
        """Whether to try now; True at most once a pause while open (the trial)."""
        if self._next_try_at is None:
            return True
        now = self._clock()
        if now < self._next_try_at:
            return False
        self._next_try_at = now + self.pause_seconds
        return True

    def succeeded(self) -> None:
        self._next_try_at = None

    def failed(self) -> None:
        self._failed_at = self._clock()
        self._next_try_at = self._failed_at + self.pause_seconds

    def failed_since(self, instant: float) -> bool:
        """Whether a failure was noted after `instant` (a reading of the same clock)."""
        return self._failed_at > instant
