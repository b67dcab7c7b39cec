"""Shared helpers of the accounts tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework.test import APIClient


@dataclass(frozen=True)
class Delivery:
    phone: str
    code: str
    purpose: str


_deliveries: list[Delivery] = []


def record_delivery(*, phone: str, code: str, purpose: str) -> None:
    """An OTP_DELIVERY_BACKEND that keeps what it is given, like an SMS inbox."""
    _deliveries.append(Delivery(phone=phone, code=code, purpose=purpose))


class DeliveryOutbox:
    def __init__(self) -> None:
        _deliveries.clear()

    @property
    def deliveries(self) -> list[Delivery]:
        return list(_deliveries)

    def close(self) -> None:
        _deliveries.clear()


def post(client: APIClient, path: str, body: dict[str, Any] | None = None, **extra: Any) -> Any:
    return client.post(path, body or {}, format="json", **extra)


def send_code(client: APIClient, phone: str, **extra: Any) -> Any:
    return post(client, "/api/auth/send-otp", {"phone": phone}, **extra)


def login_with_code(client: APIClient, phone: str) -> dict[str, Any]:
    """send-otp then verify-otp; the answer of verify-otp."""
    sent = send_code(client, phone)
    assert sent.status_code == 200, sent.json()
    verified = post(client, "/api/auth/verify-otp", {"phone": phone, "otp": sent.json()["otp"]})
    assert verified.status_code == 200, verified.json()
    return verified.json()


def login_with_password(client: APIClient, phone: str, password: str) -> dict[str, Any]:
    response = post(client, "/api/auth/login", {"phone": phone, "password": password})
    assert response.status_code == 200, response.json()
    return response.json()


def bearer(access: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {access}"}


def wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def failing_delivery(*, phone: str, code: str, purpose: str) -> None:
    """An OTP_DELIVERY_BACKEND whose provider is down."""
    raise ConnectionError("SMS provider unreachable")
