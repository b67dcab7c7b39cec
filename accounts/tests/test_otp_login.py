"""send-otp and verify-otp: the OTP rules of the contract, over HTTP."""

import datetime as dt

import pytest

from accounts.models import User
from accounts.tests.factories import UserFactory
from accounts.tests.helpers import bearer, login_with_code, post, send_code, wrong_code

pytestmark = pytest.mark.django_db

PHONE = "+919876543210"


def verify(client, code, phone=PHONE):
    return post(client, "/api/auth/verify-otp", {"phone": phone, "otp": code})


def test_first_code_login_creates_the_account_and_later_ones_do_not(api_client):
    sent = send_code(api_client, PHONE)
    assert sent.status_code == 200
    body = sent.json()
    assert set(body) == {"detail", "otp", "expires_in"}
    assert body["expires_in"] == 300
    assert len(body["otp"]) == 6 and body["otp"].isdigit()

    first = verify(api_client, body["otp"])
    assert first.status_code == 200
    assert first.json()["created"] is True
    assert first.json()["user"]["phone"] == PHONE
    assert first.json()["user"]["has_password"] is False
    user = User.objects.get(phone=PHONE)
    assert user.phone_verified_at is not None

    me = api_client.get("/api/user/me", **bearer(first.json()["access"]))
    assert me.status_code == 200
    assert me.json()["id"] == user.pk


def test_a_returning_user_gets_created_false(api_client, clock):
    assert login_with_code(api_client, PHONE)["created"] is True
    clock.shift(61)
    again = login_with_code(api_client, PHONE)
    assert again["created"] is False
    assert User.objects.filter(phone=PHONE).count() == 1


def test_an_existing_verified_account_logs_in_with_created_false(api_client):
    user = UserFactory(phone=PHONE)
    answer = login_with_code(api_client, PHONE)
    assert answer["created"] is False
    assert answer["user"]["id"] == user.pk


def test_a_wrong_code_is_otp_invalid_and_the_right_one_still_works(api_client):
    code = send_code(api_client, PHONE).json()["otp"]
    wrong = verify(api_client, wrong_code(code))
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "otp_invalid"
    assert verify(api_client, code).status_code == 200


def test_a_code_works_once(api_client):
    code = send_code(api_client, PHONE).json()["otp"]
    assert verify(api_client, code).status_code == 200
    reused = verify(api_client, code)
    assert reused.status_code == 400
    assert reused.json()["error"]["code"] == "otp_expired"


def test_a_code_expires_after_five_minutes(api_client, clock):
    code = send_code(api_client, PHONE).json()["otp"]
    clock.shift(dt.timedelta(seconds=300))
    late = verify(api_client, code)
    assert late.status_code == 400
    assert late.json()["error"]["code"] == "otp_expired"


def test_a_code_still_works_just_before_it_expires(api_client, clock):
    code = send_code(api_client, PHONE).json()["otp"]
    clock.shift(dt.timedelta(seconds=299))
    assert verify(api_client, code).status_code == 200


def test_verify_without_any_code_sent_is_otp_expired(api_client):
    response = verify(api_client, "123456")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "otp_expired"
    assert not User.objects.filter(phone=PHONE).exists()


def test_the_fifth_wrong_try_burns_the_code_until_a_new_one_is_sent(api_client, clock):
    code = send_code(api_client, PHONE).json()["otp"]
    codes = [verify(api_client, wrong_code(code)).json()["error"]["code"] for _ in range(5)]
    assert codes == ["otp_invalid"] * 4 + ["otp_attempts_exceeded"]

    # The right code no longer works, and every later try is 429.
    for attempt in (code, wrong_code(code)):
        refused = verify(api_client, attempt)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "otp_attempts_exceeded"
    clock.shift(dt.timedelta(minutes=10))
    assert verify(api_client, code).status_code == 429

    clock.shift(61)
    fresh = send_code(api_client, PHONE).json()["otp"]
    assert verify(api_client, fresh).status_code == 200


def test_a_new_code_retires_the_previous_one(api_client, clock):
    old = send_code(api_client, PHONE).json()["otp"]
    clock.shift(61)
    new = send_code(api_client, PHONE).json()["otp"]
    if old != new:
        assert verify(api_client, old).json()["error"]["code"] == "otp_invalid"
    assert verify(api_client, new).status_code == 200


def test_resend_within_the_cooldown_is_429_with_retry_after(api_client, clock):
    assert send_code(api_client, PHONE).status_code == 200
    clock.shift(20)
    refused = send_code(api_client, PHONE)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "otp_resend_too_soon"
    assert refused["Retry-After"] == "40"
    assert refused.json()["error"]["details"] == {"retry_after": 40}

    clock.shift(40)
    assert send_code(api_client, PHONE).status_code == 200


def test_the_cooldown_is_per_purpose(api_client):
    UserFactory(phone=PHONE)
    assert send_code(api_client, PHONE).status_code == 200
    forgot = post(api_client, "/api/auth/forgot-password", {"phone": PHONE})
    assert forgot.status_code == 200


def test_more_than_five_sends_per_phone_per_hour_is_refused(api_client, clock):
    for _ in range(5):
        assert send_code(api_client, PHONE).status_code == 200
        clock.shift(61)
    refused = send_code(api_client, PHONE)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "otp_send_limit"
    # The first send was 5 * 61 s ago; it leaves the one-hour window in 3600 - 305 s.
    assert refused["Retry-After"] == str(3600 - 305)
    assert refused.json()["error"]["details"]["retry_after"] == 3600 - 305

    clock.shift(3600 - 305)
    assert send_code(api_client, PHONE).status_code == 200


def test_the_phone_limit_counts_every_purpose(api_client, clock):
    UserFactory(phone=PHONE)
    for _ in range(3):
        assert send_code(api_client, PHONE).status_code == 200
        clock.shift(61)
    for _ in range(2):
        assert post(api_client, "/api/auth/forgot-password", {"phone": PHONE}).status_code == 200
        clock.shift(61)
    assert send_code(api_client, PHONE).json()["error"]["code"] == "otp_send_limit"


def test_more_than_twenty_sends_per_ip_per_hour_is_refused(api_client):
    phones = [f"+91987654{n:04d}" for n in range(21)]
    for phone in phones[:20]:
        assert send_code(api_client, phone).status_code == 200
    refused = send_code(api_client, phones[20])
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "otp_send_limit"
    assert int(refused["Retry-After"]) > 3500
    # Another client is not affected.
    other = send_code(api_client, phones[20], REMOTE_ADDR="203.0.113.9")
    assert other.status_code == 200


def test_a_refused_send_stores_nothing(api_client):
    first = send_code(api_client, PHONE).json()["otp"]
    assert send_code(api_client, PHONE).status_code == 429
    # The first code is still the active one.
    assert verify(api_client, first).status_code == 200


def test_a_disabled_account_cannot_log_in_with_a_code(api_client):
    UserFactory(phone=PHONE, is_active=False)
    code = send_code(api_client, PHONE).json()["otp"]
    refused = verify(api_client, code)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "account_disabled"
    assert "access" not in refused.json()


@pytest.mark.parametrize("otp", ["12345", "1234567", "abcdef", "", " 12 34 "])
def test_a_code_that_is_not_six_digits_is_a_validation_error(api_client, otp):
    send_code(api_client, PHONE)
    response = verify(api_client, otp)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "otp" in response.json()["error"]["details"]["fields"]
