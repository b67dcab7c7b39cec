"""Small helpers of the billing tests."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

WEBHOOK_PATH = "/api/webhook/stripe"


def webhook_post(payload: bytes, signature: str | None, *, client: APIClient | None = None) -> Any:
    headers = {"Stripe-Signature": signature} if signature is not None else {}
    return (client or APIClient()).generic(
        "POST",
        WEBHOOK_PATH,
        payload,  # type: ignore[arg-type]  # bytes are sent as they are
        content_type="application/json; charset=utf-8",
        headers=headers,
    )


def subscribe(client: APIClient) -> dict[str, Any]:
    response = client.post("/api/subscribe/pro")
    assert response.status_code == 201, response.content
    return dict(response.json())


def status_of(client: APIClient) -> dict[str, Any]:
    response = client.get("/api/subscription/status")
    assert response.status_code == 200, response.content
    return dict(response.json())


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])
