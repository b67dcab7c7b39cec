"""Concurrent tries against one code, with real transactions on real PostgreSQL."""

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from accounts.models import OneTimeCode, User
from accounts.services import password_change
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.helpers import bearer, login_with_password, post, send_code, wrong_code
from accounts.tokens import token_logout, token_refresh_rotate
from testing.concurrency import InThread, at_once

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+919876543210"


def in_parallel(count, request):
    """Runs `request(client)` in `count` threads released together; their responses."""
    return at_once([lambda: request(APIClient())] * count)


def test_two_concurrent_correct_codes_log_in_once(api_client):
    code = send_code(api_client, PHONE).json()["otp"]
    responses = in_parallel(
        6, lambda client: post(client, "/api/auth/verify-otp", {"phone": PHONE, "otp": code})
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [400] * 5
    assert User.objects.filter(phone=PHONE).count() == 1


def test_concurrent_wrong_tries_are_all_counted(api_client):
    code = send_code(api_client, PHONE).json()["otp"]
    bad = wrong_code(code)
    responses = in_parallel(
        8, lambda client: post(client, "/api/auth/verify-otp", {"phone": PHONE, "otp": bad})
    )
    codes = sorted(response.json()["error"]["code"] for response in responses)
    assert codes == ["otp_attempts_exceeded"] * 4 + ["otp_invalid"] * 4
    assert OneTimeCode.objects.get(phone=PHONE).attempts == 5


def test_concurrent_sends_respect_the_cooldown(api_client):
    responses = in_parallel(6, lambda client: send_code(client, PHONE))
    assert sorted(response.status_code for response in responses) == [200] + [429] * 5
    assert OneTimeCode.objects.filter(phone=PHONE).count() == 1


def test_concurrent_signups_make_one_account(api_client):
    responses = in_parallel(
        5, lambda client: post(client, "/api/auth/signup", {"phone": PHONE, "name": "A"})
    )
    assert sorted(response.status_code for response in responses) == [201] + [429] * 4
    assert User.objects.filter(phone=PHONE).count() == 1


# --- Refresh rotation against password changes ---------------------------------------------


def test_a_refresh_during_a_password_change_waits_and_is_then_refused():
    user = UserFactory()
    session = login_with_password(APIClient(), str(user.phone), DEFAULT_PASSWORD)
    with transaction.atomic():
        # The password change has begun: it holds the user's row...
        User.objects.select_for_update().get(pk=user.pk)
        refresh = InThread(
            lambda: post(APIClient(), "/api/auth/token/refresh", {"refresh": session["refresh"]})
        )
        refresh.wait_until_blocked()
        # ...and revokes the tokens while the refresh waits. With the refresh locking the
        # token first and the user second, the two transactions deadlocked here.
        password_change(
            user=user, old_password=DEFAULT_PASSWORD, new_password="New-pass-731", client_ip=None
        )
    response = refresh.join()
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"


def test_a_pair_rotated_just_before_a_password_change_is_revoked_by_it():
    user = UserFactory()
    session = login_with_password(APIClient(), str(user.phone), DEFAULT_PASSWORD)
    with transaction.atomic():
        rotated = token_refresh_rotate(raw=session["refresh"])
        change = InThread(
            lambda: post(
                APIClient(),
                "/api/auth/change-password",
                {"old_password": DEFAULT_PASSWORD, "new_password": "New-pass-731"},
                **bearer(session["access"]),
            )
        )
        change.wait_until_blocked()
    assert change.join().status_code == 200
    again = post(APIClient(), "/api/auth/token/refresh", {"refresh": rotated.refresh})
    assert again.status_code == 401


def test_a_refresh_during_a_logout_of_the_same_token_waits_and_is_then_refused():
    user = UserFactory()
    session = login_with_password(APIClient(), str(user.phone), DEFAULT_PASSWORD)
    with transaction.atomic():
        token_logout(user=user, raw=session["refresh"])
        refresh = InThread(
            lambda: post(APIClient(), "/api/auth/token/refresh", {"refresh": session["refresh"]})
        )
        refresh.wait_until_blocked()
    response = refresh.join()
    assert response.status_code == 401
