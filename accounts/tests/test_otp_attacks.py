"""The OTP limits that hold against guessing and against locking others out, each shown by
performing the attack over HTTP (`accounts.otp_scopes`, `accounts.login_throttle`)."""

import datetime as dt

import pytest

from accounts.models import KnownNetwork
from accounts.tests.factories import UserFactory
from accounts.tests.helpers import post, send_code, wrong_code

pytestmark = pytest.mark.django_db

VICTIM = "+919876543210"
HOME = "203.0.113.10"  # a network the victim logged in from
ATTACKER = "198.51.100.66"


def verify(client, phone, code, ip=ATTACKER):
    return post(client, "/api/auth/verify-otp", {"phone": phone, "otp": code}, REMOTE_ADDR=ip)


def sent_code(client, phone, ip=ATTACKER):
    response = send_code(client, phone, REMOTE_ADDR=ip)
    assert response.status_code == 200, response.json()
    return response.json()["otp"]


def error_of(response):
    return response.status_code, response.json()["error"]["code"]


def guess_codes(client, clock, phone, wrong_tries, ip=ATTACKER):
    """Ask for codes and try wrong ones, five per code (the fifth burns it), a new code
    every 61 s and a new hour after each five sends; the answers' error codes."""
    answers: list[str] = []
    sends = 0
    while len(answers) < wrong_tries:
        if sends and sends % 5 == 0:
            clock.shift(dt.timedelta(hours=1))
        code = sent_code(client, phone, ip=ip)
        sends += 1
        for _ in range(min(5, wrong_tries - len(answers))):
            answers.append(error_of(verify(client, phone, wrong_code(code), ip=ip))[1])
        clock.shift(61)
    return answers


def home_login(client, clock, phone=VICTIM):
    """The owner logged in from HOME an hour ago (that code was a stranger's send then)."""
    assert verify(client, phone, sent_code(client, phone, ip=HOME), ip=HOME).status_code == 200
    clock.shift(dt.timedelta(hours=1))


def test_wrong_codes_spread_over_codes_and_hours_lock_code_login_after_thirty(api_client, clock):
    # Five codes an hour with five tries each made 25 guesses an hour, without end.
    answers = guess_codes(api_client, clock, VICTIM, wrong_tries=30)
    assert answers.count("otp_invalid") + answers.count("otp_attempts_exceeded") == 30

    # Locked for an hour after the last wrong code: no code is sent or checked, not even
    # the right one.
    locked = send_code(api_client, VICTIM, REMOTE_ADDR=ATTACKER)
    assert error_of(locked) == (429, "otp_locked")
    assert locked["Retry-After"] == str(3600 - 61)
    assert locked.json()["error"]["details"] == {"retry_after": 3600 - 61}

    clock.shift(3600)
    code = sent_code(api_client, VICTIM)
    assert error_of(verify(api_client, VICTIM, wrong_code(code))) == (400, "otp_invalid")
    # The streak did not start again: one wrong code after the wait locks at once.
    assert error_of(verify(api_client, VICTIM, code)) == (429, "otp_locked")

    clock.shift(3600)
    code = sent_code(api_client, VICTIM)
    assert verify(api_client, VICTIM, code).status_code == 200
    clock.shift(61)
    # The right code ended the streak: wrong ones are counted from zero again.
    code = sent_code(api_client, VICTIM)
    assert error_of(verify(api_client, VICTIM, wrong_code(code))) == (400, "otp_invalid")
    assert verify(api_client, VICTIM, code).status_code == 200


def test_the_lock_counts_reset_codes_apart_from_login_codes(api_client, clock):
    UserFactory(phone=VICTIM)
    guess_codes(api_client, clock, VICTIM, wrong_tries=30)
    assert error_of(send_code(api_client, VICTIM, REMOTE_ADDR=ATTACKER)) == (429, "otp_locked")
    forgot = post(api_client, "/api/auth/forgot-password", {"phone": VICTIM}, REMOTE_ADDR=ATTACKER)
    assert forgot.status_code == 200


def test_one_client_guessing_across_many_numbers_is_stopped_after_thirty_wrong_codes(
    api_client, clock
):
    clock.shift(20 * 60)  # 10:20: the window ends at 11:00
    numbers = [f"+9198765400{n:02d}" for n in range(7)]
    codes = {phone: sent_code(api_client, phone, ip=f"192.0.2.{n}") for n, phone in
             enumerate(numbers)}  # fmt: skip
    wrong = 0
    for phone in numbers[:6]:
        for _ in range(5):
            verify(api_client, phone, wrong_code(codes[phone]))
            wrong += 1
    assert wrong == 30
    # The 31st try from that client is refused before any code is looked at.
    refused = verify(api_client, numbers[6], codes[numbers[6]])
    assert error_of(refused) == (429, "otp_network_attempts_exceeded")
    assert refused["Retry-After"] == str(40 * 60)
    reset = post(
        api_client,
        "/api/auth/reset-password",
        {"phone": numbers[6], "otp": "123456", "new_password": "plum-Orbit-8-lantern"},
        REMOTE_ADDR=ATTACKER,
    )
    assert error_of(reset) == (429, "otp_network_attempts_exceeded")
    # Another client is not affected, and the next hour the attacker may try again.
    assert verify(api_client, numbers[6], codes[numbers[6]], ip="192.0.2.99").status_code == 200
    clock.shift(40 * 60)
    # (the burned code's own answer, no longer the client's limit)
    assert error_of(verify(api_client, numbers[0], "000000")) == (429, "otp_attempts_exceeded")


def test_right_codes_do_not_use_up_the_clients_budget(api_client, clock):
    numbers = [f"+9198765401{n:02d}" for n in range(8)]
    codes = {phone: sent_code(api_client, phone, ip=f"192.0.2.{n}") for n, phone in
             enumerate(numbers)}  # fmt: skip
    for phone in numbers[:6]:  # 29 wrong codes, and six right ones in between
        for _ in range(4 if phone == numbers[0] else 5):
            verify(api_client, phone, wrong_code(codes[phone]))
    assert verify(api_client, numbers[0], codes[numbers[0]]).status_code == 200
    assert error_of(verify(api_client, numbers[6], wrong_code(codes[numbers[6]])))[1] == (
        "otp_invalid"
    )
    assert error_of(verify(api_client, numbers[7], codes[numbers[7]]))[1] == (
        "otp_network_attempts_exceeded"
    )


def test_the_service_stops_sending_codes_at_its_hourly_cap(api_client, clock, settings):
    settings.OTP_MAX_SENDS_PER_HOUR = 3
    UserFactory(phone="+919876540201")
    for n in range(3):
        sent_code(api_client, f"+91987654020{n}", ip=f"192.0.2.{n}")
        clock.shift(60)
    refused = send_code(api_client, "+919876540209", REMOTE_ADDR="192.0.2.9")
    assert error_of(refused) == (503, "otp_sending_paused")
    assert refused["Retry-After"] == str(3600 - 180)
    # forgot-password for a number with or without an account answers alike: the unsent
    # send of an unknown number counts like a real one.
    for phone in ("+919876540201", "+919876540208"):
        forgot = post(api_client, "/api/auth/forgot-password", {"phone": phone},
                      REMOTE_ADDR="192.0.2.8")  # fmt: skip
        assert error_of(forgot) == (503, "otp_sending_paused")
    clock.shift(3600 - 180)
    assert send_code(api_client, "+919876540209", REMOTE_ADDR="192.0.2.9").status_code == 200


def test_a_stranger_cannot_spend_the_owners_sends_or_lock_the_owners_code_login(api_client, clock):
    home_login(api_client, clock)
    # The attacker spends every send the number has for strangers this hour, and guesses
    # until code checks are locked for strangers.
    guess_codes(api_client, clock, VICTIM, wrong_tries=30)
    assert error_of(send_code(api_client, VICTIM, REMOTE_ADDR=ATTACKER))[1] == "otp_locked"
    # Back home, the owner is asked for nothing more than usual.
    code = sent_code(api_client, VICTIM, ip=HOME)
    assert verify(api_client, VICTIM, code, ip=HOME).status_code == 200


def test_a_strangers_send_does_not_hold_back_the_owners_next_code(api_client, clock):
    home_login(api_client, clock)
    for _ in range(4):
        sent_code(api_client, VICTIM)
        clock.shift(61)
    sent_code(api_client, VICTIM)  # the strangers' fifth send this hour, a second ago
    clock.shift(1)
    stranger = send_code(api_client, VICTIM, REMOTE_ADDR=ATTACKER)
    assert error_of(stranger)[1] == "otp_resend_too_soon"
    # The strangers' cooldown does not hold back the owner's send, nor does the code it
    # retired matter: the owner's new code is the newest.
    code = sent_code(api_client, VICTIM, ip=HOME)
    assert verify(api_client, VICTIM, code, ip=HOME).status_code == 200
    clock.shift(61)
    assert error_of(send_code(api_client, VICTIM, REMOTE_ADDR=ATTACKER))[1] == "otp_send_limit"
    code = sent_code(api_client, VICTIM, ip=HOME)  # the owner's own hourly budget
    assert verify(api_client, VICTIM, code, ip=HOME).status_code == 200


def test_a_number_that_never_logged_in_shares_the_strangers_limits(api_client, clock):
    # The trade-off the README states: a first login has no network of its own yet.
    guess_codes(api_client, clock, VICTIM, wrong_tries=30)
    assert error_of(send_code(api_client, VICTIM, REMOTE_ADDR=HOME))[1] == "otp_locked"


def test_the_known_networks_of_an_account_are_bounded(api_client, clock):
    for n in range(25):
        ip = f"192.0.2.{n}"
        code = sent_code(api_client, VICTIM, ip=ip)
        assert verify(api_client, VICTIM, code, ip=ip).status_code == 200
        clock.shift(dt.timedelta(hours=1))
    kept = set(KnownNetwork.objects.values_list("network", flat=True))
    assert kept == {f"192.0.2.{n}/32" for n in range(5, 25)}
