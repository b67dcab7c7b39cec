"""Login and change-password, right or wrong, each cost a full password hash: limited per
account and per client network each minute (`accounts.password_rate`)."""

import pytest

from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.helpers import bearer, login_with_password, post

pytestmark = pytest.mark.django_db

PHONE = "+919876543210"


def login(client, phone=PHONE, ip="198.51.100.7"):
    body = {"phone": phone, "password": DEFAULT_PASSWORD}
    return post(client, "/api/auth/login", body, REMOTE_ADDR=ip)


def assert_rate_limited(response, retry_after):
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "password_rate_limited"
    assert response["Retry-After"] == str(retry_after)
    assert response.json()["error"]["details"] == {"retry_after": retry_after}


def test_right_passwords_for_one_account_are_limited_to_five_a_minute(api_client, clock):
    UserFactory(phone=PHONE)
    clock.shift(15)  # 10:00:15
    for n in range(5):  # from five networks: the account's own limit
        assert login(api_client, ip=f"192.0.2.{n}").status_code == 200
    assert_rate_limited(login(api_client, ip="192.0.2.9"), 45)
    clock.shift(45)
    assert login(api_client).status_code == 200


def test_one_network_is_limited_over_many_accounts(api_client, clock, settings):
    settings.PASSWORD_CHECKS_PER_IP_PER_MINUTE = 3  # 30 by default; each check costs a hash
    phones = [f"+9198765430{n:02d}" for n in range(4)]
    for phone in phones:
        UserFactory(phone=phone)
    for phone in phones[:3]:
        assert login(api_client, phone=phone).status_code == 200
    assert_rate_limited(login(api_client, phone=phones[3]), 60)
    assert login(api_client, phone=phones[3], ip="203.0.113.5").status_code == 200


def test_change_password_counts_with_the_accounts_logins(api_client, clock):
    UserFactory(phone=PHONE)
    access = login_with_password(api_client, PHONE, DEFAULT_PASSWORD)["access"]
    passwords = [f"plum-Orbit-{n}-lantern" for n in range(8, 12)]
    old = DEFAULT_PASSWORD
    for new in passwords:  # logins and changes: five checks in all
        changed = post(
            api_client,
            "/api/auth/change-password",
            {"old_password": old, "new_password": new},
            **bearer(access),
        )
        assert changed.status_code == 200, changed.json()
        access, old = changed.json()["access"], new
    refused = post(
        api_client,
        "/api/auth/change-password",
        {"old_password": old, "new_password": "plum-Orbit-99-lantern"},
        **bearer(access),
    )
    assert_rate_limited(refused, 60)
    assert_rate_limited(login(api_client), 60)


def test_with_redis_down_logins_still_work(api_client, clock, dead_redis):
    UserFactory(phone=PHONE)
    for _ in range(7):
        assert login(api_client).status_code == 200
