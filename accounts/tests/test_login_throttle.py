"""Password login: wrong passwords are limited per number and per client network each hour."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.helpers import post
from testing.concurrency import at_once

pytestmark = pytest.mark.django_db

PHONE = "+919876543210"
UNKNOWN = "+919876543299"
WRONG = "Not-the-password-9"


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = 10
    settings.LOGIN_MAX_FAILURES_PER_IP_PER_HOUR = 50
    # The per-minute limit on password checks (test_password_rate.py) would come first.
    settings.PASSWORD_CHECKS_PER_ACCOUNT_PER_MINUTE = 1000
    settings.PASSWORD_CHECKS_PER_IP_PER_MINUTE = 1000


def login(client, phone=PHONE, password=DEFAULT_PASSWORD, **meta):
    return post(client, "/api/auth/login", {"phone": phone, "password": password}, **meta)


def fail(client, times, phone=PHONE, **meta):
    for _ in range(times):
        response = login(client, phone=phone, password=WRONG, **meta)
        assert response.json()["error"]["code"] == "invalid_credentials"


def assert_locked(response, retry_after):
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "login_attempts_exceeded"
    assert error["details"] == {"retry_after": retry_after}
    assert response["Retry-After"] == str(retry_after)


def test_the_eleventh_try_in_an_hour_is_refused_even_with_the_right_password(api_client, clock):
    UserFactory(phone=PHONE)
    clock.shift(15 * 60)  # 10:15: the window ends at 11:00
    fail(api_client, 10)
    # Locked: the right password gets the same answer as a wrong one, so guesses made now
    # cannot be told apart.
    right, wrong = login(api_client), login(api_client, password=WRONG)
    assert_locked(right, 45 * 60)
    assert right.json() == wrong.json()


def test_the_lock_ends_with_the_clock_hour(api_client, clock):
    UserFactory(phone=PHONE)
    clock.shift(59 * 60 + 30)  # 10:59:30
    fail(api_client, 10)
    assert_locked(login(api_client), 30)
    clock.shift(30)  # 11:00:00, a new window
    assert login(api_client).status_code == 200


def test_a_number_without_an_account_has_the_same_budget(api_client, settings, clock):
    settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = 3
    UserFactory(phone=PHONE)
    fail(api_client, 3)
    fail(api_client, 3, phone=UNKNOWN)
    known, unknown = login(api_client), login(api_client, phone=UNKNOWN)
    assert_locked(known, 3600)
    assert known.json() == unknown.json()
    assert known["Retry-After"] == unknown["Retry-After"]


def test_a_successful_login_clears_the_numbers_failures(api_client, settings, clock):
    settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = 3
    UserFactory(phone=PHONE)
    fail(api_client, 2)
    assert login(api_client).status_code == 200
    fail(api_client, 3)
    assert_locked(login(api_client), 3600)


def test_right_passwords_do_not_count(api_client, settings, clock):
    settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = 2
    settings.LOGIN_MAX_FAILURES_PER_IP_PER_HOUR = 2
    UserFactory(phone=PHONE)
    UserFactory(phone=UNKNOWN, unverified=True)
    for _ in range(3):
        assert login(api_client).status_code == 200
        # The right password of an unverified account is not a failure either.
        assert login(api_client, phone=UNKNOWN).status_code == 403
    fail(api_client, 2, phone=UNKNOWN)
    assert_locked(login(api_client, phone=UNKNOWN), 3600)


def test_failures_from_one_address_are_limited_across_numbers(api_client, settings, clock):
    settings.LOGIN_MAX_FAILURES_PER_IP_PER_HOUR = 3
    UserFactory(phone=PHONE)
    attacker = {"REMOTE_ADDR": "198.51.100.7"}
    for n in range(3):
        fail(api_client, 1, phone=f"+91987650000{n}", **attacker)
    assert_locked(login(api_client, **attacker), 3600)
    # Someone else, from another address, logs in to that number as usual.
    assert login(api_client, REMOTE_ADDR="203.0.113.9").status_code == 200


def test_ipv6_addresses_of_one_64_share_a_budget(api_client, settings, clock):
    settings.LOGIN_MAX_FAILURES_PER_IP_PER_HOUR = 3
    UserFactory(phone=PHONE)
    for host in ("::1", "::2", "::ab:cd"):
        fail(api_client, 1, phone=UNKNOWN, REMOTE_ADDR=f"2001:db8:1:2{host}")
    assert_locked(login(api_client, REMOTE_ADDR="2001:db8:1:2:ffff::9"), 3600)
    assert login(api_client, REMOTE_ADDR="2001:db8:1:3::1").status_code == 200


def test_clients_without_an_address_share_one_budget(api_client, settings, clock):
    settings.LOGIN_MAX_FAILURES_PER_IP_PER_HOUR = 3
    UserFactory(phone=PHONE)
    fail(api_client, 3, phone=UNKNOWN, REMOTE_ADDR="")
    assert_locked(login(api_client, REMOTE_ADDR=""), 3600)
    assert login(api_client, REMOTE_ADDR="203.0.113.9").status_code == 200


def test_a_bad_request_is_not_a_try(api_client):
    UserFactory(phone=PHONE)
    for _ in range(15):
        assert post(api_client, "/api/auth/login", {"phone": PHONE}).status_code == 400
    assert login(api_client).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_parallel_guesses_get_no_more_tries_than_the_limit(settings):
    settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = 4
    UserFactory(phone=PHONE)

    def guess() -> str:
        return login(APIClient(), password=WRONG).json()["error"]["code"]

    codes = at_once([guess] * 10)
    assert sorted(codes) == ["invalid_credentials"] * 4 + ["login_attempts_exceeded"] * 6


@pytest.mark.usefixtures("dead_redis")
def test_with_redis_down_wrong_passwords_are_still_limited(api_client, settings, clock):
    settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = 3
    settings.LOGIN_MAX_FAILURES_PER_IP_PER_HOUR = 5
    UserFactory(phone=PHONE)
    fail(api_client, 3)
    assert_locked(login(api_client), 3600)
    # And per client network, across numbers.
    fail(api_client, 2, phone=UNKNOWN)
    assert_locked(login(api_client, phone="+919876543298"), 3600)


def test_failures_survive_a_redis_that_restarts_empty(api_client, settings, clock):
    settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = 4
    UserFactory(phone=PHONE)
    fail(api_client, 2)
    cache.clear()  # Redis restarted without its data
    fail(api_client, 2)
    assert_locked(login(api_client), 3600)


def _change_password(client, access, old_password):
    body = {"old_password": old_password, "new_password": "Fresh-Orbit-8-lantern"}
    return post(client, "/api/auth/change-password", body, HTTP_AUTHORIZATION=f"Bearer {access}")


def test_a_stolen_access_token_cannot_guess_the_old_password_faster_than_the_login(
    api_client, clock
):
    UserFactory(phone=PHONE)
    clock.shift(15 * 60)
    access = login(api_client).json()["access"]  # the thief's copy
    for _ in range(10):
        response = _change_password(api_client, access, WRONG)
        assert response.json()["error"]["code"] == "password_incorrect"
    # The number's budget is spent: the right old password gets the refusal too, and so
    # does the login; an hour later the owner can change it.
    assert_locked(_change_password(api_client, access, DEFAULT_PASSWORD), 45 * 60)
    assert_locked(login(api_client), 45 * 60)
    clock.shift(45 * 60)
    access = login(api_client).json()["access"]  # the first one expired meanwhile
    assert _change_password(api_client, access, DEFAULT_PASSWORD).status_code == 200


def test_a_right_old_password_is_not_counted_as_a_failure(api_client, settings, clock):
    settings.LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR = 1
    UserFactory(phone=PHONE)
    access = login(api_client).json()["access"]
    assert _change_password(api_client, access, DEFAULT_PASSWORD).status_code == 200
    fail(api_client, 1)  # the one allowed failure is still there
