"""login with phone and password."""

import time

import pytest

from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.helpers import bearer, post

pytestmark = pytest.mark.django_db

PHONE = "+919876543210"


def login(client, phone=PHONE, password=DEFAULT_PASSWORD):
    return post(client, "/api/auth/login", {"phone": phone, "password": password})


def test_the_right_password_gives_a_working_pair_and_the_user(api_client):
    user = UserFactory(phone=PHONE)
    response = login(api_client)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh", "user"}
    assert body["user"]["id"] == user.pk
    assert api_client.get("/api/user/me", **bearer(body["access"])).status_code == 200
    user.refresh_from_db()
    assert user.last_login is not None


def test_any_phone_format_logs_in(api_client):
    UserFactory(phone=PHONE)
    assert login(api_client, phone="98765 43210").status_code == 200
    assert login(api_client, phone="+91 (98765) 432-10").status_code == 200


def test_wrong_password_unknown_phone_and_no_password_answer_the_same(api_client):
    UserFactory(phone=PHONE)
    UserFactory(phone="+919876543211", no_password=True)
    wrong_password = login(api_client, password="Not-the-password-9")
    unknown_phone = login(api_client, phone="+919876543299")
    no_password = login(api_client, phone="+919876543211")
    for response in (wrong_password, unknown_phone, no_password):
        assert response.status_code == 401
        assert response.json() == wrong_password.json()
        assert response.json()["error"]["code"] == "invalid_credentials"


def test_an_unknown_phone_takes_as_long_as_a_wrong_password(api_client):
    UserFactory(phone=PHONE)

    def duration(**kwargs):
        started = time.perf_counter()
        login(api_client, **kwargs)
        return time.perf_counter() - started

    wrong = min(duration(password="Not-the-password-9") for _ in range(3))
    unknown = min(duration(phone="+919876543299") for _ in range(3))
    # The password hasher (hundreds of ms) runs in both cases.
    assert unknown > wrong / 3


def test_a_disabled_account_is_refused_after_the_right_password(api_client):
    UserFactory(phone=PHONE, is_active=False)
    assert login(api_client).json()["error"]["code"] == "account_disabled"
    assert login(api_client, password="nope-Nope-9").json()["error"]["code"] == (
        "invalid_credentials"
    )


def test_missing_fields_are_validation_errors(api_client):
    response = post(api_client, "/api/auth/login", {})
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]["fields"]) == {"phone", "password"}
