"""A LOCAL STAND-IN for Stripe's REST API and webhooks, good enough that stripe-python can't tell.

It is not Stripe and no real payment ever happens: every page it serves says so in a banner
("Local Stripe stand-in — test mode, no real payment"), and so does its startup log line.
`./run.sh` starts it when no real STRIPE_SECRET_KEY is configured, so that a newcomer can go
Basic → Checkout → Pro → cancel in the portal → Basic with no keys and no internet.

It speaks the wire format of api.stripe.com (v1, as stripe-python 16 sends it):

- the secret key travels as `Authorization: Bearer <key>` (Basic auth as `curl -u key:` works
  too); a missing or wrong key is a 401 whose message shows only the key's last 4 characters;
- POST bodies are `application/x-www-form-urlencoded` with bracket notation
  (`metadata[user_id]=7`, `line_items[0][price]=price_x`, `expand[0]=data.product`,
  `cancel_at_period_end=true`), GET and DELETE parameters come in the query string the same way;
  `decode_params` turns them into nested dicts and lists;
- answers are Stripe's JSON objects in their `2025-06-30.basil` shapes (`livemode: false`,
  unix-second `created`, ids with Stripe's prefixes); lists are
  `{"object": "list", "data": [...], "has_more", "url"}`, newest first, paged with
  `limit`/`starting_after`/`ending_before`; every answer carries a `Request-Id: req_...` header;
- errors are `{"error": {"type", "message", "code", "param", "doc_url"}}` with Stripe's statuses
  (400 `parameter_missing`/`parameter_unknown`/`resource_missing`, 404 `resource_missing` for an
  unknown id in the URL, 404 for an unknown route, 401 for the key), so stripe-python raises its
  own `InvalidRequestError`, `AuthenticationError`, `IdempotencyError`, `APIError`;
- a POST repeating an `Idempotency-Key` (kept 24 h) replays the first successful answer byte for
  byte with `Idempotent-Replayed: true`; the same key with another endpoint or other parameters
  is a 400 `idempotency_error`. Requests are handled one at a time under the state lock, so two
  concurrent requests with one key never create two objects: the second one replays the first.

Endpoints: customers (create, retrieve, update, delete, list by email), products and prices
(create, retrieve, update, list; prices by `lookup_keys`, `active`, `product`, `type`, with
`expand[]=data.product`), checkout sessions (create, retrieve, list, expire, line items),
subscriptions (retrieve, list, update `cancel_at_period_end`/`metadata`, delete = cancel now),
invoices (retrieve, list), billing portal sessions (create), events (retrieve, list).

Browser pages, each labelled as the stand-in:

    GET  /checkout/pay/{session}   the product, a "Pay" button and a "Cancel" link
    POST /checkout/pay/{session}   completes the checkout, then 303 to its success_url
    GET  /portal/{portal_session}  the customer's subscriptions: "Cancel at period end" /
                                   "Don't cancel", "Cancel now", and "Return"

Completing a checkout creates the subscription (item-level `current_period_start/end`, one
interval long: 30 days a month, 365 a year) and its paid invoice (`parent.subscription_details`),
and emits `customer.subscription.created`, `invoice.paid`, `invoice.payment_succeeded`,
`checkout.session.completed`. Subscription changes emit `customer.subscription.updated` (with
`previous_attributes`) or `customer.subscription.deleted`. Only these life-cycle events (plus
`invoice.payment_failed` and `checkout.session.expired`) are emitted, as if the webhook endpoint
had subscribed to just them. Events are signed the way Stripe signs them (`sign_payload`) and
POSTed to `webhook_url`, or handed to a `deliver(payload, signature_header) -> status` callable;
failed deliveries are retried in the background on `retry_schedule`.

When events are delivered:

- control methods (`complete_checkout`, `renew`, ...) with `deliver=True`: synchronously, in the
  caller's thread, in order, before they return;
- events of API calls: in the background, after the answer, like Stripe; with a `deliver`
  callable they wait in a queue until `deliver_pending()`, so that a test can hand them to the
  Django test client from its own thread;
- pages and HTTP control endpoints: synchronously from the server thread to `webhook_url` before
  answering (so the browser lands on the success page after the webhook was handled); with a
  `deliver` callable they wait for `deliver_pending()` too.

In-process:

    with FakeStripe(deliver=post_to_django, retry_schedule=()) as fake:
        client = stripe.StripeClient(fake.api_key, base_addresses={"api": fake.url})
        session = client.v1.checkout.sessions.create(params)
        events = fake.complete_checkout(session.id)      # delivered before it returns
        sub_id = fake.checkout_session(session.id)["subscription"]
        client.v1.subscriptions.cancel(sub_id)           # its event waits for...
        fake.deliver_pending()                           # ...this, in the test's thread
        fake.fail_next(status=503)                       # the next API call fails

As a process (what `./run.sh` does without a real key), driven over HTTP by end-to-end tests:

    python -m testing.fake_stripe --port 0 --webhook-url URL --state-file PATH --print-url
    POST /_fake/checkout/{session}/complete   optional {"period_seconds", "deliver"} -> {"events"}
    POST /_fake/subscriptions/{id}/update     {"status", "cancel_at_period_end",
                                               "current_period_end", "metadata"} -> {"events"}
    POST /_fake/subscriptions/{id}/payment_failed | renew | cancel            -> {"events"}
    POST /_fake/customers/{id}/delete                                         -> {"events"}
    POST /_fake/checkout/{session}/trial     {"days": n}                     -> {"ok": true}
    POST /_fake/clock/advance                {"seconds": n}                  -> {"now": ts}
    POST /_fake/events/{id}/redeliver                                         -> {"status"}
    POST /_fake/fail_next    {"method", "path_prefix", "status", "count", "hang"} -> {"ok"}
    GET  /_fake/state        {"customers", "products", "prices", "sessions", "subscriptions",
                              "invoices", "portal_sessions", "events", "deliveries", "requests"}
    GET  /_fake/health       -> {"ok": true}
    POST /_fake/reset        -> {"ok": true}

Control endpoints need no API key. With `state_file`, the state is loaded at construction and
written atomically after every change, so a restarted dev stack keeps its customers and
subscriptions (idempotency keys, deliveries and recorded requests are not kept).

Simplified on purpose: `Stripe-Version` and `Stripe-Account` are recorded but every answer has
the basil shapes of one account; only successful answers are kept for idempotent replay; a
checkout needs no card and only `payment`/`subscription` modes exist; portal sessions don't
expire; one currency per checkout, no taxes, discounts, prorations or payment intents; a month
is 30 days and a year 365.

This is test and development tooling; nothing in the product imports it.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import dataclasses
import hashlib
import heapq
import hmac
import html
import http.client
import itertools
import json
import os
import re
import secrets
import signal
import socket
import string
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from testing.fake_gemini import StubServer

DEFAULT_API_KEY = "sk_test_local_standin"
DEFAULT_WEBHOOK_SECRET = "whsec_local_standin"  # noqa: S105 (a well-known local placeholder)
API_VERSION = "2025-06-30.basil"
LABEL = "Local Stripe stand-in — test mode, no real payment"
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
IDEMPOTENCY_TTL = 24 * 3600
CHECKOUT_TTL = 24 * 3600
WEBHOOK_TIMEOUT = 10.0
WEBHOOK_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
MAX_BODY = 1024 * 1024

DeliverFn = Callable[[bytes, str], int]
Obj = dict[str, Any]

_DAY = 86400
_INTERVAL_SECONDS = {"day": _DAY, "week": 7 * _DAY, "month": 30 * _DAY, "year": 365 * _DAY}
_ZERO_DECIMAL = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
    "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
}  # fmt: skip
_ALPHANUMERIC = string.ascii_letters + string.digits
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_DIGITS = re.compile(r"[0-9]+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SUBSCRIPTION_STATUSES = {
    "active", "past_due", "unpaid", "canceled", "incomplete",
    "incomplete_expired", "trialing", "paused",
}  # fmt: skip
_SUBSCRIPTION_EVENTS = ("customer.subscription.updated", "customer.subscription.deleted")

# Real Stripe parameters of each endpoint. Those the stand-in doesn't act on are accepted and
# ignored; anything else is refused as Stripe refuses it ("Received unknown parameter").
_LIST = {"limit", "starting_after", "ending_before", "created", "expand"}
_PARAMS: dict[str, set[str]] = {
    "customer_create": {
        "address", "balance", "cash_balance", "description", "email", "invoice_prefix",
        "invoice_settings", "metadata", "name", "next_invoice_sequence", "payment_method",
        "phone", "preferred_locales", "shipping", "source", "tax", "tax_exempt", "tax_id_data",
        "test_clock", "validate", "expand",
    },
    "customer_update": {
        "address", "balance", "cash_balance", "default_source", "description", "email",
        "invoice_prefix", "invoice_settings", "metadata", "name", "next_invoice_sequence",
        "phone", "preferred_locales", "shipping", "source", "tax", "tax_exempt", "validate",
        "expand",
    },
    "customer_list": _LIST | {"email", "test_clock"},
    "product_create": {
        "id", "name", "active", "default_price_data", "description", "images",
        "marketing_features", "metadata", "package_dimensions", "shippable",
        "statement_descriptor", "tax_code", "type", "unit_label", "url", "expand",
    },
    "product_update": {
        "name", "active", "default_price", "description", "images", "marketing_features",
        "metadata", "package_dimensions", "shippable", "statement_descriptor", "tax_code",
        "unit_label", "url", "expand",
    },
    "product_list": _LIST | {"active", "ids", "shippable", "type", "url"},
    "price_create": {
        "currency", "product", "product_data", "unit_amount", "unit_amount_decimal", "recurring",
        "lookup_key", "nickname", "metadata", "active", "transfer_lookup_key", "billing_scheme",
        "currency_options", "custom_unit_amount", "tax_behavior", "tiers", "tiers_mode",
        "transform_quantity", "expand",
    },
    "price_update": {
        "active", "currency_options", "lookup_key", "metadata", "nickname", "tax_behavior",
        "transfer_lookup_key", "expand",
    },
    "price_list": _LIST | {"active", "currency", "lookup_keys", "product", "recurring", "type"},
    "checkout_create": {
        "mode", "success_url", "cancel_url", "customer", "customer_email", "line_items",
        "client_reference_id", "metadata", "subscription_data", "allow_promotion_codes",
        "expires_at", "adaptive_pricing", "after_expiration", "automatic_tax",
        "billing_address_collection", "consent_collection", "currency", "custom_fields",
        "custom_text", "customer_creation", "customer_update", "discounts", "invoice_creation",
        "locale", "optional_items", "payment_intent_data", "payment_method_collection",
        "payment_method_configuration", "payment_method_data", "payment_method_options",
        "payment_method_types", "permissions", "phone_number_collection",
        "redirect_on_completion", "return_url", "saved_payment_method_options",
        "setup_intent_data", "shipping_address_collection", "shipping_options", "submit_type",
        "tax_id_collection", "ui_mode", "wallet_options", "expand",
    },
    "checkout_list": _LIST
    | {"customer", "customer_details", "payment_intent", "payment_link", "status", "subscription"},
    "checkout_line_items": _LIST,
    "subscription_update": {
        "cancel_at_period_end", "metadata", "cancellation_details", "description", "cancel_at",
        "add_invoice_items", "application_fee_percent", "automatic_tax", "billing_cycle_anchor",
        "collection_method", "coupon", "days_until_due", "default_payment_method",
        "default_source", "default_tax_rates", "discounts", "invoice_settings", "items",
        "off_session", "on_behalf_of", "pause_collection", "payment_behavior",
        "payment_settings", "pending_invoice_item_interval", "proration_behavior",
        "proration_date", "transfer_data", "trial_end", "trial_from_plan", "trial_settings",
        "expand",
    },
    "subscription_cancel": {"cancellation_details", "invoice_now", "prorate", "expand"},
    "subscription_list": _LIST
    | {
        "automatic_tax", "collection_method", "current_period_end", "current_period_start",
        "customer", "price", "status", "test_clock",
    },
    "invoice_list": _LIST | {"collection_method", "customer", "due_date", "status", "subscription"},
    "portal_create": {
        "customer", "return_url", "configuration", "flow_data", "locale", "on_behalf_of",
        "expand",
    },
    "event_list": _LIST | {"delivery_success", "type", "types"},
}  # fmt: skip

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(f"^{pattern}$"), name)
    for method, pattern, name in [
        ("POST", r"/v1/customers", "customer_create"),
        ("GET", r"/v1/customers", "customer_list"),
        ("GET", r"/v1/customers/(?P<id>[^/]+)", "customer_retrieve"),
        ("POST", r"/v1/customers/(?P<id>[^/]+)", "customer_update"),
        ("DELETE", r"/v1/customers/(?P<id>[^/]+)", "customer_delete"),
        ("POST", r"/v1/products", "product_create"),
        ("GET", r"/v1/products", "product_list"),
        ("GET", r"/v1/products/(?P<id>[^/]+)", "product_retrieve"),
        ("POST", r"/v1/products/(?P<id>[^/]+)", "product_update"),
        ("POST", r"/v1/prices", "price_create"),
        ("GET", r"/v1/prices", "price_list"),
        ("GET", r"/v1/prices/(?P<id>[^/]+)", "price_retrieve"),
        ("POST", r"/v1/prices/(?P<id>[^/]+)", "price_update"),
        ("POST", r"/v1/checkout/sessions", "checkout_create"),
        ("GET", r"/v1/checkout/sessions", "checkout_list"),
        ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)", "checkout_retrieve"),
        ("POST", r"/v1/checkout/sessions/(?P<id>[^/]+)/expire", "checkout_expire"),
        ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)/line_items", "checkout_line_items"),
        ("GET", r"/v1/subscriptions", "subscription_list"),
        ("GET", r"/v1/subscriptions/(?P<id>[^/]+)", "subscription_retrieve"),
        ("POST", r"/v1/subscriptions/(?P<id>[^/]+)", "subscription_update"),
        ("DELETE", r"/v1/subscriptions/(?P<id>[^/]+)", "subscription_cancel"),
        ("GET", r"/v1/invoices", "invoice_list"),
        ("GET", r"/v1/invoices/(?P<id>[^/]+)", "invoice_retrieve"),
        ("POST", r"/v1/billing_portal/sessions", "portal_create"),
        ("GET", r"/v1/events", "event_list"),
        ("GET", r"/v1/events/(?P<id>[^/]+)", "event_retrieve"),
    ]
]


# --- wire format helpers -------------------------------------------------------------------


def sign_payload(payload: bytes, *, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header value Stripe would send with `payload`.

    `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<payload>" keyed with the webhook secret>`;
    pass an old `timestamp` or another `secret` to make stale or forged signatures.
    """
    if timestamp is None:
        timestamp = int(time.time())
    signed = str(timestamp).encode() + b"." + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def decode_params(encoded: str) -> dict[str, Any]:
    """Decode Stripe's bracket-notation form encoding into nested dicts and lists.

    `a[b][0][c]=1&a[b][0][d]=2&e[]=x&e[]=y` → `{"a": {"b": [{"c": "1", "d": "2"}]}, "e": [...]}`;
    values stay strings (booleans come as `true`/`false`). Keys of `metadata` are never
    turned into list indexes.
    """
    root: dict[str, Any] = {}
    for key, value in parse_qsl(encoded, keep_blank_values=True):
        match = _KEY.match(key)
        path = [match[1], *_SEGMENT.findall(match[2])] if match else [key]
        node = root
        for position, segment in enumerate(path):
            name = segment if segment != "" else str(len(node))
            if position == len(path) - 1:
                node[name] = value
                break
            child = node.get(name)
            if not isinstance(child, dict):
                child = {}
                node[name] = child
            node = child
    return {name: _listify(value, name) for name, value in root.items()}


def _listify(node: Any, key: str) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {name: _listify(value, name) for name, value in node.items()}
    if key != "metadata" and converted and all(_DIGITS.fullmatch(name) for name in converted):
        indexes = sorted(converted, key=int)
        if [int(index) for index in indexes] == list(range(len(indexes))):
            return [converted[index] for index in indexes]
    return converted


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _masked_key(key: str) -> str:
    """The key as Stripe echoes it in a 401: its prefix and last 4 characters, the rest starred."""
    match = re.match(r"^(?:sk|rk|pk)_(?:test|live)_", key)
    prefix = match.group(0) if match else ""
    rest = key[len(prefix) :]
    if len(rest) <= 4:
        return prefix + "*" * len(rest)
    return prefix + "*" * (len(rest) - 4) + rest[-4:]


def _public(obj: Obj) -> Obj:
    """A deep copy of a stored object without the stand-in's private `_` fields."""
    return {key: copy.deepcopy(value) for key, value in obj.items() if not key.startswith("_")}


def _previous_attributes(old: Obj, new: Obj) -> Obj:
    """Stripe's `previous_attributes`: the old values of what changed, nested objects by key."""
    previous: Obj = {}
    for key in old.keys() | new.keys():
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict) and before.get("object") != "list":
            previous[key] = _previous_attributes(before, after)
        else:
            previous[key] = copy.deepcopy(before)
    return previous


def _money(amount: int, currency: str) -> str:
    code = currency.lower()
    if code in _ZERO_DECIMAL:
        return f"{amount:,} {code.upper()}"
    return f"{amount / 100:,.2f} {code.upper()}"


def _interval_text(recurring: Obj | None) -> str:
    if not recurring:
        return "once"
    count, interval = recurring.get("interval_count") or 1, recurring["interval"]
    return f"every {interval}" if count == 1 else f"every {count} {interval}s"


def _utc(timestamp: int | None) -> str:
    if timestamp is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def _safe_location(url: str) -> str:
    """A URL fit for a Location header: no control characters, non-ASCII percent-encoded."""
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~")


class _ApiError(Exception):
    """A request Stripe would refuse; answered with Stripe's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self, request_id: str | None = None) -> Obj:
        error: Obj = {"message": self.message, "type": self.type}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        return {"error": error}


class _Conflict(ValueError):
    """A control call that doesn't fit the object's state (e.g. paying a completed session)."""


def _missing(param: str) -> _ApiError:
    return _ApiError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def _invalid(param: str, message: str, code: str | None = None) -> _ApiError:
    return _ApiError(400, message, code=code, param=param)


def _no_such(kind: str, object_id: str, *, param: str = "id", status: int = 404) -> _ApiError:
    return _ApiError(status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def _get_str(params: Obj, name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return None
    if not isinstance(value, str):
        raise _invalid(name, f"Invalid string: {json.dumps(value)}", "parameter_invalid_string")
    if required and value == "":
        raise _invalid(
            name,
            f"You passed an empty string for '{name}'. We assume empty values are an attempt "
            f"to unset a parameter; however '{name}' cannot be unset. You should remove "
            f"'{name}' from your request or supply a non-empty value.",
            "parameter_invalid_empty",
        )
    return value


def _get_int(
    params: Obj, name: str, *, required: bool = False, minimum: int | None = None
) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise _missing(name)
        return None
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]+", value):
        raise _invalid(name, f"Invalid integer: {value}", "parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise _invalid(
            name,
            f"This value must be greater than or equal to {minimum}.",
            "parameter_invalid_integer",
        )
    return number


def _get_bool(params: Obj, name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if value in ("true", "false"):
        return value == "true"
    raise _invalid(name, f"Invalid boolean: {value}")


def _get_list(params: Obj, name: str) -> list[Any] | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and all(_DIGITS.fullmatch(key) for key in value):
        return [value[key] for key in sorted(value, key=int)]
    raise _invalid(name, f"Invalid array: {name} must be an array")


def _get_url(params: Obj, name: str, *, required: bool = False) -> str | None:
    value = _get_str(params, name, required=required)
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid(name, "Not a valid URL", "url_invalid")
    return value


def _apply_metadata(target: Obj, value: Any, param: str = "metadata") -> None:
    """Stripe's metadata update: merge keys, an empty value unsets a key, "" unsets them all."""
    if value is None:
        return
    if value == "":
        target.clear()
        return
    if not isinstance(value, dict):
        raise _invalid(param, "Invalid hash", "parameter_invalid_string")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _invalid(f"{param}[{key}]", "Invalid metadata value: must be a string")
        if len(key) > 40:
            raise _invalid(
                param, f"Metadata keys can have up to 40 characters, but '{key}' is longer."
            )
        if len(item) > 500:
            raise _invalid(
                f"{param}[{key}]",
                f"Metadata values can have up to 500 characters, but you passed in a value "
                f"that is {len(item)} characters.",
            )
        if item == "":
            target.pop(key, None)
        else:
            target[key] = item
    if len(target) > 50:
        raise _invalid(param, "You can specify up to 50 keys in metadata.")


def _event_payload(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, indent=2).encode("utf-8")


def _post_webhook(url: str, payload: bytes, signature: str, timeout: float) -> int:
    parts = urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            target,
            body=payload,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": WEBHOOK_USER_AGENT,
                "Accept": "*/*; q=0.5, application/xml",
                "Cache-Control": "no-cache",
                "Stripe-Signature": signature,
            },
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _unrecognized(method: str, path: str) -> _ApiError:
    return _ApiError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
    )


def _match_route(method: str, path: str) -> tuple[str, tuple[str, ...]]:
    for route_method, pattern, name in _ROUTES:
        match = pattern.match(path)
        if match is not None and route_method == method:
            return name, match.groups()
    raise _unrecognized(method, path)


# --- shared state ------------------------------------------------------------------------


@dataclass
class _FailRule:
    method: str | None
    path_prefix: str
    status: int
    count: int
    hang: float


@dataclass
class _Ctx:
    """One API request: where its events come from and where they are collected."""

    request_id: str | None = None
    idempotency_key: str | None = None
    events: list[Obj] = field(default_factory=list)


@dataclass
class _ApiResult:
    status: int
    body: bytes
    headers: dict[str, str]
    events: list[Obj]
    hang: float = 0.0


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    event_id: str = field(compare=False)
    event_type: str = field(compare=False)
    payload: bytes = field(compare=False)
    retry_index: int = field(compare=False)


_STORES = (
    "customers",
    "products",
    "prices",
    "sessions",
    "subscriptions",
    "invoices",
    "portal_sessions",
    "events",
)


class _State:
    """What the server threads and the control API share; every object lives under `lock`."""

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        webhook_url: str | None,
        deliver: DeliverFn | None,
        state_file: str | os.PathLike[str] | None,
        retry_schedule: Sequence[float],
    ) -> None:
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.deliver_fn = deliver
        self.state_file = Path(state_file) if state_file else None
        self.retry_schedule = tuple(float(delay) for delay in retry_schedule)
        self.base_url = "http://127.0.0.1"
        self.clock_offset = 0.0
        self.portal_configuration = _new_id("bpc_")
        self.customers: dict[str, Obj] = {}
        self.products: dict[str, Obj] = {}
        self.prices: dict[str, Obj] = {}
        self.sessions: dict[str, Obj] = {}
        self.subscriptions: dict[str, Obj] = {}
        self.invoices: dict[str, Obj] = {}
        self.portal_sessions: dict[str, Obj] = {}
        self.events: dict[str, Obj] = {}
        self.deliveries: list[Obj] = []
        self.requests: list[Obj] = []
        self.idempotency: dict[str, Obj] = {}
        self.failures: list[_FailRule] = []
        self.pending: list[str] = []
        self.server_events: list[Obj] = []  # emitted outside any request (lazy expiry)
        self._attempts: dict[str, int] = {}
        self._queue: list[_Delivery] = []
        self._queue_cv = threading.Condition()
        self._seq = itertools.count()
        self._worker: threading.Thread | None = None
        self._load()

    # --- persistence -----------------------------------------------------------------------

    def _load(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        data = json.loads(self.state_file.read_text(encoding="utf-8"))
        for name in _STORES:
            setattr(self, name, {obj["id"]: obj for obj in data.get(name, [])})
        self.portal_configuration = data.get("portal_configuration", self.portal_configuration)
        self.clock_offset = float(data.get("clock_offset", 0.0))

    def now(self) -> int:
        """The stand-in's clock in unix seconds: real time, plus what advance_clock added."""
        return int(time.time() + self.clock_offset)

    def advance_clock(self, seconds: float) -> int:
        if seconds < 0:
            raise ValueError("The clock only moves forward.")
        with self.lock:
            self.clock_offset += seconds
            self.save()
            return self.now()

    def save(self) -> None:
        """Write the state file atomically (a temporary file renamed over the old one)."""
        if self.state_file is None:
            return
        with self.lock:
            data: Obj = {name: list(getattr(self, name).values()) for name in _STORES}
            data["portal_configuration"] = self.portal_configuration
            data["clock_offset"] = self.clock_offset
            text = json.dumps(data, indent=1)
            directory = self.state_file.parent
            directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                dir=directory, prefix=f".{self.state_file.name}.", suffix=".tmp"
            )
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as stream:
                    stream.write(text)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(temporary, self.state_file)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise

    def reset(self) -> None:
        with self.lock:
            for name in _STORES:
                getattr(self, name).clear()
            self.deliveries.clear()
            self.requests.clear()
            self.idempotency.clear()
            self.failures.clear()
            self.pending.clear()
            self.server_events.clear()
            self._attempts.clear()
            self.clock_offset = 0.0
            self.save()
        with self._queue_cv:
            self._queue.clear()

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the server stops."""
        if seconds > 0:
            self.stopping.wait(seconds)

    # --- rendering -----------------------------------------------------------------------

    def render(self, obj: Obj, expand: Iterable[str] = ()) -> Obj:
        """The public form of a stored object, with `expand` paths replaced by objects."""
        result = _public(obj)
        if result.get("object") == "checkout.session":
            result["url"] = (
                f"{self.base_url}/checkout/pay/{result['id']}"
                if result["status"] == "open"
                else None
            )
        elif result.get("object") == "billing_portal.session":
            result["url"] = f"{self.base_url}/portal/{result['id']}"
        for path in expand:
            self._expand(result, path.split("."))
        return result

    def _lookup(self, object_id: str) -> Obj | None:
        stores = {
            "cus_": self.customers,
            "prod_": self.products,
            "price_": self.prices,
            "sub_": self.subscriptions,
            "in_": self.invoices,
            "cs_": self.sessions,
            "evt_": self.events,
        }
        for prefix, store in stores.items():
            if object_id.startswith(prefix) and object_id in store:
                return self.render(store[object_id])
        if object_id in self.products:  # a product created with a custom id
            return self.render(self.products[object_id])
        return None

    def _expand(self, value: Any, path: list[str]) -> None:
        if not path:
            return
        if isinstance(value, list):
            for item in value:
                self._expand(item, path)
            return
        if not isinstance(value, dict):
            return
        head, rest = path[0], path[1:]
        if head == "line_items" and value.get("object") == "checkout.session":
            stored = self.sessions.get(value["id"])
            if stored is not None:
                value["line_items"] = self._line_items_list(stored, {})
        if head not in value:
            return
        child = value[head]
        if isinstance(child, str):
            resolved = self._lookup(child)
            if resolved is not None:
                value[head] = child = resolved
        self._expand(child, rest)

    def _paginate(self, url: str, items: list[Obj], params: Obj, kind: str) -> Obj:
        """A Stripe list page of `items` (newest first), rendered and expanded."""
        limit = _get_int(params, "limit", minimum=1)
        if limit is None:
            limit = 10
        if limit > 100:
            raise _invalid("limit", "This value must be less than or equal to 100.")
        ids = [item["id"] for item in items]
        starting_after = _get_str(params, "starting_after")
        ending_before = _get_str(params, "ending_before")
        if starting_after:
            if starting_after not in ids:
                raise _no_such(kind, starting_after, param="starting_after", status=400)
            rest = items[ids.index(starting_after) + 1 :]
            page, has_more = rest[:limit], len(rest) > limit
        elif ending_before:
            if ending_before not in ids:
                raise _no_such(kind, ending_before, param="ending_before", status=400)
            end = ids.index(ending_before)
            page, has_more = items[max(0, end - limit) : end], end > limit
        else:
            page, has_more = items[:limit], len(items) > limit
        expand = [path.removeprefix("data.") for path in self._expand_paths(params)]
        expand = [path for path in expand if path]
        return {
            "object": "list",
            "data": [self.render(item, expand) for item in page],
            "has_more": has_more,
            "url": url,
        }

    @staticmethod
    def _expand_paths(params: Obj) -> list[str]:
        paths = _get_list(params, "expand") or []
        return [path for path in paths if isinstance(path, str)]

    # --- events and deliveries -----------------------------------------------------------

    def _emit(
        self, event_type: str, obj: Obj, ctx: _Ctx | None, previous: Obj | None = None
    ) -> Obj:
        event: Obj = {
            "id": _new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": {"object": self.render(obj)},
            "livemode": False,
            "pending_webhooks": 1 if (self.webhook_url or self.deliver_fn) else 0,
            "request": {
                "id": ctx.request_id if ctx else None,
                "idempotency_key": ctx.idempotency_key if ctx else None,
            },
            "type": event_type,
        }
        if previous is not None:
            event["data"]["previous_attributes"] = previous
        self.events[event["id"]] = event
        if ctx is not None:
            ctx.events.append(event)
        return event

    def dispatch_from_api(self, events: list[Obj]) -> None:
        """Events of an API call: delivered in the background, or queued for deliver_pending."""
        if not events:
            return
        if self.deliver_fn is not None:
            with self.lock:
                self.pending.extend(event["id"] for event in events)
        elif self.webhook_url:
            for event in events:
                self._schedule(event, retry_index=0, delay=0.0)

    def dispatch_from_server(self, events: list[Obj]) -> None:
        """Events of a page or control endpoint: delivered now, or queued for deliver_pending."""
        if not events:
            return
        if self.deliver_fn is not None:
            with self.lock:
                self.pending.extend(event["id"] for event in events)
        elif self.webhook_url:
            self.deliver_now(events)

    def deliver_now(self, events: Iterable[Mapping[str, Any]]) -> list[int | None]:
        return [self.attempt(self._delivery(event, retry_index=0)) for event in events]

    def deliver_pending(self) -> list[Obj]:
        with self.lock:
            ids, self.pending = self.pending, []
            events = [copy.deepcopy(self.events[event_id]) for event_id in ids]
        self.deliver_now(events)
        return events

    def _delivery(self, event: Mapping[str, Any], *, retry_index: int, due: float = 0) -> _Delivery:
        return _Delivery(
            due=due,
            seq=next(self._seq),
            event_id=str(event.get("id")),
            event_type=str(event.get("type")),
            payload=_event_payload(event),
            retry_index=retry_index,
        )

    def attempt(self, delivery: _Delivery) -> int | None:
        """POST one event once; record it; on failure schedule the next retry, if any is left."""
        if self.deliver_fn is None and not self.webhook_url:
            return None
        signature = sign_payload(delivery.payload, secret=self.webhook_secret)
        status: int | None = None
        error: str | None = None
        try:
            if self.deliver_fn is not None:
                status = int(self.deliver_fn(delivery.payload, signature))
            else:
                assert self.webhook_url is not None
                status = _post_webhook(
                    self.webhook_url, delivery.payload, signature, WEBHOOK_TIMEOUT
                )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        succeeded = status is not None and 200 <= status < 300
        with self.lock:
            number = self._attempts.get(delivery.event_id, 0) + 1
            self._attempts[delivery.event_id] = number
            self.deliveries.append(
                {
                    "event": delivery.event_id,
                    "type": delivery.event_type,
                    "attempt": number,
                    "status": status,
                    "error": error,
                    "at": time.time(),
                }
            )
        if not succeeded and delivery.retry_index < len(self.retry_schedule):
            delay = self.retry_schedule[delivery.retry_index]
            self._enqueue(
                dataclasses.replace(delivery, retry_index=delivery.retry_index + 1), delay
            )
        return status

    def _schedule(self, event: Obj, *, retry_index: int, delay: float) -> None:
        self._enqueue(self._delivery(event, retry_index=retry_index), delay)

    def _enqueue(self, delivery: _Delivery, delay: float) -> None:
        if self.stopping.is_set():
            return
        with self._queue_cv:
            delivery.due = time.monotonic() + delay
            delivery.seq = next(self._seq)
            heapq.heappush(self._queue, delivery)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="fake-stripe-webhooks", daemon=True
                )
                self._worker.start()
            self._queue_cv.notify()

    def _work(self) -> None:
        while True:
            with self._queue_cv:
                delivery: _Delivery | None = None
                while delivery is None:
                    if self.stopping.is_set():
                        return
                    now = time.monotonic()
                    if self._queue and self._queue[0].due <= now:
                        delivery = heapq.heappop(self._queue)
                    else:
                        timeout = self._queue[0].due - now if self._queue else None
                        self._queue_cv.wait(timeout)
            self.attempt(delivery)

    def stop_worker(self) -> None:
        self.stopping.set()
        with self._queue_cv:
            self._queue.clear()
            self._queue_cv.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=WEBHOOK_TIMEOUT + 1)
        self._worker = None

    def wait_for_deliveries(self, count: int, timeout: float) -> list[Obj]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.deliveries) >= count:
                    return copy.deepcopy(self.deliveries)
            if time.monotonic() >= deadline:
                with self.lock:
                    raise TimeoutError(
                        f"{len(self.deliveries)} webhook deliveries after {timeout} s, "
                        f"not {count}: {self.deliveries}"
                    )
            time.sleep(0.01)

    # --- the API -------------------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        params: Obj,
        *,
        api_key: str | None,
        idempotency_key: str | None,
        stripe_version: str | None,
        stripe_account: str | None,
        request_id: str,
    ) -> _ApiResult:
        """Answer one /v1 request: fail_next rules, the key, idempotency, then the route."""
        record: Obj = {
            "method": method,
            "path": path,
            "params": params,
            "idempotency_key": idempotency_key,
            "stripe_version": stripe_version,
            "stripe_account": stripe_account,
            "request_id": request_id,
            "status": None,
        }
        headers = {"Stripe-Version": stripe_version or API_VERSION}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        with self.lock:
            self.requests.append(record)
            rule = self._take_failure(method, path)
            if rule is not None:
                error = _ApiError(
                    rule.status,
                    "Something went wrong on Stripe's end (injected by the local stand-in).",
                    type="api_error",
                )
                record["status"] = rule.status
                return _ApiResult(
                    rule.status, self._json(error.body(request_id)), headers, [], rule.hang
                )
            try:
                self._authenticate(api_key)
                result = self._route(method, path, params, idempotency_key, request_id, headers)
            except _ApiError as exc:
                result = _ApiResult(exc.status, self._json(exc.body(request_id)), headers, [])
            except Exception:  # a bug in the stand-in: say so, as Stripe's 500 would
                traceback.print_exc()
                error = _ApiError(500, "The local Stripe stand-in failed.", type="api_error")
                result = _ApiResult(500, self._json(error.body(request_id)), headers, [])
            record["status"] = result.status
            if result.events or (method != "GET" and 200 <= result.status < 300):
                self.save()
            return result

    @staticmethod
    def _json(payload: Any) -> bytes:
        return json.dumps(payload, indent=2).encode("utf-8")

    def _take_failure(self, method: str, path: str) -> _FailRule | None:
        for rule in self.failures:
            if (rule.method is None or rule.method == method) and path.startswith(rule.path_prefix):
                rule.count -= 1
                if rule.count <= 0:
                    self.failures.remove(rule)
                return rule
        return None

    def _authenticate(self, api_key: str | None) -> None:
        if not api_key:
            raise _ApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                "or we can help at https://support.stripe.com/.",
            )
        if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
            raise _ApiError(401, f"Invalid API Key provided: {_masked_key(api_key)}")

    def _route(
        self,
        method: str,
        path: str,
        params: Obj,
        idempotency_key: str | None,
        request_id: str,
        headers: dict[str, str],
    ) -> _ApiResult:
        name, ids = _match_route(method, path)
        if method == "POST" and idempotency_key:
            replay = self._idempotent_replay(idempotency_key, method, path, params, headers)
            if replay is not None:
                return replay
        allowed = _PARAMS.get(name, {"expand"})
        for key in params:
            if key not in allowed:
                raise _ApiError(
                    400,
                    f"Received unknown parameter: {key}",
                    code="parameter_unknown",
                    param=key,
                )
        ctx = _Ctx(request_id=request_id, idempotency_key=idempotency_key)
        handler: Callable[..., Obj] = getattr(self, f"_api_{name}")
        payload = handler(ctx, params, *ids)
        body = self._json(payload)
        if method == "POST" and idempotency_key:
            self.idempotency[idempotency_key] = {
                "created": self.now(),
                "method": method,
                "path": path,
                "params": params,
                "status": 200,
                "body": body,
            }
        return _ApiResult(200, body, headers, ctx.events)

    def _idempotent_replay(
        self, key: str, method: str, path: str, params: Obj, headers: dict[str, str]
    ) -> _ApiResult | None:
        if len(key) > 255:
            raise _ApiError(
                400,
                "Invalid Idempotency-Key: keys can be no longer than 255 characters.",
                type="idempotency_error",
            )
        horizon = self.now() - IDEMPOTENCY_TTL
        for stale in [k for k, entry in self.idempotency.items() if entry["created"] < horizon]:
            del self.idempotency[stale]
        entry = self.idempotency.get(key)
        if entry is None:
            return None
        if entry["method"] != method or entry["path"] != path:
            raise _ApiError(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they were "
                f"first used for ('{entry['method']} {entry['path']}' vs '{method} {path}'). Try "
                f"using a key other than '{key}' if you meant to execute a different request.",
                type="idempotency_error",
            )
        if entry["params"] != params:
            raise _ApiError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type="idempotency_error",
            )
        return _ApiResult(
            entry["status"], entry["body"], {**headers, "Idempotent-Replayed": "true"}, []
        )

    # --- lookups -------------------------------------------------------------------------

    def _customer(self, customer_id: str, *, param: str = "id", status: int = 404) -> Obj:
        customer = self.customers.get(customer_id)
        if customer is None or customer.get("deleted"):
            raise _no_such("customer", customer_id, param=param, status=status)
        return customer

    def _find(self, store: dict[str, Obj], kind: str, object_id: str) -> Obj:
        obj = store.get(object_id)
        if obj is None:
            raise _no_such(kind, object_id)
        return obj

    # --- customers -----------------------------------------------------------------------

    def _api_customer_create(self, ctx: _Ctx, params: Obj) -> Obj:
        customer: Obj = {
            "id": _new_id("cus_", 14),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self.now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "discount": None,
            "email": None,
            "invoice_prefix": "".join(secrets.choice("0123456789ABCDEF") for _ in range(8)),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": {},
            "name": None,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self._update_customer(customer, params)
        self.customers[customer["id"]] = customer
        return self.render(customer, self._expand_paths(params))

    def _update_customer(self, customer: Obj, params: Obj) -> None:
        email = _get_str(params, "email")
        if email and not _EMAIL.match(email):
            raise _invalid("email", f"Invalid email address: {email}", "email_invalid")
        for name in ("email", "name", "phone", "description"):
            value = _get_str(params, name)
            if value is not None:
                customer[name] = value or None
        _apply_metadata(customer["metadata"], params.get("metadata"))

    def _api_customer_retrieve(self, ctx: _Ctx, params: Obj, customer_id: str) -> Obj:
        customer = self._find(self.customers, "customer", customer_id)
        return self.render(customer, self._expand_paths(params))

    def _api_customer_update(self, ctx: _Ctx, params: Obj, customer_id: str) -> Obj:
        customer = self._customer(customer_id)
        self._update_customer(customer, params)
        return self.render(customer, self._expand_paths(params))

    def _api_customer_delete(self, ctx: _Ctx, params: Obj, customer_id: str) -> Obj:
        self._customer(customer_id)
        for subscription in list(self.subscriptions.values()):
            if subscription["customer"] == customer_id and subscription["status"] != "canceled":
                self._cancel_subscription(subscription, ctx)
        stub = {"id": customer_id, "object": "customer", "deleted": True}
        self.customers[customer_id] = stub
        return dict(stub)

    def customer_delete(self, customer_id: str) -> list[Obj]:
        """Delete a customer as Stripe's dashboard does; its subscriptions end now."""
        with self.lock:
            customer = self.customers.get(customer_id)
            if customer is None:
                raise KeyError(f"No such customer: {customer_id!r}")
            if customer.get("deleted"):
                raise _Conflict(f"Customer {customer_id} is already deleted.")
            ctx = _Ctx()
            self._api_customer_delete(ctx, {}, customer_id)
            self.save()
            return copy.deepcopy(ctx.events)

    def _api_customer_list(self, ctx: _Ctx, params: Obj) -> Obj:
        email = _get_str(params, "email")
        items = [
            customer
            for customer in reversed(self.customers.values())
            if not customer.get("deleted") and (email is None or customer["email"] == email)
        ]
        return self._paginate("/v1/customers", items, params, "customer")

    # --- products and prices -------------------------------------------------------------

    def _api_product_create(self, ctx: _Ctx, params: Obj) -> Obj:
        name = _get_str(params, "name", required=True)
        product_id = _get_str(params, "id") or _new_id("prod_", 14)
        if product_id in self.products:
            raise _ApiError(
                400, "Product already exists.", code="resource_already_exists", param="id"
            )
        now = self.now()
        product: Obj = {
            "id": product_id,
            "object": "product",
            "active": True,
            "attributes": [],
            "created": now,
            "default_price": None,
            "description": None,
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": {},
            "name": name,
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": _get_str(params, "type") or "service",
            "unit_label": None,
            "updated": now,
            "url": None,
        }
        self._update_product(product, params)
        default_price_data = params.get("default_price_data")
        if isinstance(default_price_data, dict):
            price = self._new_price(
                {**default_price_data, "product": product_id}, param_prefix="default_price_data"
            )
            product["default_price"] = price["id"]
        self.products[product_id] = product
        return self.render(product, self._expand_paths(params))

    def _update_product(self, product: Obj, params: Obj) -> None:
        active = _get_bool(params, "active")
        if active is not None:
            product["active"] = active
        name = _get_str(params, "name")
        if name:
            product["name"] = name
        description = _get_str(params, "description")
        if description is not None:
            product["description"] = description or None
        default_price = _get_str(params, "default_price")
        if default_price:
            if default_price not in self.prices:
                raise _no_such("price", default_price, param="default_price", status=400)
            product["default_price"] = default_price
        _apply_metadata(product["metadata"], params.get("metadata"))
        product["updated"] = self.now()

    def _api_product_retrieve(self, ctx: _Ctx, params: Obj, product_id: str) -> Obj:
        product = self._find(self.products, "product", product_id)
        return self.render(product, self._expand_paths(params))

    def _api_product_update(self, ctx: _Ctx, params: Obj, product_id: str) -> Obj:
        product = self._find(self.products, "product", product_id)
        self._update_product(product, params)
        return self.render(product, self._expand_paths(params))

    def _api_product_list(self, ctx: _Ctx, params: Obj) -> Obj:
        active = _get_bool(params, "active")
        ids = _get_list(params, "ids")
        items = [
            product
            for product in reversed(self.products.values())
            if (active is None or product["active"] == active)
            and (ids is None or product["id"] in ids)
        ]
        return self._paginate("/v1/products", items, params, "product")

    def _new_price(self, params: Obj, *, param_prefix: str = "") -> Obj:
        def name(param: str) -> str:
            if not param_prefix:
                return param
            head, bracket, rest = param.partition("[")
            return f"{param_prefix}[{head}]{bracket}{rest}"

        try:
            currency = _get_str(params, "currency", required=True) or ""
            unit_amount = _get_int(params, "unit_amount", minimum=0)
        except _ApiError as exc:
            if exc.param and param_prefix:
                exc.message = exc.message.replace(exc.param, name(exc.param))
                exc.param = name(exc.param)
            raise
        product_id = _get_str(params, "product")
        product_data = params.get("product_data")
        if product_id:
            if product_id not in self.products:
                raise _no_such("product", product_id, param=name("product"), status=400)
        elif isinstance(product_data, dict):
            if not product_data.get("name"):
                raise _missing("product_data[name]")
            product_id = self._api_product_create(_Ctx(), {"name": product_data["name"]})["id"]
        else:
            raise _missing(name("product"))
        if unit_amount is None:
            decimal = params.get("unit_amount_decimal")
            if not isinstance(decimal, str) or not re.fullmatch(r"[0-9]+(\.0+)?", decimal):
                raise _missing(name("unit_amount"))
            unit_amount = int(decimal.split(".")[0])
        recurring_param = params.get("recurring")
        recurring: Obj | None = None
        if isinstance(recurring_param, dict):
            interval = recurring_param.get("interval")
            if not interval:
                raise _missing(name("recurring[interval]"))
            if interval not in _INTERVAL_SECONDS:
                raise _invalid(
                    name("recurring[interval]"),
                    "Invalid recurring[interval]: must be one of day, month, week, or year",
                )
            count = recurring_param.get("interval_count") or "1"
            if not isinstance(count, str) or not _DIGITS.fullmatch(count) or int(count) < 1:
                raise _invalid(name("recurring[interval_count]"), f"Invalid integer: {count}")
            recurring = {
                "interval": interval,
                "interval_count": int(count),
                "meter": None,
                "trial_period_days": None,
                "usage_type": recurring_param.get("usage_type") or "licensed",
            }
        elif recurring_param not in (None, ""):
            raise _invalid(name("recurring"), "Invalid hash")
        lookup_key = _get_str(params, "lookup_key") or None
        if lookup_key is not None:
            if len(lookup_key) > 200:
                raise _invalid(name("lookup_key"), "Lookup keys can have up to 200 characters.")
            self._claim_lookup_key(lookup_key, bool(_get_bool(params, "transfer_lookup_key")))
        active = _get_bool(params, "active")
        price: Obj = {
            "id": _new_id("price_"),
            "object": "price",
            "active": True if active is None else active,
            "billing_scheme": "per_unit",
            "created": self.now(),
            "currency": currency.lower(),
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": {},
            "nickname": _get_str(params, "nickname") or None,
            "product": product_id,
            "recurring": recurring,
            "tax_behavior": _get_str(params, "tax_behavior") or "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }
        _apply_metadata(price["metadata"], params.get("metadata"), name("metadata"))
        self.prices[price["id"]] = price
        return price

    def _claim_lookup_key(self, lookup_key: str, transfer: bool, owner: str | None = None) -> None:
        for other in self.prices.values():
            if other["lookup_key"] == lookup_key and other["id"] != owner:
                if not transfer:
                    raise _invalid(
                        "lookup_key",
                        f"A price (`{other['id']}`) already uses that lookup key.",
                    )
                other["lookup_key"] = None

    def _api_price_create(self, ctx: _Ctx, params: Obj) -> Obj:
        return self.render(self._new_price(params), self._expand_paths(params))

    def _api_price_retrieve(self, ctx: _Ctx, params: Obj, price_id: str) -> Obj:
        price = self._find(self.prices, "price", price_id)
        return self.render(price, self._expand_paths(params))

    def _api_price_update(self, ctx: _Ctx, params: Obj, price_id: str) -> Obj:
        price = self._find(self.prices, "price", price_id)
        active = _get_bool(params, "active")
        if active is not None:
            price["active"] = active
        nickname = _get_str(params, "nickname")
        if nickname is not None:
            price["nickname"] = nickname or None
        lookup_key = _get_str(params, "lookup_key")
        if lookup_key:
            transfer = bool(_get_bool(params, "transfer_lookup_key"))
            self._claim_lookup_key(lookup_key, transfer, owner=price_id)
            price["lookup_key"] = lookup_key
        elif lookup_key == "":
            price["lookup_key"] = None
        _apply_metadata(price["metadata"], params.get("metadata"))
        return self.render(price, self._expand_paths(params))

    def _api_price_list(self, ctx: _Ctx, params: Obj) -> Obj:
        lookup_keys = _get_list(params, "lookup_keys")
        active = _get_bool(params, "active")
        product = _get_str(params, "product")
        price_type = _get_str(params, "type")
        currency = _get_str(params, "currency")
        if price_type not in (None, "recurring", "one_time"):
            raise _invalid("type", "Invalid type: must be one of one_time or recurring")
        items = [
            price
            for price in reversed(self.prices.values())
            if (lookup_keys is None or price["lookup_key"] in lookup_keys)
            and (active is None or price["active"] == active)
            and (product is None or price["product"] == product)
            and (price_type is None or price["type"] == price_type)
            and (currency is None or price["currency"] == currency.lower())
        ]
        return self._paginate("/v1/prices", items, params, "price")

    # --- checkout ------------------------------------------------------------------------

    def _api_checkout_create(self, ctx: _Ctx, params: Obj) -> Obj:
        mode = _get_str(params, "mode", required=True)
        if mode not in ("subscription", "payment"):
            raise _invalid(
                "mode",
                f"Invalid mode: {mode}. The local stand-in supports `payment` and "
                "`subscription` (Stripe also has `setup`).",
            )
        success_url = _get_url(params, "success_url", required=True)
        cancel_url = _get_url(params, "cancel_url")
        customer_id = _get_str(params, "customer") or None
        customer = (
            self._customer(customer_id, param="customer", status=400) if customer_id else None
        )
        customer_email = _get_str(params, "customer_email") or None
        if customer and customer_email:
            raise _invalid(
                "customer_email",
                "You may only specify one of these parameters: customer, customer_email.",
            )
        raw_items = _get_list(params, "line_items")
        if not raw_items:
            raise _missing("line_items")
        line_items: list[Obj] = []
        currency: str | None = None
        for index, raw in enumerate(raw_items):
            prefix = f"line_items[{index}]"
            if not isinstance(raw, dict):
                raise _invalid(prefix, "Invalid hash")
            price_id = raw.get("price")
            if not price_id:
                raise _missing(f"{prefix}[price]")
            price = self.prices.get(price_id)
            if price is None:
                raise _no_such("price", price_id, param=f"{prefix}[price]", status=400)
            if not price["active"]:
                raise _invalid(
                    f"{prefix}[price]",
                    "The price specified is inactive. This field only accepts active prices.",
                )
            quantity = _get_int(raw, "quantity", minimum=1)
            if quantity is None:
                raise _missing(f"{prefix}[quantity]")
            if mode == "payment" and price["type"] == "recurring":
                raise _invalid(
                    f"{prefix}[price]",
                    "You specified `payment` mode but passed a recurring price. Either switch to "
                    "`subscription` mode or use only one-time prices.",
                )
            if currency and price["currency"] != currency:
                raise _invalid(f"{prefix}[price]", "All prices must use the same currency.")
            currency = price["currency"]
            line_items.append({"price": price_id, "quantity": quantity})
        if mode == "subscription" and not any(
            self.prices[item["price"]]["type"] == "recurring" for item in line_items
        ):
            raise _invalid(
                "line_items",
                "You must provide at least one recurring price in `subscription` mode when "
                "using prices.",
            )
        subscription_data = params.get("subscription_data") or {}
        if not isinstance(subscription_data, dict):
            raise _invalid("subscription_data", "Invalid hash")
        trial_days = _get_int(subscription_data, "trial_period_days", minimum=1)
        subscription_metadata: Obj = {}
        _apply_metadata(
            subscription_metadata,
            subscription_data.get("metadata"),
            "subscription_data[metadata]",
        )
        expires_at = _get_int(params, "expires_at")
        now = self.now()
        amount = sum(
            self.prices[item["price"]]["unit_amount"] * item["quantity"] for item in line_items
        )
        session: Obj = {
            "id": _new_id("cs_test_", 58),
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": _get_bool(params, "allow_promotion_codes"),
            "amount_subtotal": amount,
            "amount_total": amount,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": cancel_url,
            "client_reference_id": _get_str(params, "client_reference_id") or None,
            "created": now,
            "currency": currency,
            "customer": customer_id,
            "customer_creation": None,
            "customer_details": (
                {"email": customer_email, "address": None, "name": None, "phone": None,
                 "tax_exempt": "none", "tax_ids": None}
                if customer_email else None
            ),
            "customer_email": customer_email,
            "expires_at": expires_at or now + CHECKOUT_TTL,
            "invoice": None,
            "livemode": False,
            "locale": _get_str(params, "locale") or None,
            "metadata": {},
            "mode": mode,
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": None,
            "_line_items": line_items,
            "_trial_period_days": trial_days if mode == "subscription" else None,
            "_subscription_metadata": subscription_metadata,
        }  # fmt: skip
        _apply_metadata(session["metadata"], params.get("metadata"))
        self.sessions[session["id"]] = session
        return self.render(session, self._expand_paths(params))

    def _session(self, session_id: str) -> Obj:
        session = self._find(self.sessions, "checkout.session", session_id)
        self._expire_if_due(session)
        return session

    def _expire_if_due(self, session: Obj) -> None:
        if session["status"] == "open" and self.now() >= session["expires_at"]:
            self._expire(session, None)

    def _expire(self, session: Obj, ctx: _Ctx | None) -> None:
        session["status"] = "expired"
        session["url"] = None
        event = self._emit("checkout.session.expired", session, ctx)
        if ctx is None:
            self.server_events.append(event)
        self.save()

    def take_server_events(self) -> list[Obj]:
        with self.lock:
            events, self.server_events = self.server_events, []
            return events

    def _api_checkout_retrieve(self, ctx: _Ctx, params: Obj, session_id: str) -> Obj:
        return self.render(self._session(session_id), self._expand_paths(params))

    def _api_checkout_expire(self, ctx: _Ctx, params: Obj, session_id: str) -> Obj:
        session = self._session(session_id)
        if session["status"] != "open":
            raise _invalid(
                "session",
                f'Only Checkout Sessions with a status in ["open"] can be expired. This '
                f'Checkout Session has a status of "{session["status"]}".',
            )
        self._expire(session, ctx)
        return self.render(session, self._expand_paths(params))

    def _api_checkout_list(self, ctx: _Ctx, params: Obj) -> Obj:
        customer = _get_str(params, "customer")
        subscription = _get_str(params, "subscription")
        status = _get_str(params, "status")
        items = [
            session
            for session in reversed(self.sessions.values())
            if (customer is None or session["customer"] == customer)
            and (subscription is None or session["subscription"] == subscription)
            and (status is None or session["status"] == status)
        ]
        return self._paginate("/v1/checkout/sessions", items, params, "checkout.session")

    def _line_items_list(self, session: Obj, params: Obj) -> Obj:
        items: list[Obj] = []
        for index, item in enumerate(session["_line_items"]):
            price = self.prices[item["price"]]
            product = self.products.get(price["product"], {})
            amount = price["unit_amount"] * item["quantity"]
            items.append(
                {
                    "id": f"li_{session['id'][8:30]}{index}",
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": amount,
                    "amount_tax": 0,
                    "amount_total": amount,
                    "currency": price["currency"],
                    "description": product.get("name"),
                    "price": self.render(price),
                    "quantity": item["quantity"],
                }
            )
        url = f"/v1/checkout/sessions/{session['id']}/line_items"
        return self._paginate(
            url, items, {k: v for k, v in params.items() if k != "expand"}, "item"
        )

    def _api_checkout_line_items(self, ctx: _Ctx, params: Obj, session_id: str) -> Obj:
        return self._line_items_list(self._session(session_id), params)

    def set_trial_days(self, session_id: str, days: int | None) -> None:
        """As if the session had been created with `subscription_data[trial_period_days]`."""
        if days is not None and days < 1:
            raise ValueError("A trial lasts at least 1 day.")
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                raise KeyError(f"No such checkout session: {session_id!r}")
            if session["status"] != "open" or session["mode"] != "subscription":
                raise _Conflict(
                    f"Checkout session {session_id} is {session['status']} {session['mode']}, "
                    "not an open subscription checkout."
                )
            session["_trial_period_days"] = days
            self.save()

    def complete_checkout(
        self, session_id: str, *, period_seconds: int | None = None, ctx: _Ctx | None = None
    ) -> list[Obj]:
        """Pay an open session: its customer, subscription and invoice, and their events."""
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                raise KeyError(f"No such checkout session: {session_id!r}")
            self._expire_if_due(session)
            if session["status"] != "open":
                raise _Conflict(f"Checkout session {session_id} is {session['status']}.")
            ctx = ctx or _Ctx()
            customer_id = session["customer"]
            customer = self.customers.get(customer_id) if customer_id else None
            if customer is None or customer.get("deleted"):
                created = {"email": session["customer_email"]} if session["customer_email"] else {}
                customer_id = self._api_customer_create(_Ctx(), created)["id"]
                customer = self.customers[customer_id]
            session["customer"] = customer_id
            session["customer_details"] = {
                "address": None,
                "email": customer["email"],
                "name": customer["name"],
                "phone": customer["phone"],
                "tax_exempt": "none",
                "tax_ids": [],
            }
            if session["mode"] == "subscription":
                subscription, invoice = self._create_subscription(
                    session, customer, period_seconds=period_seconds
                )
                session["subscription"] = subscription["id"]
                session["invoice"] = invoice["id"]
                session["payment_status"] = (
                    "paid" if invoice["amount_paid"] else "no_payment_required"
                )
                self._emit("customer.subscription.created", subscription, ctx)
                self._emit("invoice.paid", invoice, ctx)
                self._emit("invoice.payment_succeeded", invoice, ctx)
            else:
                session["payment_status"] = "paid"
                session["payment_intent"] = _new_id("pi_")
            session["status"] = "complete"
            self._emit("checkout.session.completed", session, ctx)
            self.save()
            return copy.deepcopy(ctx.events)

    def _period_seconds(self, subscription: Obj) -> int:
        if subscription.get("_period_seconds"):
            return int(subscription["_period_seconds"])
        recurring = subscription["items"]["data"][0]["price"]["recurring"]
        return _INTERVAL_SECONDS[recurring["interval"]] * int(recurring["interval_count"] or 1)

    def _create_subscription(
        self, session: Obj, customer: Obj, *, period_seconds: int | None
    ) -> tuple[Obj, Obj]:
        now = self.now()
        subscription_id = _new_id("sub_")
        trial_days = session["_trial_period_days"]
        items: list[Obj] = []
        for line in session["_line_items"]:
            price = self.prices[line["price"]]
            if price["type"] != "recurring":
                continue
            items.append(
                {
                    "id": _new_id("si_", 14),
                    "object": "subscription_item",
                    "billing_thresholds": None,
                    "created": now,
                    "current_period_end": now,
                    "current_period_start": now,
                    "discounts": [],
                    "metadata": {},
                    "price": self.render(price),
                    "quantity": line["quantity"],
                    "subscription": subscription_id,
                    "tax_rates": [],
                }
            )
        subscription: Obj = {
            "id": subscription_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": now,
            "billing_cycle_anchor_config": None,
            "billing_mode": {"type": "classic"},
            "billing_thresholds": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": now,
            "currency": session["currency"],
            "customer": customer["id"],
            "days_until_due": None,
            "default_payment_method": _new_id("pm_"),
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={subscription_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": dict(session["_subscription_metadata"]),
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": now,
            "status": "trialing" if trial_days else "active",
            "test_clock": None,
            "transfer_data": None,
            "trial_end": now + trial_days * _DAY if trial_days else None,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": now if trial_days else None,
            "_period_seconds": period_seconds,
        }
        end = subscription["trial_end"] or now + self._period_seconds(subscription)
        for item in items:
            item["current_period_end"] = end
        invoice = self._new_invoice(
            subscription,
            customer,
            billing_reason="subscription_create",
            period=(now, end),
            trial=bool(trial_days),
            paid=True,
        )
        subscription["latest_invoice"] = invoice["id"]
        self.subscriptions[subscription_id] = subscription
        return subscription, invoice

    def _new_invoice(
        self,
        subscription: Obj,
        customer: Obj,
        *,
        billing_reason: str,
        period: tuple[int, int],
        trial: bool = False,
        paid: bool,
    ) -> Obj:
        now = self.now()
        invoice_id = _new_id("in_")
        lines: list[Obj] = []
        for item in subscription["items"]["data"]:
            price = item["price"]
            product = self.products.get(price["product"], {})
            product_name = product.get("name", price["product"])
            amount = 0 if trial else price["unit_amount"] * item["quantity"]
            description = (
                f"Trial period for {product_name}"
                if trial
                else f"{item['quantity']} × {product_name} (at "  # noqa: RUF001 (Stripe's)
                f"{_money(price['unit_amount'], price['currency'])} / "
                f"{price['recurring']['interval']})"
            )
            lines.append(
                {
                    "id": _new_id("il_"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": price["currency"],
                    "description": description,
                    "discount_amounts": [],
                    "discountable": True,
                    "discounts": [],
                    "invoice": invoice_id,
                    "livemode": False,
                    "metadata": {},
                    "parent": {
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": subscription["id"],
                            "subscription_item": item["id"],
                        },
                        "type": "subscription_item_details",
                    },
                    "period": {"end": period[1], "start": period[0]},
                    "pricing": {
                        "price_details": {"price": price["id"], "product": price["product"]},
                        "type": "price_details",
                        "unit_amount_decimal": price["unit_amount_decimal"],
                    },
                    "quantity": item["quantity"],
                    "taxes": [],
                }
            )
        total = sum(line["amount"] for line in lines)
        sequence = customer.get("next_invoice_sequence", 1)
        customer["next_invoice_sequence"] = sequence + 1
        # Stripe's quirk: a subscription's first invoice has an empty period at its creation;
        # later ones cover the period that just ended.
        invoice_period = (
            (now, now)
            if billing_reason == "subscription_create"
            else (period[0] - self._period_seconds(subscription), period[0])
        )
        invoice: Obj = {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Local Stripe stand-in",
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": total if paid else 0,
            "amount_remaining": 0 if paid else total,
            "amount_shipping": 0,
            "attempt_count": 1 if total or not paid else 0,
            "attempted": bool(total) or not paid,
            "auto_advance": not paid,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None,
                              "provider": None, "status": None},
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": subscription["currency"],
            "customer": customer["id"],
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "description": None,
            "discounts": [],
            "due_date": None,
            "ending_balance": 0,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None if paid else now + 3 * _DAY,
            "number": f"{customer.get('invoice_prefix', 'LOCAL')}-{sequence:04d}",
            "parent": {
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(subscription["metadata"]),
                    "subscription": subscription["id"],
                },
                "type": "subscription_details",
            },
            "period_end": invoice_period[1],
            "period_start": invoice_period[0],
            "starting_balance": 0,
            "status": "paid" if paid else "open",
            "status_transitions": {
                "finalized_at": now,
                "marked_uncollectible_at": None,
                "paid_at": now if paid else None,
                "voided_at": None,
            },
            "subtotal": total,
            "total": total,
            "webhooks_delivered_at": now,
        }  # fmt: skip
        self.invoices[invoice_id] = invoice
        return invoice

    # --- subscriptions -------------------------------------------------------------------

    def _api_subscription_retrieve(self, ctx: _Ctx, params: Obj, subscription_id: str) -> Obj:
        subscription = self._find(self.subscriptions, "subscription", subscription_id)
        return self.render(subscription, self._expand_paths(params))

    def _api_subscription_list(self, ctx: _Ctx, params: Obj) -> Obj:
        customer = _get_str(params, "customer")
        price = _get_str(params, "price")
        status = _get_str(params, "status")
        if status not in (None, "all", "ended", *_SUBSCRIPTION_STATUSES):
            raise _invalid("status", f"Invalid status: {status}")

        def wanted(subscription: Obj) -> bool:
            current = subscription["status"]
            if status is None:
                return current not in ("canceled", "incomplete_expired")
            if status == "ended":
                return current in ("canceled", "incomplete_expired")
            return status in ("all", current)

        items = [
            subscription
            for subscription in reversed(self.subscriptions.values())
            if wanted(subscription)
            and (customer is None or subscription["customer"] == customer)
            and (
                price is None
                or any(item["price"]["id"] == price for item in subscription["items"]["data"])
            )
        ]
        return self._paginate("/v1/subscriptions", items, params, "subscription")

    def _api_subscription_update(self, ctx: _Ctx, params: Obj, subscription_id: str) -> Obj:
        subscription = self._find(self.subscriptions, "subscription", subscription_id)
        cancel_at_period_end = _get_bool(params, "cancel_at_period_end")
        if subscription["status"] == "canceled" and (
            params.keys() - {"metadata", "expand", "cancellation_details"}
        ):
            raise _ApiError(
                400,
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
        details = params.get("cancellation_details")
        description = _get_str(params, "description")

        def change(target: Obj) -> None:
            if cancel_at_period_end is not None:
                self._set_cancel_at_period_end(target, cancel_at_period_end)
            if isinstance(details, dict):
                for key in ("comment", "feedback"):
                    if key in details:
                        target["cancellation_details"][key] = details[key] or None
            if description is not None:
                target["description"] = description or None
            _apply_metadata(target["metadata"], params.get("metadata"))

        self._change_subscription(subscription, change, ctx)
        return self.render(subscription, self._expand_paths(params))

    def _set_cancel_at_period_end(self, subscription: Obj, value: bool) -> None:
        subscription["cancel_at_period_end"] = value
        if value:
            subscription["cancel_at"] = self._current_period_end(subscription)
            subscription["canceled_at"] = self.now()
            subscription["cancellation_details"]["reason"] = "cancellation_requested"
        else:
            subscription["cancel_at"] = None
            subscription["canceled_at"] = None
            subscription["cancellation_details"]["reason"] = None

    @staticmethod
    def _current_period_end(subscription: Obj) -> int:
        return int(subscription["items"]["data"][0]["current_period_end"])

    def _change_subscription(
        self, subscription: Obj, change: Callable[[Obj], None], ctx: _Ctx | None
    ) -> Obj | None:
        """Apply `change`; emit customer.subscription.updated when something did change."""
        before = self.render(subscription)
        change(subscription)
        previous = _previous_attributes(before, self.render(subscription))
        if not previous:
            return None
        return self._emit("customer.subscription.updated", subscription, ctx, previous)

    def _cancel_subscription(
        self, subscription: Obj, ctx: _Ctx | None, *, at_period_end: bool = False
    ) -> Obj:
        """End it now. At period end, `canceled_at` stays when the cancellation was asked for."""
        now = self.now()
        subscription["status"] = "canceled"
        if not (at_period_end and subscription["canceled_at"]):
            subscription["canceled_at"] = now
        subscription["ended_at"] = now
        subscription["cancellation_details"]["reason"] = (
            subscription["cancellation_details"]["reason"] or "cancellation_requested"
        )
        return self._emit("customer.subscription.deleted", subscription, ctx)

    def _api_subscription_cancel(self, ctx: _Ctx, params: Obj, subscription_id: str) -> Obj:
        subscription = self._find(self.subscriptions, "subscription", subscription_id)
        if subscription["status"] == "canceled":
            raise _invalid(
                "subscription", f"This subscription ({subscription_id}) is already canceled."
            )
        details = params.get("cancellation_details")
        if isinstance(details, dict):
            for key in ("comment", "feedback"):
                if key in details:
                    subscription["cancellation_details"][key] = details[key] or None
        self._cancel_subscription(subscription, ctx)
        return self.render(subscription, self._expand_paths(params))

    def _live_subscription(self, subscription_id: str) -> Obj:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise KeyError(f"No such subscription: {subscription_id!r}")
        if subscription["status"] == "canceled":
            raise _Conflict(f"Subscription {subscription_id} is canceled.")
        return subscription

    def subscription_update(
        self,
        subscription_id: str,
        *,
        status: str | None = None,
        cancel_at_period_end: bool | None = None,
        current_period_end: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[Obj]:
        if status is not None and status not in _SUBSCRIPTION_STATUSES:
            raise ValueError(f"Unknown subscription status {status!r}.")
        with self.lock:
            subscription = self._live_subscription(subscription_id)
            ctx = _Ctx()

            def change(target: Obj) -> None:
                if cancel_at_period_end is not None:
                    self._set_cancel_at_period_end(target, cancel_at_period_end)
                if current_period_end is not None:
                    for item in target["items"]["data"]:
                        item["current_period_end"] = int(current_period_end)
                    if target["cancel_at_period_end"]:
                        target["cancel_at"] = int(current_period_end)
                if metadata is not None:
                    _apply_metadata(target["metadata"], dict(metadata))
                if status is not None and status != "canceled":
                    target["status"] = status

            self._change_subscription(subscription, change, ctx)
            if status == "canceled":
                self._cancel_subscription(subscription, ctx)
            self.save()
            return copy.deepcopy(ctx.events)

    def subscription_cancel(self, subscription_id: str, ctx: _Ctx | None = None) -> list[Obj]:
        with self.lock:
            subscription = self._live_subscription(subscription_id)
            ctx = ctx or _Ctx()
            self._cancel_subscription(subscription, ctx)
            self.save()
            return copy.deepcopy(ctx.events)

    def toggle_cancel_at_period_end(
        self, subscription_id: str, value: bool, ctx: _Ctx | None = None
    ) -> list[Obj]:
        with self.lock:
            subscription = self._live_subscription(subscription_id)
            ctx = ctx or _Ctx()
            self._change_subscription(
                subscription, lambda target: self._set_cancel_at_period_end(target, value), ctx
            )
            self.save()
            return copy.deepcopy(ctx.events)

    def invoice_payment_fail(self, subscription_id: str) -> list[Obj]:
        """The renewal payment fails: an open invoice, then the subscription goes past_due."""
        with self.lock:
            subscription = self._live_subscription(subscription_id)
            ctx = _Ctx()
            latest = self.invoices.get(subscription["latest_invoice"] or "")
            if latest is not None and latest["status"] == "open":
                latest["attempt_count"] += 1
                latest["next_payment_attempt"] = self.now() + 3 * _DAY
                self._emit("invoice.payment_failed", latest, ctx)
            else:
                self._next_period_invoice(subscription, ctx, paid=False)
            self._change_subscription(
                subscription, lambda target: target.update(status="past_due"), ctx
            )
            self.save()
            return copy.deepcopy(ctx.events)

    def _next_period_invoice(self, subscription: Obj, ctx: _Ctx, *, paid: bool) -> None:
        """The invoice of the next period, paid or failed, and the subscription moved onto
        that period: active when paid, past_due when not."""
        start = self._current_period_end(subscription)
        end = start + self._period_seconds(subscription)
        customer = self.customers.get(subscription["customer"], {})
        invoice = self._new_invoice(
            subscription,
            customer,
            billing_reason="subscription_cycle",
            period=(start, end),
            paid=paid,
        )
        self._emit("invoice.paid" if paid else "invoice.payment_failed", invoice, ctx)

        def advance(target: Obj) -> None:
            for item in target["items"]["data"]:
                item["current_period_start"], item["current_period_end"] = start, end
            target["latest_invoice"] = invoice["id"]
            target["status"] = "active" if paid else "past_due"

        self._change_subscription(subscription, advance, ctx)

    def renew(self, subscription_id: str) -> list[Obj]:
        """The period ends: paid renewal, a paid retry of an open invoice, or the end."""
        with self.lock:
            subscription = self._live_subscription(subscription_id)
            ctx = _Ctx()
            latest = self.invoices.get(subscription["latest_invoice"] or "")
            if subscription["cancel_at_period_end"]:
                self._cancel_subscription(subscription, ctx, at_period_end=True)
            elif latest is not None and latest["status"] == "open":
                now = self.now()
                latest.update(
                    status="paid",
                    amount_paid=latest["amount_due"],
                    amount_remaining=0,
                    next_payment_attempt=None,
                    auto_advance=False,
                )
                latest["status_transitions"]["paid_at"] = now
                self._emit("invoice.paid", latest, ctx)
                self._change_subscription(
                    subscription, lambda target: target.update(status="active"), ctx
                )
            else:
                self._next_period_invoice(subscription, ctx, paid=True)
            self.save()
            return copy.deepcopy(ctx.events)

    # --- invoices, portal, events --------------------------------------------------------

    def _api_invoice_retrieve(self, ctx: _Ctx, params: Obj, invoice_id: str) -> Obj:
        invoice = self._find(self.invoices, "invoice", invoice_id)
        return self.render(invoice, self._expand_paths(params))

    def _api_invoice_list(self, ctx: _Ctx, params: Obj) -> Obj:
        customer = _get_str(params, "customer")
        subscription = _get_str(params, "subscription")
        status = _get_str(params, "status")
        items = [
            invoice
            for invoice in reversed(self.invoices.values())
            if (customer is None or invoice["customer"] == customer)
            and (
                subscription is None
                or invoice["parent"]["subscription_details"]["subscription"] == subscription
            )
            and (status is None or invoice["status"] == status)
        ]
        return self._paginate("/v1/invoices", items, params, "invoice")

    def _api_portal_create(self, ctx: _Ctx, params: Obj) -> Obj:
        customer_id = _get_str(params, "customer", required=True)
        assert customer_id is not None
        self._customer(customer_id, param="customer", status=400)
        portal: Obj = {
            "id": _new_id("bps_"),
            "object": "billing_portal.session",
            "configuration": self.portal_configuration,
            "created": self.now(),
            "customer": customer_id,
            "flow": None,
            "livemode": False,
            "locale": _get_str(params, "locale") or None,
            "on_behalf_of": None,
            "return_url": _get_url(params, "return_url"),
            "url": None,
        }
        self.portal_sessions[portal["id"]] = portal
        return self.render(portal, self._expand_paths(params))

    def _api_event_retrieve(self, ctx: _Ctx, params: Obj, event_id: str) -> Obj:
        return self.render(self._find(self.events, "event", event_id))

    def _api_event_list(self, ctx: _Ctx, params: Obj) -> Obj:
        event_type = _get_str(params, "type")
        types = _get_list(params, "types")

        def wanted(event: Obj) -> bool:
            if types is not None:
                return event["type"] in types
            if event_type is None:
                return True
            if event_type.endswith("*"):
                return event["type"].startswith(event_type[:-1])
            return event["type"] == event_type

        items = [event for event in reversed(self.events.values()) if wanted(event)]
        return self._paginate("/v1/events", items, params, "event")

    # --- control -------------------------------------------------------------------------

    def fail_next(
        self, *, method: str | None, path_prefix: str, status: int, count: int, hang: float
    ) -> None:
        if not 500 <= status <= 599:
            raise ValueError("fail_next answers a 5xx status.")
        with self.lock:
            self.failures.append(
                _FailRule(
                    method=method.upper() if method else None,
                    path_prefix=path_prefix,
                    status=status,
                    count=count,
                    hang=hang,
                )
            )

    def snapshot(self) -> Obj:
        with self.lock:
            return {
                "customers": [self.render(obj) for obj in self.customers.values()],
                "products": [self.render(obj) for obj in self.products.values()],
                "prices": [self.render(obj) for obj in self.prices.values()],
                "sessions": [self.render(obj) for obj in self.sessions.values()],
                "subscriptions": [self.render(obj) for obj in self.subscriptions.values()],
                "invoices": [self.render(obj) for obj in self.invoices.values()],
                "portal_sessions": [self.render(obj) for obj in self.portal_sessions.values()],
                "events": copy.deepcopy(list(self.events.values())),
                "deliveries": copy.deepcopy(self.deliveries),
                "requests": copy.deepcopy(self.requests),
            }

    # --- pages ---------------------------------------------------------------------------

    def checkout_page(self, session_id: str) -> tuple[int, bytes]:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                return 404, _page("Checkout", "<h1>No such checkout session</h1>")
            self._expire_if_due(session)
            if session["status"] != "open":
                return 200, self._closed_checkout_html(session)
            rows, trial = [], session["_trial_period_days"]
            for line in session["_line_items"]:
                price = self.prices[line["price"]]
                product = self.products.get(price["product"], {})
                rows.append(
                    f"<tr><td>{_esc(product.get('name', price['product']))}</td>"
                    f"<td>{line['quantity']}</td>"
                    f"<td>{_esc(_money(price['unit_amount'], price['currency']))} "
                    f"{_esc(_interval_text(price['recurring']))}</td></tr>"
                )
            customer = self.customers.get(session["customer"] or "", {})
            email = customer.get("email") or session["customer_email"]
            total = _money(session["amount_total"], session["currency"] or "usd")
            parts = [
                "<h1>Checkout</h1>",
                f"<p>Paying as <strong>{_esc(email)}</strong></p>" if email else "",
                "<table><tr><th>Product</th><th>Qty</th><th>Price</th></tr>",
                *rows,
                "</table>",
                f"<p class=total>Total: <strong>{_esc(total)}</strong></p>",
                f"<p>Free trial: {trial} days, nothing is charged today.</p>" if trial else "",
                f'<form method="post" action="/checkout/pay/{_esc(session_id)}">'
                '<button type="submit">Pay</button></form>',
                f'<p><a href="{_esc(session["cancel_url"])}">Cancel</a></p>'
                if session["cancel_url"]
                else "",
                "<p class=note>No card is asked for and nothing is charged: this is the local "
                "stand-in for Stripe Checkout.</p>",
            ]
            return 200, _page("Checkout", "".join(parts))

    def _closed_checkout_html(self, session: Obj) -> bytes:
        if session["status"] == "complete":
            success = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])
            body = (
                "<h1>This checkout session is already complete</h1>"
                f'<p><a href="{_esc(success)}">Continue</a></p>'
            )
        else:
            body = "<h1>This checkout session has expired</h1>"
            if session["cancel_url"]:
                body += f'<p><a href="{_esc(session["cancel_url"])}">Go back</a></p>'
        return _page("Checkout", body)

    def checkout_pay(self, session_id: str) -> tuple[int, bytes | None, str | None, list[Obj]]:
        """The Pay button: (status, page, redirect location, events)."""
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                return 404, _page("Checkout", "<h1>No such checkout session</h1>"), None, []
            self._expire_if_due(session)
            if session["status"] != "open":
                return 409, self._closed_checkout_html(session), None, []
            events = self.complete_checkout(session_id)
            location = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
            return 303, None, location, events

    def portal_page(self, portal_id: str) -> tuple[int, bytes]:
        with self.lock:
            portal = self.portal_sessions.get(portal_id)
            if portal is None:
                return 404, _page("Billing portal", "<h1>No such portal session</h1>")
            customer = self.customers.get(portal["customer"], {})
            subscriptions = [
                sub for sub in reversed(self.subscriptions.values())
                if sub["customer"] == portal["customer"]
            ]  # fmt: skip
            rows = []
            for sub in subscriptions:
                item = sub["items"]["data"][0]
                product = self.products.get(item["price"]["product"], {})
                price = _money(item["price"]["unit_amount"], item["price"]["currency"])
                actions = ""
                if sub["status"] != "canceled":
                    base = f"/portal/{_esc(portal_id)}/subscriptions/{_esc(sub['id'])}"
                    toggle = "false" if sub["cancel_at_period_end"] else "true"
                    label = (
                        "Don't cancel" if sub["cancel_at_period_end"] else "Cancel at period end"
                    )
                    actions = (
                        f'<form method="post" action="{base}/cancel_at_period_end">'
                        f'<input type="hidden" name="value" value="{toggle}">'
                        f'<button type="submit">{_esc(label)}</button></form>'
                        f'<form method="post" action="{base}/cancel">'
                        '<button type="submit" class=danger>Cancel now</button></form>'
                    )
                rows.append(
                    f"<tr><td>{_esc(product.get('name', item['price']['product']))}<br>"
                    f"<small>{_esc(sub['id'])}</small></td>"
                    f"<td>{_esc(price)} {_esc(_interval_text(item['price']['recurring']))}</td>"
                    f"<td>{_esc(sub['status'])}</td>"
                    f"<td>{_esc(_utc(item['current_period_end']))}</td>"
                    f"<td>{'yes' if sub['cancel_at_period_end'] else 'no'}</td>"
                    f"<td>{actions}</td></tr>"
                )
            table = (
                "<table><tr><th>Plan</th><th>Price</th><th>Status</th><th>Period end</th>"
                "<th>Cancel at period end</th><th></th></tr>" + "".join(rows) + "</table>"
                if rows
                else "<p>No subscriptions.</p>"
            )
            who = customer.get("email") or portal["customer"]
            parts = [
                "<h1>Billing portal</h1>",
                f"<p>Customer: <strong>{_esc(who)}</strong></p>",
                table,
                f'<p><a href="{_esc(portal["return_url"])}">Return</a></p>'
                if portal["return_url"]
                else "",
            ]
            return 200, _page("Billing portal", "".join(parts))

    def portal_action(
        self, portal_id: str, subscription_id: str, action: str, form: Mapping[str, str]
    ) -> tuple[int, list[Obj]]:
        with self.lock:
            portal = self.portal_sessions.get(portal_id)
            subscription = self.subscriptions.get(subscription_id)
            if portal is None or subscription is None:
                return 404, []
            if subscription["customer"] != portal["customer"]:
                return 403, []
            if subscription["status"] == "canceled":
                return 303, []
            if action == "cancel":
                return 303, self.subscription_cancel(subscription_id)
            if action == "cancel_at_period_end":
                value = form.get("value", "true") == "true"
                return 303, self.toggle_cancel_at_period_end(subscription_id, value)
            return 404, []

    def index_page(self) -> bytes:
        with self.lock:
            counts = (
                f"{sum(1 for c in self.customers.values() if not c.get('deleted'))} customers, "
                f"{len(self.subscriptions)} subscriptions, {len(self.events)} events"
            )
        return _page(
            "Home",
            "<h1>Local Stripe stand-in</h1>"
            f"<p>{_esc(counts)}. It answers Stripe's API under <code>/v1/</code> and is driven "
            "by tests under <code>/_fake/</code>; see <code>/_fake/state</code>.</p>",
        )


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f8fa;color:#1a1f36}
.standin{background:#ffdd57;color:#3d2c00;padding:12px 20px;font-size:15px;
border-bottom:3px solid #c79a00;text-align:center}
main{max-width:760px;margin:32px auto;background:#fff;padding:24px 32px;border-radius:8px;
box-shadow:0 1px 3px rgba(0,0,0,.15)}
table{border-collapse:collapse;width:100%;margin:16px 0}
th,td{text-align:left;padding:8px;border-bottom:1px solid #e3e8ee;vertical-align:top}
button{background:#635bff;color:#fff;border:0;border-radius:6px;padding:10px 22px;
font-size:15px;cursor:pointer;margin:2px 0}
button.danger{background:#c0123c}
form{display:inline-block;margin-right:6px}
.note{color:#697386;font-size:13px}
"""


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)} · {_esc(LABEL)}</title><style>{_STYLE}</style></head><body>"
        f'<div class="standin" role="banner"><strong>{_esc(LABEL)}</strong><br>'
        "This page is served by a local stand-in for Stripe, for development. "
        "It is not Stripe, and no real payment is ever made.</div>"
        f"<main>{body}</main></body></html>\n"
    ).encode()


# --- HTTP ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as stripe-python's pooled sessions expect
    server: StubServer[_State]
    server_version = "nginx"
    sys_version = ""
    request_id = ""

    # --- plumbing ------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def state(self) -> _State:
        return self.server.state

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            raise ValueError("Request body too large.")
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", self.request_id)
        self.send_header("Cache-Control", "no-cache, no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, indent=2).encode(), "application/json")

    def _send_html(self, status: int, page: bytes) -> None:
        self._send(status, page, "text/html; charset=utf-8")

    def _redirect(self, location: str) -> None:
        self._send(303, b"", "text/plain", {"Location": _safe_location(location)})

    # --- routing -------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        self.request_id = _new_id("req_", 14)
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except ValueError as exc:
            self._send_json(413, _ApiError(413, str(exc)).body())
            return
        try:
            if url.path.startswith("/v1/"):
                self._api(method, url.path, url.query, body)
            elif url.path.startswith("/_fake/"):
                self._control(method, url.path, body)
            elif url.path.startswith("/checkout/pay/"):
                self._checkout_page(method, url.path.removeprefix("/checkout/pay/"))
            elif url.path.startswith("/portal/"):
                self._portal_page(method, url.path.removeprefix("/portal/"), body)
            elif url.path == "/" and method == "GET":
                self._send_html(200, self.state.index_page())
            else:
                self._not_found(method, url.path)
        except OSError:
            self.close_connection = True  # the client went away, e.g. after its timeout
        except Exception:  # a bug in a page or control endpoint: answer 500, keep serving
            traceback.print_exc()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_json(500, {"error": {"message": "The local Stripe stand-in failed."}})

    def _not_found(self, method: str, path: str) -> None:
        self._send_json(404, _unrecognized(method, path).body())

    def _api(self, method: str, path: str, query: str, body: bytes) -> None:
        encoded = query
        if method == "POST":
            form = body.decode("utf-8", errors="replace")
            encoded = f"{query}&{form}" if query and form else query or form
        params = decode_params(encoded)
        result = self.state.api(
            method,
            path,
            params,
            api_key=_api_key_from(self.headers.get("Authorization")),
            idempotency_key=self.headers.get("Idempotency-Key"),
            stripe_version=self.headers.get("Stripe-Version"),
            stripe_account=self.headers.get("Stripe-Account"),
            request_id=self.request_id,
        )
        self.state.dispatch_from_api(result.events)
        self._flush_server_events()
        if result.hang:
            self.state.sleep(result.hang)
        self._send(result.status, result.body, "application/json", result.headers)

    def _flush_server_events(self) -> None:
        self.state.dispatch_from_api(self.state.take_server_events())

    def _checkout_page(self, method: str, session_id: str) -> None:
        if "/" in session_id:
            self._send_html(404, _page("Checkout", "<h1>Not found</h1>"))
        elif method == "GET":
            status, page = self.state.checkout_page(session_id)
            self._flush_server_events()
            self._send_html(status, page)
        elif method == "POST":
            status, pay_page, location, events = self.state.checkout_pay(session_id)
            self._flush_server_events()
            self.state.dispatch_from_server(events)
            if location is not None:
                self._redirect(location)
            else:
                self._send_html(status, pay_page or b"")
        else:
            self._not_found(method, self.path)

    def _portal_page(self, method: str, rest: str, body: bytes) -> None:
        parts = rest.split("/")
        if method == "GET" and len(parts) == 1:
            status, page = self.state.portal_page(parts[0])
            self._send_html(status, page)
            return
        if method == "POST" and len(parts) == 4 and parts[1] == "subscriptions":
            form = dict(parse_qsl(body.decode("utf-8", errors="replace")))
            status, events = self.state.portal_action(parts[0], parts[2], parts[3], form)
            self.state.dispatch_from_server(events)
            if status == 303:
                self._redirect(f"/portal/{parts[0]}")
            else:
                self._send_html(status, _page("Billing portal", "<h1>Not found</h1>"))
            return
        self._send_html(404, _page("Billing portal", "<h1>Not found</h1>"))

    def _control(self, method: str, path: str, body: bytes) -> None:
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            self._send_json(400, {"error": {"message": "The body is not valid JSON."}})
            return
        if not isinstance(data, dict):
            self._send_json(400, {"error": {"message": "The body must be a JSON object."}})
            return
        parts = path.removeprefix("/_fake/").strip("/").split("/")
        state = self.state
        try:
            if method == "GET" and parts == ["health"]:
                self._send_json(200, {"ok": True})
            elif method == "GET" and parts == ["state"]:
                self._send_json(200, state.snapshot())
            elif method == "POST" and parts == ["reset"]:
                state.reset()
                self._send_json(200, {"ok": True})
            elif method == "POST" and parts == ["fail_next"]:
                state.fail_next(
                    method=data.get("method"),
                    path_prefix=str(data.get("path_prefix", "/v1/")),
                    status=int(data.get("status", 500)),
                    count=int(data.get("count", 1)),
                    hang=float(data.get("hang", 0.0)),
                )
                self._send_json(200, {"ok": True})
            elif method == "POST" and parts == ["clock", "advance"]:
                now = state.advance_clock(float(data.get("seconds", 0)))
                self._send_json(200, {"now": now})
            elif method == "POST" and len(parts) == 3 and parts[0] == "checkout":
                if parts[2] == "trial":
                    days = data.get("days")
                    state.set_trial_days(parts[1], int(days) if days else None)
                    self._send_json(200, {"ok": True})
                    return
                if parts[2] != "complete":
                    raise LookupError(path)
                period = data.get("period_seconds")
                events = state.complete_checkout(
                    parts[1], period_seconds=int(period) if period else None
                )
                self._events_answer(events, data)
            elif method == "POST" and len(parts) == 3 and parts[0] == "customers":
                if parts[2] != "delete":
                    raise LookupError(path)
                self._events_answer(state.customer_delete(parts[1]), data)
            elif method == "POST" and len(parts) == 3 and parts[0] == "subscriptions":
                subscription_id, action = parts[1], parts[2]
                if action == "update":
                    allowed = {"status", "cancel_at_period_end", "current_period_end", "metadata"}
                    unknown = set(data) - allowed - {"deliver"}
                    if unknown:
                        raise ValueError(f"Unknown fields: {sorted(unknown)}")
                    events = state.subscription_update(
                        subscription_id, **{k: v for k, v in data.items() if k in allowed}
                    )
                elif action == "payment_failed":
                    events = state.invoice_payment_fail(subscription_id)
                elif action == "renew":
                    events = state.renew(subscription_id)
                elif action == "cancel":
                    events = state.subscription_cancel(subscription_id)
                else:
                    raise LookupError(path)
                self._events_answer(events, data)
            elif method == "POST" and len(parts) == 3 and parts[0] == "events":
                if parts[2] != "redeliver":
                    raise LookupError(path)
                with state.lock:
                    event = copy.deepcopy(state.events[parts[1]])
                [status] = state.deliver_now([event])
                self._send_json(200, {"status": status})
            else:
                raise LookupError(path)
        except LookupError as exc:
            message = exc.args[0] if exc.args else path
            self._send_json(404, {"error": {"message": f"Not found: {message}"}})
        except _Conflict as exc:
            self._send_json(409, {"error": {"message": str(exc)}})
        except (TypeError, ValueError) as exc:
            self._send_json(400, {"error": {"message": str(exc)}})

    def _events_answer(self, events: list[Obj], data: Obj) -> None:
        if data.get("deliver", True):
            self.state.dispatch_from_server(events)
        self._send_json(200, {"events": events})


def _api_key_from(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def _server(address: tuple[str, int], state: _State) -> StubServer[_State]:
    return StubServer(address, _Handler, state, backlog=128)


class FakeStripe:
    """The local Stripe stand-in on a free local port, served from a background thread.

    Give it a `webhook_url` or a `deliver(payload, signature_header) -> status` callable, or
    neither (events are only recorded). Failed deliveries are retried after each delay of
    `retry_schedule` from a background thread; a `deliver` callable that must only run on the
    test's thread (the Django test client) wants `retry_schedule=()`.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        webhook_url: str | None = None,
        deliver: DeliverFn | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: str | os.PathLike[str] | None = None,
        retry_schedule: Sequence[float] = DEFAULT_RETRY_SCHEDULE,
        public_url: str | None = None,
    ) -> None:
        if webhook_url and deliver is not None:
            raise ValueError("Pass webhook_url or deliver, not both.")
        self._state = _State(
            api_key=api_key,
            webhook_secret=webhook_secret,
            webhook_url=webhook_url,
            deliver=deliver,
            state_file=state_file,
            retry_schedule=retry_schedule,
        )
        self._address = (host, port)
        self._public_url = public_url.rstrip("/") if public_url else None
        self._server: StubServer[_State] | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL: the `api` base address for stripe-python."""
        if self._server is None:
            raise RuntimeError("The Stripe stand-in is not running.")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_key(self) -> str:
        return self._state.api_key

    @property
    def webhook_secret(self) -> str:
        return self._state.webhook_secret

    @property
    def webhook_url(self) -> str | None:
        return self._state.webhook_url

    def start(self, *, port: int | None = None) -> FakeStripe:
        """Serve; `port` overrides the constructor's (to come back where a stopped one was).
        What it holds survives a stop and a start."""
        if self._server is not None:
            raise RuntimeError("The Stripe stand-in is already running.")
        if port is not None:
            self._address = (self._address[0], port)
        self._state.stopping.clear()
        self._server = _server(self._address, self._state)
        self._state.base_url = self._public_url or self.url
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-stripe",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.stop_worker()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what it holds -------------------------------------------------------

    def _one(self, store: dict[str, Obj], object_id: str) -> Obj:
        with self._state.lock:
            if object_id not in store:
                raise KeyError(object_id)
            return self._state.render(store[object_id])

    def _all(self, store: dict[str, Obj]) -> list[Obj]:
        with self._state.lock:
            return [self._state.render(obj) for obj in store.values()]

    def customer(self, customer_id: str) -> Obj:
        return self._one(self._state.customers, customer_id)

    def checkout_session(self, session_id: str) -> Obj:
        return self._one(self._state.sessions, session_id)

    def subscription(self, subscription_id: str) -> Obj:
        return self._one(self._state.subscriptions, subscription_id)

    def invoice(self, invoice_id: str) -> Obj:
        return self._one(self._state.invoices, invoice_id)

    def event(self, event_id: str) -> Obj:
        return self._one(self._state.events, event_id)

    @property
    def customers(self) -> list[Obj]:
        """Every customer, oldest first (deleted ones as `{"id", "deleted": true}` stubs)."""
        return self._all(self._state.customers)

    @property
    def subscriptions(self) -> list[Obj]:
        return self._all(self._state.subscriptions)

    @property
    def checkout_sessions(self) -> list[Obj]:
        return self._all(self._state.sessions)

    @property
    def invoices(self) -> list[Obj]:
        return self._all(self._state.invoices)

    @property
    def products(self) -> list[Obj]:
        return self._all(self._state.products)

    @property
    def prices(self) -> list[Obj]:
        return self._all(self._state.prices)

    @property
    def events(self) -> list[Obj]:
        """Every event emitted, oldest first."""
        with self._state.lock:
            return copy.deepcopy(list(self._state.events.values()))

    @property
    def deliveries(self) -> list[Obj]:
        """Every webhook delivery attempt: event, type, attempt, status or error, at."""
        with self._state.lock:
            return copy.deepcopy(self._state.deliveries)

    @property
    def requests(self) -> list[Obj]:
        """Every /v1 request: method, path, params, idempotency_key, stripe_version, status..."""
        with self._state.lock:
            return copy.deepcopy(self._state.requests)

    # --- driving it ----------------------------------------------------------

    def _delivered(self, events: list[Obj], deliver: bool) -> list[Obj]:
        if deliver:
            self._state.deliver_now(events)
        return events

    def complete_checkout(
        self, session_id: str, *, deliver: bool = True, period_seconds: int | None = None
    ) -> list[Obj]:
        """Pay an open checkout session, as the Pay button does; return the events emitted."""
        events = self._state.complete_checkout(session_id, period_seconds=period_seconds)
        return self._delivered(events, deliver)

    def subscription_update(
        self,
        subscription_id: str,
        *,
        status: str | None = None,
        cancel_at_period_end: bool | None = None,
        current_period_end: int | None = None,
        metadata: Mapping[str, str] | None = None,
        deliver: bool = True,
    ) -> list[Obj]:
        """Change a subscription as Stripe might on its own (`status="canceled"` ends it)."""
        events = self._state.subscription_update(
            subscription_id,
            status=status,
            cancel_at_period_end=cancel_at_period_end,
            current_period_end=current_period_end,
            metadata=metadata,
        )
        return self._delivered(events, deliver)

    def invoice_payment_fail(self, subscription_id: str, *, deliver: bool = True) -> list[Obj]:
        """The renewal payment fails: invoice.payment_failed, then the subscription is past_due."""
        return self._delivered(self._state.invoice_payment_fail(subscription_id), deliver)

    def renew(self, subscription_id: str, *, deliver: bool = True) -> list[Obj]:
        """The period ends. Renewed one interval on (invoice.paid, customer.subscription.updated);
        a past_due subscription has its open invoice paid instead; one set to cancel at period
        end ends (customer.subscription.deleted)."""
        return self._delivered(self._state.renew(subscription_id), deliver)

    def subscription_cancel(self, subscription_id: str, *, deliver: bool = True) -> list[Obj]:
        """Cancel now: customer.subscription.deleted."""
        return self._delivered(self._state.subscription_cancel(subscription_id), deliver)

    def customer_delete(self, customer_id: str, *, deliver: bool = True) -> list[Obj]:
        """Delete a customer as from Stripe's dashboard: its subscriptions are canceled now
        (customer.subscription.deleted each); the API then answers resource_missing for it."""
        return self._delivered(self._state.customer_delete(customer_id), deliver)

    def set_trial_days(self, session_id: str, days: int | None) -> None:
        """Give an open subscription checkout a trial, as `subscription_data[trial_period_days]`
        would have (our product doesn't ask for one; Stripe's dashboard can add it)."""
        self._state.set_trial_days(session_id, days)

    def advance_clock(self, seconds: float) -> int:
        """Move the stand-in's clock forward: what is created after carries later timestamps
        (`created`, periods, expiries). Webhook signatures keep real time. Returns its now."""
        return self._state.advance_clock(seconds)

    @property
    def now(self) -> int:
        """The stand-in's clock, in unix seconds."""
        return self._state.now()

    def requests_to(self, path_prefix: str, *, method: str | None = None) -> list[Obj]:
        """The recorded /v1 requests to this path or below it (`/v1/customers` also matches
        `/v1/customers/cus_1`), optionally of one method."""
        prefix = path_prefix.rstrip("/")
        return [
            request
            for request in self.requests
            if (request["path"] == prefix or request["path"].startswith(prefix + "/"))
            and (method is None or request["method"] == method.upper())
        ]

    def deliver_event(self, event: Mapping[str, Any]) -> int | None:
        """Deliver this event (as given) now; failed attempts are retried in the background."""
        [status] = self._state.deliver_now([event])
        return status

    def redeliver(self, event_id: str) -> int | None:
        """Deliver a recorded event again, like "Resend" in Stripe's dashboard."""
        return self.deliver_event(self.event(event_id))

    def deliver_pending(self) -> list[Obj]:
        """With a `deliver` callable: deliver, in this thread, the events of API calls, pages and
        HTTP control endpoints emitted since the last call; return them."""
        return self._state.deliver_pending()

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[Obj]:
        """Wait until at least `count` delivery attempts were recorded; return them all."""
        return self._state.wait_for_deliveries(count, timeout)

    def fail_next(
        self,
        *,
        method: str | None = None,
        path_prefix: str = "/v1/",
        status: int = 500,
        count: int = 1,
        hang: float = 0.0,
    ) -> None:
        """Answer the next `count` matching API requests with Stripe's `api_error` 5xx, after
        hanging `hang` seconds (to trip the client's timeout)."""
        self._state.fail_next(
            method=method, path_prefix=path_prefix, status=status, count=count, hang=hang
        )

    def reset(self) -> None:
        """Forget every object, event, delivery, request, idempotency key and failure rule."""
        self._state.reset()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--webhook-secret", default=DEFAULT_WEBHOOK_SECRET)
    parser.add_argument("--webhook-url", help="where events are POSTed (none: only recorded)")
    parser.add_argument("--state-file", help="keep the state in this JSON file across restarts")
    parser.add_argument(
        "--public-url", help="base URL of the pages it links to (default: where it listens)"
    )
    parser.add_argument(
        "--retry-schedule",
        default=",".join(f"{delay:g}" for delay in DEFAULT_RETRY_SCHEDULE),
        help="seconds between webhook retries, comma-separated; empty for no retries",
    )
    parser.add_argument("--print-url", action="store_true", help="print the base URL and flush")
    args = parser.parse_args(argv)

    schedule = [float(delay) for delay in args.retry_schedule.split(",") if delay.strip()]
    fake = FakeStripe(
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        webhook_url=args.webhook_url,
        host=args.host,
        port=args.port,
        state_file=args.state_file,
        retry_schedule=schedule,
        public_url=args.public_url,
    )
    done = threading.Event()

    def stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    fake.start()
    if args.print_url:
        print(fake.url, flush=True)
    print(
        f"LOCAL STAND-IN, NOT STRIPE ({LABEL}): listening on {fake.url} "
        f"(webhooks to {args.webhook_url or 'nowhere'}"
        f"{', state in ' + args.state_file if args.state_file else ''})",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
