"""The errors of the billing endpoints, each with the contract's stable code."""

from __future__ import annotations

from core.errors import ApiError


class BillingUnavailable(ApiError):
    status_code = 503
    code = "billing_unavailable"
    message = "Payments are not set up on this server. Try again later."


class PaymentProviderError(ApiError):
    """Stripe could not be reached, or refused what we asked."""

    status_code = 502
    code = "payment_provider_error"
    message = "The payment provider did not answer as expected. Try again in a moment."


class StripeObjectMissing(PaymentProviderError):
    """Stripe no longer knows an object we linked to (deleted in its dashboard, or another
    account's). Services recover from it where they can; `param` names the request field."""

    def __init__(self, *, param: str | None = None) -> None:
        super().__init__()
        self.param = param


class AlreadySubscribed(ApiError):
    status_code = 409
    code = "already_subscribed"
    message = "You already have Pro."


class SubscriptionPaymentDue(ApiError):
    status_code = 409
    code = "subscription_payment_due"
    message = (
        "Your Pro subscription is waiting for a payment. Update your payment method in the "
        "billing portal instead of subscribing again."
    )


class NoBillingAccount(ApiError):
    status_code = 409
    code = "no_billing_account"
    message = "You have no billing account yet. Subscribe to Pro first."


class InvalidSignature(ApiError):
    status_code = 400
    code = "invalid_signature"
    message = "The Stripe-Signature header is missing, wrong or too old."


class WebhookProcessingFailed(ApiError):
    """A handler failed; the 5xx makes Stripe deliver the event again later."""

    status_code = 500
    code = "webhook_processing_failed"
    message = "The event was stored but could not be processed. Stripe will retry it."
