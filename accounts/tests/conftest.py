from __future__ import annotations

import pytest

from accounts.tests.factories import UserFactory
from accounts.tests.helpers import DeliveryOutbox


@pytest.fixture(autouse=True)
def _otp_settings(settings):
    """The contract's defaults, whatever the environment says, and codes in responses."""
    settings.OTP_RETURN_IN_RESPONSE = True
    settings.OTP_TTL_SECONDS = 300
    settings.OTP_MAX_ATTEMPTS = 5
    settings.OTP_RESEND_COOLDOWN_SECONDS = 60
    settings.OTP_MAX_SENDS_PER_PHONE_PER_HOUR = 5
    settings.OTP_MAX_SENDS_PER_IP_PER_HOUR = 20
    settings.OTP_MAX_CONSECUTIVE_FAILURES = 30
    settings.OTP_LOCKOUT_SECONDS = 3600
    settings.OTP_MAX_FAILURES_PER_IP_PER_HOUR = 30
    settings.OTP_MAX_SENDS_PER_HOUR = 1000
    settings.PASSWORD_CHECKS_PER_ACCOUNT_PER_MINUTE = 5
    settings.PASSWORD_CHECKS_PER_IP_PER_MINUTE = 30
    settings.TRUSTED_PROXIES = []


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def outbox(settings):
    """Codes as the delivery backend receives them. Deliveries happen after commit, so
    tests reading it need `django_db(transaction=True)`."""
    settings.OTP_DELIVERY_BACKEND = "accounts.tests.helpers.record_delivery"
    box = DeliveryOutbox()
    yield box
    box.close()


@pytest.fixture
def clock(time_machine):
    """Frozen time that tests move by hand."""
    time_machine.move_to("2030-01-15 10:00:00+00:00", tick=False)
    return time_machine
