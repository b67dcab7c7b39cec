"""No answer of a full account flow contains a password hash, an OTP or signup token hash,
or a signing key."""

import pytest
from django.conf import settings

from accounts.models import OneTimeCode, User
from accounts.tests.account_flow import PHONE, run_full_account_flow

pytestmark = pytest.mark.django_db


def test_a_full_flow_never_reveals_a_secret(api_client, clock):
    flow = run_full_account_flow(api_client, clock)

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
    everything = b"\n".join(flow.answers)
    for name, secret in secrets.items():
        assert secret.encode() not in everything, f"{name} leaked"
    assert b"pbkdf2" not in everything.lower()
