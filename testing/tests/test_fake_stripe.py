"""The local Stripe stand-in: the real stripe-python client against it, its webhooks and pages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from testing.fake_stripe import (
    API_VERSION,
    LABEL,
    FakeStripe,
    decode_params,
    sign_payload,
)

ROOT = Path(__file__).resolve().parents[2]
SUCCESS_URL = "http://app.test/payment-success/stripe?session_id={CHECKOUT_SESSION_ID}"
CANCEL_URL = "http://app.test/payment-cancel/stripe"


def client_for(fake: FakeStripe, **options: Any) -> stripe.StripeClient:
    return stripe.StripeClient(
        options.pop("api_key", fake.api_key),
        base_addresses={"api": fake.url},
        stripe_version=API_VERSION,
        max_network_retries=0,
        **options,
    )


class Recorder:
    """A `deliver` callable that keeps what it got and answers the statuses it is given."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.calls: list[tuple[bytes, str]] = []
        self.lock = threading.Lock()

    def __call__(self, payload: bytes, signature: str) -> int:
        with self.lock:
            self.calls.append((payload, signature))
            return self.statuses.pop(0) if self.statuses else 200

    @property
    def types(self) -> list[str]:
        return [json.loads(payload)["type"] for payload, _ in self.calls]


class Receiver:
    """A tiny webhook endpoint over HTTP, answering the statuses it is given (then 200)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/stripe"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(retry_schedule=()) as server:
        yield server


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return client_for(fake)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def error_body(error: stripe.StripeError) -> dict[str, Any]:
    body = error.json_body
    assert isinstance(body, dict)
    return body["error"]


def make_price(client: stripe.StripeClient, **extra: Any) -> stripe.Price:
    product = client.v1.products.create({"name": extra.pop("name", "Pro")})
    params: dict[str, Any] = {
        "product": product.id,
        "unit_amount": 1000,
        "currency": "usd",
        "recurring": {"interval": "month"},
        **extra,
    }
    return client.v1.prices.create(params)  # type: ignore[arg-type]


def open_session(client: stripe.StripeClient, **extra: Any) -> stripe.checkout.Session:
    customer = client.v1.customers.create({"email": "ada@example.com"})
    price = make_price(client)
    params: dict[str, Any] = {
        "mode": "subscription",
        "customer": customer.id,
        "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": SUCCESS_URL,
        "cancel_url": CANCEL_URL,
        "client_reference_id": "7",
        "subscription_data": {"metadata": {"user_id": "7"}},
        **extra,
    }
    return client.v1.checkout.sessions.create(params)  # type: ignore[arg-type]


# --- wire format ---------------------------------------------------------------------------


def test_params_are_decoded_from_bracket_notation():
    encoded = (
        "metadata[user_id]=7&metadata[0]=zero&line_items[0][price]=price_x"
        "&line_items[0][quantity]=1&line_items[1][price]=price_y&expand[0]=data.product"
        "&lookup_keys[]=a&lookup_keys[]=b&cancel_at_period_end=true&email=a%2Bb%40x.test"
        "&subscription_data[metadata][user_id]=7"
    )

    assert decode_params(encoded) == {
        "metadata": {"user_id": "7", "0": "zero"},
        "line_items": [{"price": "price_x", "quantity": "1"}, {"price": "price_y"}],
        "expand": ["data.product"],
        "lookup_keys": ["a", "b"],
        "cancel_at_period_end": "true",
        "email": "a+b@x.test",
        "subscription_data": {"metadata": {"user_id": "7"}},
    }


def test_signatures_are_the_ones_stripe_python_computes():
    payload = b'{"id": "evt_1", "object": "event"}'

    header = sign_payload(payload, secret="whsec_abc", timestamp=1700000000)

    expected = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), "whsec_abc", timestamp=1700000000
    )
    assert header == expected


def test_customers_are_created_retrieved_updated_and_listed(fake, client):
    created = client.v1.customers.create(
        {"email": "ada@example.com", "name": "Ada", "metadata": {"user_id": "7"}}
    )
    updated = client.v1.customers.update(
        created.id, {"name": "Ada L.", "metadata": {"plan": "pro", "user_id": ""}}
    )
    for n in range(4):
        client.v1.customers.create({"email": f"other{n}@example.com"})

    assert created.id.startswith("cus_")
    assert created.object == "customer"
    assert created.livemode is False
    assert abs(created.created - time.time()) < 5
    assert client.v1.customers.retrieve(created.id).email == "ada@example.com"
    assert updated.name == "Ada L."
    assert updated.metadata.to_dict() == {"plan": "pro"}
    by_email = client.v1.customers.list({"email": "ada@example.com"})
    assert [c.id for c in by_email.data] == [created.id]
    assert by_email.url == "/v1/customers"
    page = client.v1.customers.list({"limit": 2})
    assert len(page.data) == 2
    assert page.has_more is True
    everyone = [c.id for c in client.v1.customers.list({"limit": 2}).auto_paging_iter()]
    assert len(everyone) == len(set(everyone)) == 5
    assert everyone[-1] == created.id  # newest first
    request = fake.requests[1]
    assert request["params"] == {"name": "Ada L.", "metadata": {"plan": "pro", "user_id": ""}}
    assert request["stripe_version"] == API_VERSION
    assert request["idempotency_key"]  # stripe-python sends one with every POST
    assert fake.api_key not in json.dumps(fake.requests)


def test_a_wrong_or_missing_key_is_a_401(fake):
    wrong = client_for(fake, api_key="sk_test_not_the_right_key_wxyz")

    with pytest.raises(stripe.AuthenticationError) as caught:
        wrong.v1.customers.create({"email": "ada@example.com"})

    assert caught.value.http_status == 401
    assert caught.value.user_message is not None
    assert caught.value.user_message.startswith("Invalid API Key provided: sk_test_***")
    assert caught.value.user_message.endswith("wxyz")
    assert "not_the_right" not in caught.value.user_message
    missing = httpx.get(f"{fake.url}/v1/customers", timeout=5)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert missing.headers["request-id"].startswith("req_")
    assert fake.customers == []


def test_unknown_objects_missing_params_and_routes_are_stripe_errors(fake, client):
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.retrieve("cus_nope")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.products.create({})
    with pytest.raises(stripe.InvalidRequestError) as extra:
        client.v1.customers.create({"emial": "typo@example.com"})
    route = httpx.get(
        f"{fake.url}/v1/dances", headers={"Authorization": f"Bearer {fake.api_key}"}, timeout=5
    )

    assert unknown.value.http_status == 404
    assert unknown.value.code == "resource_missing"
    assert unknown.value.param == "id"
    assert unknown.value.user_message == "No such customer: 'cus_nope'"
    assert error_body(unknown.value)["doc_url"].endswith("/error-codes/resource-missing")
    assert (missing.value.http_status, missing.value.code) == (400, "parameter_missing")
    assert missing.value.param == "name"
    assert (extra.value.code, extra.value.param) == ("parameter_unknown", "emial")
    assert route.status_code == 404
    assert route.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/dances)")


def test_a_deleted_customer_is_gone(client):
    customer = client.v1.customers.create({"email": "ada@example.com"})

    deleted = client.v1.customers.delete(customer.id)

    assert deleted.to_dict() == {"id": customer.id, "object": "customer", "deleted": True}
    assert client.v1.customers.retrieve(customer.id).to_dict()["deleted"] is True
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.update(customer.id, {"name": "Ghost"})
    assert caught.value.code == "resource_missing"
    assert client.v1.customers.list().data == []


# --- idempotency ---------------------------------------------------------------------------


def test_a_repeated_idempotency_key_replays_the_first_answer(fake, client):
    first = client.v1.customers.create(
        {"email": "ada@example.com"}, {"idempotency_key": "signup-7"}
    )
    again = client.v1.customers.create(
        {"email": "ada@example.com"}, {"idempotency_key": "signup-7"}
    )
    headers = {"Authorization": f"Bearer {fake.api_key}", "Idempotency-Key": "raw-1"}
    raw_first = httpx.post(f"{fake.url}/v1/customers", data={"name": "B"}, headers=headers)
    raw_again = httpx.post(f"{fake.url}/v1/customers", data={"name": "B"}, headers=headers)

    assert again.id == first.id
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert raw_again.content == raw_first.content
    assert raw_again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in raw_first.headers
    assert raw_again.headers["request-id"] != raw_first.headers["request-id"]
    assert len(fake.customers) == 2


def test_an_idempotency_key_reused_with_other_params_is_refused(fake, client):
    client.v1.customers.create({"email": "ada@example.com"}, {"idempotency_key": "k-1"})

    with pytest.raises(stripe.IdempotencyError) as params:
        client.v1.customers.create({"email": "bob@example.com"}, {"idempotency_key": "k-1"})
    with pytest.raises(stripe.IdempotencyError) as endpoint:
        client.v1.products.create({"name": "Pro"}, {"idempotency_key": "k-1"})

    assert params.value.http_status == 400
    assert error_body(params.value)["type"] == "idempotency_error"
    assert "same parameters" in str(params.value.user_message)
    assert "same endpoint" in str(endpoint.value.user_message)
    assert len(fake.customers) == 1


def test_concurrent_requests_with_one_key_create_one_object(fake, client):
    def create(_: int) -> str:
        customer = client.v1.customers.create(
            {"email": "ada@example.com"}, {"idempotency_key": "race"}
        )
        return customer.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(create, range(16)))

    assert len(ids) == 1
    assert len(fake.customers) == 1


# --- products and prices -------------------------------------------------------------------


def test_prices_are_found_by_lookup_key_with_their_product(client):
    product = client.v1.products.create(
        {"id": "prod_pro", "name": "Pro", "metadata": {"tier": "pro"}}
    )
    monthly = client.v1.prices.create(
        {
            "product": product.id,
            "unit_amount": 1000,
            "currency": "usd",
            "recurring": {"interval": "month"},
            "lookup_key": "pro_monthly",
            "nickname": "Pro monthly",
        }
    )
    one_time = client.v1.prices.create(
        {"product": product.id, "unit_amount": 500, "currency": "usd"}
    )

    found = client.v1.prices.list(
        {"lookup_keys": ["pro_monthly", "nope"], "active": True, "expand": ["data.product"]}
    )

    assert product.id == "prod_pro"
    assert client.v1.products.retrieve("prod_pro").metadata.to_dict() == {"tier": "pro"}
    assert [p.id for p in found.data] == [monthly.id]
    price = found.data[0]
    assert isinstance(price.product, stripe.Product)
    assert price.product.name == "Pro"
    assert price.recurring is not None
    assert (price.recurring.interval, price.recurring.interval_count) == ("month", 1)
    assert (price.type, price.unit_amount, price.lookup_key) == ("recurring", 1000, "pro_monthly")
    assert one_time.type == "one_time"
    assert one_time.recurring is None
    assert [p.id for p in client.v1.prices.list({"type": "one_time"}).data] == [one_time.id]
    assert len(client.v1.prices.list({"product": "prod_pro"}).data) == 2
    assert [p.id for p in client.v1.products.list().data] == ["prod_pro"]


def test_a_lookup_key_moves_only_when_transferred(client):
    first = make_price(client, lookup_key="pro_monthly")

    with pytest.raises(stripe.InvalidRequestError) as taken:
        make_price(client, lookup_key="pro_monthly", unit_amount=1200)
    second = make_price(client, lookup_key="pro_monthly", transfer_lookup_key=True)

    assert taken.value.param == "lookup_key"
    assert first.id in str(taken.value.user_message)
    assert client.v1.prices.retrieve(first.id).lookup_key is None
    found = client.v1.prices.list({"lookup_keys": ["pro_monthly"]}).data
    assert [p.id for p in found] == [second.id]


# --- checkout and subscriptions ------------------------------------------------------------


def test_a_checkout_session_is_open_until_paid(fake, client):
    session = open_session(client, metadata={"user_id": "7"})

    assert session.id.startswith("cs_test_")
    assert (session.status, session.payment_status, session.mode) == (
        "open",
        "unpaid",
        "subscription",
    )
    assert session.url == f"{fake.url}/checkout/pay/{session.id}"
    assert session.subscription is None
    assert session.expires_at == session.created + 24 * 3600
    assert session.amount_total == 1000
    assert session.client_reference_id == "7"
    assert session.metadata is not None
    assert session.metadata.to_dict() == {"user_id": "7"}
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    [item] = client.v1.checkout.sessions.line_items.list(session.id).data
    assert (item.quantity, item.amount_total, item.description) == (1, 1000, "Pro")


def test_checkout_refuses_what_stripe_refuses(client):
    customer = client.v1.customers.create({"email": "ada@example.com"})
    recurring = make_price(client)
    one_time = make_price(client, recurring=None)

    def create(**params: Any) -> stripe.InvalidRequestError:
        base: dict[str, Any] = {
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": recurring.id, "quantity": 1}],
            "success_url": SUCCESS_URL,
        }
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.checkout.sessions.create({**base, **params})
        return caught.value

    no_customer = create(customer="cus_missing")
    assert (no_customer.code, no_customer.param) == ("resource_missing", "customer")
    assert no_customer.user_message == "No such customer: 'cus_missing'"
    no_price = create(line_items=[{"price": "price_missing", "quantity": 1}])
    assert (no_price.code, no_price.param) == ("resource_missing", "line_items[0][price]")
    not_recurring = create(line_items=[{"price": one_time.id, "quantity": 1}])
    assert not_recurring.param == "line_items"
    assert create(success_url=None).code == "parameter_missing"
    assert create(mode="setup").param == "mode"
    assert create(mode=None).code == "parameter_missing"


def test_completing_a_checkout_creates_the_subscription_and_its_invoice(fake, client):
    session = open_session(client)

    events = fake.complete_checkout(session.id)

    assert [e["type"] for e in events] == [
        "customer.subscription.created",
        "invoice.paid",
        "invoice.payment_succeeded",
        "checkout.session.completed",
    ]
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status, done.url) == ("complete", "paid", None)
    assert done.subscription is not None
    subscription = client.v1.subscriptions.retrieve(str(done.subscription))
    assert subscription.status == "active"
    assert subscription.customer == session.customer
    assert subscription.metadata.to_dict() == {"user_id": "7"}
    assert "current_period_end" not in subscription  # basil: periods live on the items
    [item] = subscription["items"].data
    assert item.id.startswith("si_")
    assert item.current_period_end - item.current_period_start == 30 * 86400
    assert item.price.id == fake.prices[-1]["id"]
    assert subscription.latest_invoice is not None
    invoice = client.v1.invoices.retrieve(str(subscription.latest_invoice))
    assert (invoice.status, invoice.billing_reason) == ("paid", "subscription_create")
    assert (invoice.amount_paid, invoice.amount_due, invoice.total) == (1000, 1000, 1000)
    assert "subscription" not in invoice
    assert invoice.parent is not None
    assert invoice.parent.type == "subscription_details"
    assert invoice.parent.subscription_details is not None
    assert invoice.parent.subscription_details.subscription == subscription.id
    assert invoice.parent.subscription_details.metadata is not None
    assert invoice.parent.subscription_details.metadata.to_dict() == {"user_id": "7"}
    [line] = invoice.lines.data
    assert (line.period.start, line.period.end) == (
        item.current_period_start,
        item.current_period_end,
    )
    assert events[0]["data"]["object"]["id"] == subscription.id
    assert events[-1]["data"]["object"]["status"] == "complete"
    assert all(e["api_version"] == "2025-06-30.basil" for e in events)
    with pytest.raises(ValueError, match="complete"):
        fake.complete_checkout(session.id)
    assert len(fake.subscriptions) == 1


def test_a_trial_subscription_is_trialing_and_costs_nothing_today(fake, client):
    session = open_session(client, subscription_data={"trial_period_days": 14})

    fake.complete_checkout(session.id, period_seconds=3600)

    completed = fake.checkout_session(session.id)
    subscription = fake.subscription(completed["subscription"])
    assert completed["payment_status"] == "no_payment_required"
    assert subscription["status"] == "trialing"
    assert subscription["trial_end"] - subscription["trial_start"] == 14 * 86400
    assert subscription["items"]["data"][0]["current_period_end"] == subscription["trial_end"]
    assert fake.invoice(subscription["latest_invoice"])["amount_paid"] == 0
    fake.renew(subscription["id"])
    renewed = fake.subscription(subscription["id"])["items"]["data"][0]
    assert renewed["current_period_end"] - renewed["current_period_start"] == 3600
    assert fake.subscription(subscription["id"])["status"] == "active"


def test_an_expired_session_cannot_be_paid(fake, client):
    session = open_session(client)

    expired = client.v1.checkout.sessions.expire(session.id)

    assert (expired.status, expired.url) == ("expired", None)
    assert fake.events[-1]["type"] == "checkout.session.expired"
    with pytest.raises(ValueError, match="expired"):
        fake.complete_checkout(session.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(session.id)


def test_subscription_changes_through_the_api_emit_their_events():
    recorder = Recorder()
    with FakeStripe(deliver=recorder, retry_schedule=()) as standin:
        api = client_for(standin)
        session = open_session(api)
        standin.complete_checkout(session.id)
        subscription_id = standin.checkout_session(session.id)["subscription"]
        before = len(recorder.calls)

        updated = api.v1.subscriptions.update(
            subscription_id, {"cancel_at_period_end": True, "metadata": {"note": "bye"}}
        )
        assert len(recorder.calls) == before  # API events wait for deliver_pending()
        [update_event] = standin.deliver_pending()
        canceled = api.v1.subscriptions.cancel(subscription_id)
        [delete_event] = standin.deliver_pending()

        period_end = updated["items"].data[0].current_period_end
        assert (updated.cancel_at_period_end, updated.cancel_at) == (True, period_end)
        assert update_event["type"] == "customer.subscription.updated"
        previous = update_event["data"]["previous_attributes"]
        assert previous["cancel_at_period_end"] is False
        assert previous["metadata"] == {"note": None}  # Stripe lists a hash's changed keys
        request = standin.requests[-2]
        assert update_event["request"]["id"] == request["request_id"]
        assert update_event["request"]["idempotency_key"] == request["idempotency_key"]
        assert (canceled.status, delete_event["type"]) == (
            "canceled",
            "customer.subscription.deleted",
        )
        assert canceled.canceled_at is not None
        assert canceled.ended_at is not None
        assert delete_event["data"]["object"]["status"] == "canceled"
        assert recorder.types[-2:] == [
            "customer.subscription.updated",
            "customer.subscription.deleted",
        ]
        assert api.v1.subscriptions.list({"customer": str(session.customer)}).data == []
        everything = api.v1.subscriptions.list({"status": "all"}).data
        assert [s.id for s in everything] == [subscription_id]
        with pytest.raises(stripe.InvalidRequestError):
            api.v1.subscriptions.update(subscription_id, {"cancel_at_period_end": False})


def test_control_methods_drive_the_subscription_life_cycle(fake, client):
    session = open_session(client)
    fake.complete_checkout(session.id)
    subscription_id = fake.checkout_session(session.id)["subscription"]
    first_end = fake.subscription(subscription_id)["items"]["data"][0]["current_period_end"]

    failed = fake.invoice_payment_fail(subscription_id)
    assert [e["type"] for e in failed] == [
        "invoice.payment_failed",
        "customer.subscription.updated",
    ]
    invoice = failed[0]["data"]["object"]
    assert (invoice["status"], invoice["attempt_count"]) == ("open", 1)
    assert invoice["billing_reason"] == "subscription_cycle"
    assert invoice["next_payment_attempt"] > time.time()
    assert fake.subscription(subscription_id)["status"] == "past_due"
    assert failed[1]["data"]["previous_attributes"]["status"] == "active"

    paid = fake.renew(subscription_id)
    assert [e["type"] for e in paid] == ["invoice.paid", "customer.subscription.updated"]
    assert fake.subscription(subscription_id)["status"] == "active"

    renewed = fake.renew(subscription_id)
    assert [e["type"] for e in renewed] == ["invoice.paid", "customer.subscription.updated"]
    item = fake.subscription(subscription_id)["items"]["data"][0]
    assert item["current_period_start"] == first_end + 30 * 86400
    assert item["current_period_end"] == first_end + 60 * 86400

    moved = fake.subscription_update(
        subscription_id, cancel_at_period_end=True, current_period_end=2_000_000_000
    )
    assert [e["type"] for e in moved] == ["customer.subscription.updated"]
    assert fake.subscription(subscription_id)["cancel_at"] == 2_000_000_000
    ended = fake.renew(subscription_id)
    assert [e["type"] for e in ended] == ["customer.subscription.deleted"]
    assert fake.subscription(subscription_id)["status"] == "canceled"
    with pytest.raises(ValueError, match="canceled"):
        fake.subscription_cancel(subscription_id)


def test_helpers_for_trials_the_clock_deleted_customers_and_requests(fake, client):
    session = open_session(client)
    fake.set_trial_days(session.id, 7)
    start = fake.now

    assert fake.advance_clock(3600) >= start + 3600
    [*_, completed] = fake.complete_checkout(session.id)

    subscription = fake.subscription(completed["data"]["object"]["subscription"])
    assert subscription["status"] == "trialing"
    assert subscription["trial_end"] - subscription["trial_start"] == 7 * 86400
    assert subscription["created"] >= start + 3600
    assert completed["created"] >= start + 3600
    customer_id = str(session.customer)
    deleted = fake.customer_delete(customer_id)
    assert [e["type"] for e in deleted] == ["customer.subscription.deleted"]
    assert fake.subscription(subscription["id"])["status"] == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as gone:
        open_session(client, customer=customer_id)
    assert (gone.value.code, gone.value.param) == ("resource_missing", "customer")
    creates = fake.requests_to("/v1/customers", method="POST")
    assert [r["path"] for r in creates] == ["/v1/customers", "/v1/customers"]
    assert fake.requests_to("/v1/checkout/sessions")[0]["params"]["mode"] == "subscription"
    assert fake.requests_to("/v1/billing_portal/sessions") == []

    control = f"{fake.url}/_fake"
    later = open_session(client)
    trial = httpx.post(f"{control}/checkout/{later.id}/trial", json={"days": 3})
    assert trial.json() == {"ok": True}
    assert httpx.post(f"{control}/clock/advance", json={"seconds": 60}).json()["now"] >= (
        start + 3660
    )
    removed = httpx.post(f"{control}/customers/{later.customer}/delete").json()
    assert removed == {"events": []}  # no subscription yet
    assert fake.customer(str(later.customer)) == {
        "id": later.customer,
        "object": "customer",
        "deleted": True,
    }


# --- webhooks --------------------------------------------------------------------------------


def test_events_are_signed_and_delivered_in_order():
    recorder = Recorder()
    with FakeStripe(deliver=recorder, webhook_secret="whsec_test_123", retry_schedule=()) as fake:
        session = open_session(client_for(fake))

        events = fake.complete_checkout(session.id)

        assert recorder.types == [e["type"] for e in events]
        for (payload, header), event in zip(recorder.calls, events, strict=True):
            verified = stripe.Webhook.construct_event(payload, header, "whsec_test_123")
            assert verified.id == event["id"]
            assert verified.type == event["type"]
            assert verified.api_version == API_VERSION
        assert [d["status"] for d in fake.deliveries] == [200] * 4
        assert [e["id"] for e in client_for(fake).v1.events.list().data] == [
            e["id"] for e in reversed(events)
        ]
        stored = client_for(fake).v1.events.retrieve(events[0]["id"])
        assert stored.data.object["id"] == events[0]["data"]["object"]["id"]


def test_tampered_and_stale_signatures_are_rejected():
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "invoice.paid"}).encode()
    good = sign_payload(payload, secret="whsec_x")

    assert stripe.Webhook.construct_event(payload, good, "whsec_x").id == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload.replace(b"evt_1", b"evt_2"), good, "whsec_x")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, sign_payload(payload, secret="whsec_y"), "whsec_x")
    stale = sign_payload(payload, secret="whsec_x", timestamp=int(time.time()) - 600)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(payload, stale, "whsec_x")


def test_webhooks_go_over_http_and_a_failure_is_retried():
    receiver = Receiver(500)
    try:
        with FakeStripe(webhook_url=receiver.url, retry_schedule=(0.05, 0.05)) as fake:
            session = open_session(client_for(fake))

            events = fake.complete_checkout(session.id)
            deliveries = fake.wait_for_deliveries(5)

            first = events[0]["id"]
            attempts = [(d["attempt"], d["status"]) for d in deliveries if d["event"] == first]
            assert attempts == [(1, 500), (2, 200)]
            headers, body = receiver.received[-1]
            assert json.loads(body)["id"] == first
            assert headers["Content-Type"] == "application/json; charset=utf-8"
            assert headers["User-Agent"] == "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
            stripe.Webhook.construct_event(body, headers["Stripe-Signature"], fake.webhook_secret)
            assert receiver.types()[1:4] == [e["type"] for e in events[1:]]

            assert fake.redeliver(first) == 200
            assert fake.deliveries[-1]["attempt"] == 3
    finally:
        receiver.close()


def test_api_events_are_delivered_in_the_background_and_retries_give_up():
    receiver = Receiver(500, 500, 500)
    try:
        with FakeStripe(webhook_url=receiver.url, retry_schedule=(0.02, 0.02)) as fake:
            api = client_for(fake)
            session = open_session(api)
            fake.complete_checkout(session.id, deliver=False)
            subscription_id = fake.checkout_session(session.id)["subscription"]

            api.v1.subscriptions.cancel(subscription_id)

            deliveries = fake.wait_for_deliveries(3)
            time.sleep(0.1)
            assert [d["status"] for d in fake.deliveries] == [500, 500, 500]
            assert {d["type"] for d in deliveries} == {"customer.subscription.deleted"}
            assert fake.deliver_event(fake.events[-1]) == 200
    finally:
        receiver.close()


# --- pages ----------------------------------------------------------------------------------


def test_the_pay_page_completes_the_checkout_and_redirects(receiver):
    with FakeStripe(webhook_url=receiver.url, retry_schedule=()) as fake:
        api = client_for(fake)
        session = open_session(api)
        api.v1.products.update(
            str(fake.prices[-1]["product"]), {"name": "Pro <script>alert(1)</script>"}
        )

        page = httpx.get(session.url or "", timeout=5)
        paid = httpx.post(f"{fake.url}/checkout/pay/{session.id}", timeout=5)
        again = httpx.get(f"{fake.url}/checkout/pay/{session.id}", timeout=5)
        twice = httpx.post(f"{fake.url}/checkout/pay/{session.id}", timeout=5)

        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert LABEL in page.text
        assert "10.00 USD" in page.text
        assert ">Pay</button>" in page.text
        assert f'href="{CANCEL_URL}"' in page.text
        assert "<script>alert" not in page.text
        assert "Pro &lt;script&gt;" in page.text
        assert paid.status_code == 303
        assert paid.headers["location"] == SUCCESS_URL.replace("{CHECKOUT_SESSION_ID}", session.id)
        assert receiver.types() == [
            "customer.subscription.created",
            "invoice.paid",
            "invoice.payment_succeeded",
            "checkout.session.completed",
        ]
        assert "already complete" in again.text
        assert LABEL in again.text
        assert twice.status_code == 409
        assert len(fake.subscriptions) == 1


def test_the_portal_page_cancels_at_period_end_and_now(receiver):
    with FakeStripe(webhook_url=receiver.url, retry_schedule=()) as fake:
        api = client_for(fake)
        session = open_session(api)
        fake.complete_checkout(session.id)
        subscription_id = fake.checkout_session(session.id)["subscription"]
        portal = api.v1.billing_portal.sessions.create(
            {"customer": str(session.customer), "return_url": "http://app.test/account"}
        )
        base = f"{fake.url}/portal/{portal.id}/subscriptions/{subscription_id}"

        page = httpx.get(portal.url, timeout=5)
        toggled = httpx.post(f"{base}/cancel_at_period_end", data={"value": "true"}, timeout=5)
        after_toggle = httpx.get(portal.url, timeout=5)
        httpx.post(f"{base}/cancel_at_period_end", data={"value": "false"}, timeout=5)
        canceled = httpx.post(f"{base}/cancel", timeout=5)

        assert portal.id.startswith("bps_")
        assert portal.object == "billing_portal.session"
        assert portal.url == f"{fake.url}/portal/{portal.id}"
        assert (portal.customer, portal.livemode) == (session.customer, False)
        assert LABEL in page.text
        assert "Cancel at period end" in page.text
        assert "Cancel now" in page.text
        assert 'href="http://app.test/account"' in page.text
        assert (toggled.status_code, toggled.headers["location"]) == (303, f"/portal/{portal.id}")
        assert "Don&#x27;t cancel" in after_toggle.text
        assert canceled.status_code == 303
        assert receiver.types()[-3:] == [
            "customer.subscription.updated",
            "customer.subscription.updated",
            "customer.subscription.deleted",
        ]
        assert fake.subscription(subscription_id)["status"] == "canceled"
        with pytest.raises(stripe.InvalidRequestError) as missing:
            api.v1.billing_portal.sessions.create({"customer": "cus_missing"})
        assert missing.value.code == "resource_missing"


# --- failures -------------------------------------------------------------------------------


def test_fail_next_makes_the_client_raise(fake, client):
    fake.fail_next(method="POST", path_prefix="/v1/customers", status=503)

    with pytest.raises(stripe.APIError) as caught:
        client.v1.customers.create({"email": "ada@example.com"})

    assert caught.value.http_status == 503
    assert error_body(caught.value)["type"] == "api_error"
    assert client.v1.customers.create({"email": "ada@example.com"}).id.startswith("cus_")
    assert len(fake.customers) == 1


def test_a_hanging_answer_trips_the_client_timeout(fake):
    client = client_for(fake, http_client=stripe.RequestsClient(timeout=1))
    fake.fail_next(hang=2.0)

    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.list()

    assert 0.9 < time.monotonic() - started < 1.9
    assert client.v1.customers.list().data == []


# --- persistence, process and control endpoints --------------------------------------------


def test_the_state_file_survives_a_restart(tmp_path):
    state_file = tmp_path / "stripe.json"
    with FakeStripe(state_file=state_file) as fake:
        session = open_session(client_for(fake))
        fake.complete_checkout(session.id)
        subscription_id = fake.checkout_session(session.id)["subscription"]
    assert not list(tmp_path.glob("*.tmp"))

    with FakeStripe(state_file=state_file) as restarted:
        api = client_for(restarted)
        assert api.v1.subscriptions.retrieve(subscription_id).status == "active"
        assert api.v1.customers.retrieve(str(session.customer)).email == "ada@example.com"
        assert len(restarted.events) == 4
        restarted.subscription_cancel(subscription_id)

    data = json.loads(state_file.read_text())
    assert data["subscriptions"][0]["status"] == "canceled"


def test_control_endpoints_drive_it_over_http(fake, client):
    session = open_session(client)
    control = f"{fake.url}/_fake"

    assert httpx.get(f"{control}/health").json() == {"ok": True}
    completed = httpx.post(f"{control}/checkout/{session.id}/complete", json={}).json()
    assert [e["type"] for e in completed["events"]][-1] == "checkout.session.completed"
    assert httpx.post(f"{control}/checkout/{session.id}/complete").status_code == 409
    assert httpx.post(f"{control}/checkout/cs_test_nope/complete").status_code == 404
    subscription_id = fake.checkout_session(session.id)["subscription"]
    sub_url = f"{control}/subscriptions/{subscription_id}"
    failed = httpx.post(f"{sub_url}/payment_failed").json()
    assert [e["type"] for e in failed["events"]] == [
        "invoice.payment_failed",
        "customer.subscription.updated",
    ]
    renewed = httpx.post(f"{sub_url}/renew").json()
    assert renewed["events"][0]["type"] == "invoice.paid"
    updated = httpx.post(f"{sub_url}/update", json={"cancel_at_period_end": True}).json()
    assert updated["events"][0]["data"]["previous_attributes"]["cancel_at_period_end"] is False
    assert httpx.post(f"{sub_url}/update", json={"colour": "red"}).status_code == 400
    assert httpx.post(f"{control}/fail_next", json={"status": 500}).json() == {"ok": True}
    with pytest.raises(stripe.APIError):
        client.v1.customers.list()

    state = httpx.get(f"{control}/state").json()
    assert [s["id"] for s in state["subscriptions"]] == [subscription_id]
    assert state["sessions"][0]["status"] == "complete"
    assert len(state["customers"]) == 1
    assert len(state["events"]) == len(fake.events)
    assert state["deliveries"] == []  # no webhook configured: events are only recorded
    assert httpx.post(f"{control}/reset").json() == {"ok": True}
    assert httpx.get(f"{control}/state").json()["customers"] == []
    assert fake.requests == []


def test_as_a_process_it_prints_its_url_and_stops_on_sigterm(tmp_path, receiver):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testing.fake_stripe",
            "--port",
            "0",
            "--print-url",
            "--webhook-url",
            receiver.url,
            "--state-file",
            str(tmp_path / "state.json"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        api = stripe.StripeClient(
            "sk_test_local_standin", base_addresses={"api": url}, max_network_retries=0
        )
        session = open_session(api)
        page = httpx.get(f"{url}/checkout/pay/{session.id}", timeout=5)
        assert LABEL in page.text
        paid = httpx.post(f"{url}/checkout/pay/{session.id}", timeout=5)
        assert paid.status_code == 303
        assert receiver.types()[-1] == "checkout.session.completed"
        state = httpx.get(f"{url}/_fake/state", timeout=5).json()
        assert state["subscriptions"][0]["status"] == "active"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "LOCAL STAND-IN, NOT STRIPE" in stderr
    assert LABEL in stderr
    assert json.loads((tmp_path / "state.json").read_text())["subscriptions"]
