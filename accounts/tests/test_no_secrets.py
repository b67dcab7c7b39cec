"""No answer of a full account flow contains a password hash, an OTP or signup token hash,
or a signing key."""

import pytest
from django.conf import settings

from accounts.models import OneTimeCode, User
from accounts.tests.helpers import bearer, wrong_code

pytestmark = pytest.mark.django_db

PHONE = "+919876543210"
PASSWORD = "violet-Canyon-42-drift"
NEW_PASSWORD = "amber-Harbor-93-quill"


def test_a_full_flow_never_reveals_a_secret(api_client, clock):
    bodies: list[bytes] = []

    def call(method, path, body=None, access=None):
        headers = bearer(access) if access else {}
        response = getattr(api_client, method)(path, body, format="json", **headers)
        bodies.append(response.content)
        for name, value in response.items():
            bodies.append(f"{name}: {value}".encode())
        return response

    signed_up = call(
        "post", "/api/auth/signup", {"phone": PHONE, "name": "A", "password": PASSWORD}
    )
    code = signed_up.json()["otp"]
    call(
        "post",
        "/api/auth/verify-otp",
        {"phone": PHONE, "otp": wrong_code(code)},
    )
    signup_token = signed_up.json()["signup_token"]
    tokens = call(
        "post",
        "/api/auth/verify-otp",
        {"phone": PHONE, "otp": code, "signup_token": signup_token},
    ).json()
    call("post", "/api/auth/login", {"phone": PHONE, "password": "wrong-Password-1"})
    tokens = call("post", "/api/auth/login", {"phone": PHONE, "password": PASSWORD}).json()
    call("get", "/api/user/me", access=tokens["access"])
    call("patch", "/api/user/me", {"email": "a@example.com"}, access=tokens["access"])
    tokens = call("post", "/api/auth/token/refresh", {"refresh": tokens["refresh"]}).json()
    tokens = call(
        "post",
        "/api/auth/change-password",
        {"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        access=tokens["access"],
    ).json()
    call(
        "post",
        "/api/auth/change-password",
        {"old_password": "x", "new_password": "y"},
        access=tokens["access"],
    )
    clock.shift(61)
    reset_code = call("post", "/api/auth/forgot-password", {"phone": PHONE}).json()["otp"]
    call("post", "/api/auth/forgot-password", {"phone": PHONE})
    call(
        "post",
        "/api/auth/reset-password",
        {"phone": PHONE, "otp": reset_code, "new_password": PASSWORD},
    )
    clock.shift(61)
    tokens = call("post", "/api/auth/login", {"phone": PHONE, "password": PASSWORD}).json()
    call("post", "/api/auth/logout", {"refresh": tokens["refresh"]}, access=tokens["access"])
    call("post", "/api/auth/token/refresh", {"refresh": tokens["refresh"]})
    call("post", "/api/auth/send-otp", {"phone": 12})
    call("post", "/api/auth/send-otp", {"phone": PHONE})

    user = User.objects.get(phone=PHONE)
    secrets = {
        "password hash": user.password,
        "password hash body": user.password.split("$")[-1],
        "SECRET_KEY": settings.SECRET_KEY,
        "JWT_SECRET": settings.JWT_SECRET,
    }
    for stored in OneTimeCode.objects.all():
        secrets[f"OTP hash {stored.pk}"] = stored.code_hash
        if stored.signup_token_hash:
            secrets[f"signup token hash {stored.pk}"] = stored.signup_token_hash
    assert OneTimeCode.objects.count() >= 3
    everything = b"\n".join(bodies)
    for name, secret in secrets.items():
        assert secret.encode() not in everything, f"{name} leaked"
    assert b"pbkdf2" not in everything.lower()
