"""One-time codes sent, counted by purpose once stored; a refused send is not counted."""

import pytest

from accounts.tests.factories import UserFactory
from accounts.tests.helpers import post, send_code
from testing.metrics import metric_value

pytestmark = pytest.mark.django_db

PHONE = "+919876543210"


def _sends() -> tuple[float, float]:
    return (
        metric_value("gemini_otp_sends_total", purpose="login"),
        metric_value("gemini_otp_sends_total", purpose="password_reset"),
    )


def test_otp_sends_are_counted_by_purpose(api_client, django_capture_on_commit_callbacks):
    UserFactory(phone=PHONE)
    login, reset = _sends()

    with django_capture_on_commit_callbacks(execute=True):
        assert send_code(api_client, PHONE).status_code == 200
        assert send_code(api_client, PHONE).status_code == 429  # too soon: nothing sent
        assert (
            post(api_client, "/api/auth/forgot-password", {"phone": "+919876500000"}).status_code
            == 200
        )

    assert _sends() == (login + 1, reset + 1)
