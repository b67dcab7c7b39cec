"""The admin's sign-in is under the API login's brute-force limits, one budget for both."""

from __future__ import annotations

import logging

import pytest
from django.test import Client

from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.helpers import post

pytestmark = pytest.mark.django_db

PHONE = "+919876543210"
WRONG = "Not-the-password-9"


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = 10
    settings.LOGIN_MAX_FAILURES_PER_IP_PER_HOUR = 50


@pytest.fixture
def staff():
    return UserFactory(phone=PHONE, is_staff=True, is_superuser=True)


def _sign_in(client: Client, password: str, phone: str = PHONE):
    return client.post("/admin/login/?next=/admin/", {"username": phone, "password": password})


def test_the_eleventh_admin_sign_in_is_refused_even_with_the_right_password(staff, clock):
    client = Client()
    for _ in range(10):
        assert b"Please enter the correct" in _sign_in(client, WRONG).content
    refused = _sign_in(client, DEFAULT_PASSWORD)
    assert refused.status_code == 200  # the form again, with the reason
    assert b"Too many failed sign-ins" in refused.content
    assert client.get("/admin/").status_code == 302  # not signed in


def test_admin_and_api_logins_share_one_budget(staff, api_client, clock):
    client = Client()
    for _ in range(5):
        _sign_in(client, WRONG)
    for _ in range(5):
        post(api_client, "/api/auth/login", {"phone": PHONE, "password": WRONG})
    api = post(api_client, "/api/auth/login", {"phone": PHONE, "password": DEFAULT_PASSWORD})
    assert api.status_code == 429
    assert b"Too many failed sign-ins" in _sign_in(client, DEFAULT_PASSWORD).content


def test_admin_sign_ins_are_logged_without_the_password_or_the_full_number(staff, caplog):
    client = Client()
    with caplog.at_level(logging.INFO, logger="accounts.admin_login"):
        _sign_in(client, WRONG)
        assert _sign_in(client, DEFAULT_PASSWORD).status_code == 302
    assert "Admin sign-in failed: +91******3210 from 127.0.0.1/32" in caplog.text
    assert f"Admin sign-in: user {staff.pk} from 127.0.0.1/32" in caplog.text
    for secret in (WRONG, DEFAULT_PASSWORD, PHONE, PHONE[3:]):
        assert secret not in caplog.text
