"""The pluggable delivery function and whether the code appears in responses and logs."""

import logging

import pytest

from accounts.otp_delivery import log_delivery
from accounts.tests.factories import UserFactory
from accounts.tests.helpers import post, send_code

PHONE = "+919876543210"


@pytest.mark.django_db(transaction=True)
def test_the_backend_receives_the_code_the_client_can_verify(api_client, outbox, settings):
    settings.OTP_RETURN_IN_RESPONSE = False
    sent = send_code(api_client, PHONE)
    assert sent.status_code == 200
    assert "otp" not in sent.json()
    [delivery] = outbox.deliveries
    assert (delivery.phone, delivery.purpose) == (PHONE, "login")
    verified = post(api_client, "/api/auth/verify-otp", {"phone": PHONE, "otp": delivery.code})
    assert verified.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_forgot_password_delivers_only_to_existing_accounts(api_client, outbox):
    UserFactory(phone=PHONE)
    post(api_client, "/api/auth/forgot-password", {"phone": PHONE})
    post(api_client, "/api/auth/forgot-password", {"phone": "+919876543299"})
    assert [(d.phone, d.purpose) for d in outbox.deliveries] == [(PHONE, "password_reset")]


@pytest.mark.django_db(transaction=True)
def test_a_refused_send_delivers_nothing(api_client, outbox):
    send_code(api_client, PHONE)
    assert send_code(api_client, PHONE).status_code == 429
    assert len(outbox.deliveries) == 1


@pytest.mark.parametrize("debug", [False, True])
def test_the_log_backend_never_logs_the_code(caplog, settings, debug):
    settings.DEBUG = debug
    with caplog.at_level(logging.INFO, logger="accounts.otp_delivery"):
        log_delivery(phone=PHONE, code="482913", purpose="login")
    assert "482913" not in caplog.text
    assert PHONE not in caplog.text
    assert "3210" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_the_default_backend_logs_without_the_code(api_client, caplog, settings):
    settings.DEBUG = False
    settings.OTP_DELIVERY_BACKEND = "accounts.otp_delivery.log_delivery"
    with caplog.at_level(logging.DEBUG):
        code = send_code(api_client, PHONE).json()["otp"]
    assert "OTP sent to" in caplog.text
    assert code not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_failing_backend_is_logged_not_a_server_error(api_client, caplog, settings):
    settings.OTP_DELIVERY_BACKEND = "accounts.tests.helpers.failing_delivery"
    with caplog.at_level(logging.ERROR):
        response = send_code(api_client, PHONE)
    assert response.status_code == 200
    assert "SMS provider unreachable" in caplog.text
    assert response.json()["otp"] not in caplog.text
