"""`core.breaker.Breaker`: a pause after a failure, then one trial a pause."""

from __future__ import annotations

from core.breaker import Breaker

PAUSE = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _failed_breaker() -> tuple[Breaker, Clock]:
    clock = Clock()
    breaker = Breaker(PAUSE, clock=clock)
    breaker.failed()
    return breaker, clock


def test_it_lets_every_call_through_until_a_failure() -> None:
    breaker = Breaker(PAUSE, clock=Clock())
    assert all(breaker.allows() for _ in range(5))
    breaker.failed()
    assert not breaker.allows()


def test_after_the_pause_one_call_tries_while_the_others_wait_for_it() -> None:
    breaker, clock = _failed_breaker()
    clock.now += PAUSE - 0.1
    assert not breaker.allows()
    clock.now += 0.1
    assert [breaker.allows() for _ in range(4)] == [True, False, False, False]
    breaker.succeeded()
    assert all(breaker.allows() for _ in range(4))


def test_a_failed_trial_starts_another_pause() -> None:
    breaker, clock = _failed_breaker()
    clock.now += PAUSE
    assert breaker.allows()
    clock.now += 1
    breaker.failed()
    clock.now += PAUSE - 0.1
    assert not breaker.allows()
    clock.now += 0.1
    assert breaker.allows()


def test_a_trial_that_never_reports_holds_nothing_past_a_pause() -> None:
    breaker, clock = _failed_breaker()
    clock.now += PAUSE
    assert breaker.allows()  # never reports
    assert not breaker.allows()
    clock.now += PAUSE
    assert breaker.allows()


def test_it_tells_a_failure_after_an_instant() -> None:
    breaker = Breaker(PAUSE, clock=Clock())
    assert not breaker.failed_since(0.0)
    breaker.failed()
    assert breaker.failed_since(99.0) and not breaker.failed_since(100.0)
