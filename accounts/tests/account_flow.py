"""One full account flow over HTTP, for the tests that search what it leaves behind (its
answers, its logs) for secrets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rest_framework.test import APIClient

from accounts.tests.helpers import bearer, wrong_code

PHONE = "+919876543210"
PASSWORD = "violet-Canyon-42-drift"
NEW_PASSWORD = "amber-Harbor-93-quill"


@dataclass
class Flow:
    """The answers (bodies and header lines) and every plaintext secret the flow handled."""

    answers: list[bytes] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)

    def call(
        self, client: APIClient, method: str, path: str, body: Any = None, access: str = ""
    ) -> Any:
        headers = bearer(access) if access else {}
        response = getattr(client, method)(path, body, format="json", **headers)
        self.answers.append(response.content)
        for name, value in response.items():
            self.answers.append(f"{name}: {value}".encode())
        if not response.content:
            return response
        payload = response.json()
        if isinstance(payload, dict):
            for key in ("otp", "access", "refresh", "signup_token"):
                if isinstance(payload.get(key), str):
                    self.secrets[f"{key} {len(self.secrets)}"] = payload[key]
        return response


def run_full_account_flow(client: APIClient, clock: Any) -> Flow:
    """Signup, verify (a wrong code first), login (a wrong password first), /me, refresh,
    change-password (a wrong old one too), forgot/reset, logout, a refused refresh, bad input."""
    flow = Flow(
        secrets={
            "phone": PHONE,
            "national number": PHONE[3:],
            "password": PASSWORD,
            "new password": NEW_PASSWORD,
        }
    )
    call = flow.call
    signed_up = call(client, "post", "/api/auth/signup", {"phone": PHONE, "password": PASSWORD})
    code = signed_up.json()["otp"]
    call(client, "post", "/api/auth/verify-otp", {"phone": PHONE, "otp": wrong_code(code)})
    signup_token = signed_up.json()["signup_token"]
    verify = {"phone": PHONE, "otp": code, "signup_token": signup_token}
    call(client, "post", "/api/auth/verify-otp", verify)
    call(client, "post", "/api/auth/login", {"phone": PHONE, "password": "wrong-Password-1"})
    tokens = call(client, "post", "/api/auth/login", {"phone": PHONE, "password": PASSWORD}).json()
    call(client, "get", "/api/user/me", access=tokens["access"])
    call(client, "patch", "/api/user/me", {"email": "a@example.com"}, access=tokens["access"])
    tokens = call(client, "post", "/api/auth/token/refresh", {"refresh": tokens["refresh"]}).json()
    change = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    changed = call(client, "post", "/api/auth/change-password", change, access=tokens["access"])
    if changed.status_code == 200:  # refused (503) while Redis is down: the old pair stays
        tokens = changed.json()
    wrong_change = {"old_password": "x", "new_password": "y"}
    call(client, "post", "/api/auth/change-password", wrong_change, access=tokens["access"])
    clock.shift(61)
    reset_code = call(client, "post", "/api/auth/forgot-password", {"phone": PHONE}).json()["otp"]
    call(client, "post", "/api/auth/forgot-password", {"phone": PHONE})
    reset = {"phone": PHONE, "otp": reset_code, "new_password": PASSWORD}
    call(client, "post", "/api/auth/reset-password", reset)
    clock.shift(61)
    tokens = call(client, "post", "/api/auth/login", {"phone": PHONE, "password": PASSWORD}).json()
    logout = {"refresh": tokens["refresh"]}
    call(client, "post", "/api/auth/logout", logout, access=tokens["access"])
    call(client, "post", "/api/auth/token/refresh", {"refresh": tokens["refresh"]})
    call(client, "post", "/api/auth/send-otp", {"phone": 12})
    call(client, "post", "/api/auth/send-otp", {"phone": PHONE})
    return flow
