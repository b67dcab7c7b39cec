"""Concurrent tries against one code, with real transactions on real PostgreSQL."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import OneTimeCode, User
from accounts.tests.helpers import post, send_code, wrong_code

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+919876543210"


def in_parallel(count, request):
    """Runs `request(client)` in `count` threads released together; their responses."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(index):
        try:
            barrier.wait()
            results[index] = request(APIClient())
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


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
