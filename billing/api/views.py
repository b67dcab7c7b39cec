"""Subscription endpoints: validate, call one service or selector, render."""

from __future__ import annotations

from typing import cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from billing import events, services, stripe_client
from billing.api import serializers as s
from billing.errors import InvalidSignature, WebhookProcessingFailed
from billing.metrics import webhook_event_observe
from core.schema import ErrorResponseSerializer

_TAGS = ["subscription"]
_NOT_CONFIGURED = "`billing_unavailable`: Stripe is not configured on this server."
_STRIPE_FAILED = (
    "`payment_provider_error`: Stripe could not be reached or refused the request; nothing "
    "was charged. Try again."
)


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorResponseSerializer, description=description)


def _user(request: Request) -> User:
    return cast(User, request.user)


class SubscribeProView(APIView):
    slow_methods = frozenset({"POST"})  # Stripe (gemini_clone.asgi)

    @extend_schema(
        tags=_TAGS,
        summary="Start buying Pro",
        description=(
            "Creates a Stripe Checkout Session for the Pro price (a monthly subscription) and "
            "answers its URL. The user pays on Stripe's page; Pro starts when Stripe's webhook "
            "confirms the subscription, not when the buyer comes back. The user's Stripe "
            "customer is created on the first call and reused afterwards. No request body."
        ),
        request=None,
        responses={
            201: s.CheckoutStartedSerializer,
            409: _error(
                "`already_subscribed`: the user is Pro already (a subscription or an "
                "operator's grant). `subscription_payment_due`: a subscription is waiting "
                "for a payment; fix it in the billing portal instead."
            ),
            502: _error(_STRIPE_FAILED),
            503: _error(_NOT_CONFIGURED),
        },
    )
    def post(self, request: Request) -> Response:
        checkout = services.pro_checkout_start(user=_user(request))
        return Response({"checkout_url": checkout.url, "session_id": checkout.id}, status=201)


class BillingPortalView(APIView):
    slow_methods = frozenset({"POST"})  # Stripe (gemini_clone.asgi)

    @extend_schema(
        tags=_TAGS,
        summary="Open the billing portal",
        description=(
            "A short-lived Stripe Billing Portal URL where the user updates their card, sees "
            "invoices and cancels. Changes reach this API through Stripe's webhook. No body."
        ),
        request=None,
        responses={
            200: s.PortalSessionSerializer,
            409: _error("`no_billing_account`: the user never started a checkout."),
            502: _error(_STRIPE_FAILED),
            503: _error(_NOT_CONFIGURED),
        },
    )
    def post(self, request: Request) -> Response:
        return Response({"url": services.billing_portal_open(user=_user(request))})


class StripeWebhookView(APIView):
    """Stripe's calls: no token, the signature on the raw body is the authentication."""

    slow_methods = frozenset({"POST"})  # may ask Stripe (gemini_clone.asgi)
    authentication_classes = []
    permission_classes = [AllowAny]
    public_endpoint = True

    @extend_schema(
        tags=_TAGS,
        summary="Stripe webhook",
        description=(
            "Called by Stripe, not by clients. The `Stripe-Signature` header is checked on the "
            "raw body with `STRIPE_WEBHOOK_SECRET` (five minutes of tolerance). Each event id "
            "is stored and processed once: a redelivery answers 200 and changes nothing. "
            "Handled: `checkout.session.completed`, `customer.subscription.created`, "
            "`customer.subscription.updated`, `customer.subscription.deleted`, `invoice.paid`, "
            "`invoice.payment_failed`, in any order (the newest state by Stripe's clock wins); "
            "other types are stored and answered 200. The change is visible before the 200."
        ),
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter(
                "Stripe-Signature",
                str,
                location=OpenApiParameter.HEADER,
                required=True,
                description='`t=<unix time>,v1=<HMAC-SHA256 of "t.body">`, as Stripe signs.',
            )
        ],
        responses={
            200: s.WebhookReceivedSerializer,
            400: _error("`invalid_signature`: missing, wrong or older than five minutes."),
            500: _error(
                "`webhook_processing_failed`: the event is stored but its handler failed; "
                "Stripe delivers it again later."
            ),
            503: _error("`billing_unavailable`: no webhook secret is configured."),
        },
    )
    def post(self, request: Request) -> Response:
        try:
            event = stripe_client.webhook_event_verified(
                payload=request.body, signature_header=request.headers.get("Stripe-Signature")
            )
        except InvalidSignature:
            webhook_event_observe(event_type=None, outcome="invalid_signature")
            raise
        event_type = str(event.get("type") or "")
        try:
            events.stripe_event_receive(event=event)
        except WebhookProcessingFailed:
            webhook_event_observe(event_type=event_type, outcome="failed")
            raise
        webhook_event_observe(event_type=event_type, outcome="processed")
        return Response({"received": True})
