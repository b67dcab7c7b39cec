"""`core.breaker.Breaker`: a pause after a failure, then one trial a pause."""

from __future__ import annotations

import time

from core.breaker import Breaker

PAUSE = 0.1


def test_it_lets_every_call_through_until_a_failure() -> None:
    breaker = Breaker(PAUSE)
    assert all(breaker.allows() for _ in range(5))
    breaker.failed()
    assert not breaker.allows()


def test_after_the_pause_one_call_tries_while_the_others_wait_for_it() -> None:
    breaker = Breaker(PAUSE)
    breaker.failed()
    time.sleep(PAUSE * 1.2)
    assert [breaker.allows() for _ in range(4)] == [True, False, False, False]
    breaker.succeeded()
    assert all(breaker.allows() for _ in range(4))


def test_a_failed_trial_starts_another_pause() -> None:
    breaker = Breaker(PAUSE)
    breaker.failed()
    time.sleep(PAUSE * 1.2)
    assert breaker.allows()
    breaker.failed()
    assert not breaker.allows()
    time.sleep(PAUSE * 1.2)
    assert breaker.allows()


def test_a_trial_that_never_reports_holds_nothing_past_a_pause() -> None:
    breaker = Breaker(PAUSE)
    breaker.failed()
    time.sleep(PAUSE * 1.2)
    assert breaker.allows()  # never reports
    assert not breaker.allows()
    time.sleep(PAUSE * 1.2)
    assert breaker.allows()
