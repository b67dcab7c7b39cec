"""The small pages a buyer's browser lands on when leaving Stripe.

They change nothing: Pro starts and ends only through Stripe's signed webhook, whatever URL
a browser opens."""

from __future__ import annotations

from django.template.loader import render_to_string
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.renderers import StaticHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

_HTML = OpenApiResponse(OpenApiTypes.STR, description="A small HTML page.")


class _Page(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    public_endpoint = True
    html_page = True
    renderer_classes = [StaticHTMLRenderer]
    title = ""
    paragraphs: tuple[str, ...] = ()

    def get(self, request: Request) -> Response:
        html = render_to_string(
            "billing/page.html", {"title": self.title, "paragraphs": self.paragraphs}
        )
        return Response(html, content_type="text/html; charset=utf-8")


@extend_schema(
    tags=["subscription"],
    summary="After paying (browser page)",
    description="Where Stripe Checkout sends the buyer after paying. It grants nothing: Pro "
    "starts when Stripe's webhook confirms the subscription.",
    parameters=[OpenApiParameter("session_id", str, description="Stripe's Checkout Session id.")],
    responses={(200, "text/html"): _HTML},
)
class PaymentSuccessPage(_Page):
    title = "Thank you — your payment is being confirmed"
    paragraphs = (
        "Stripe has taken your payment details. As soon as Stripe confirms the payment to "
        "us, usually within a few seconds, your account switches to Pro and the daily limit "
        "is lifted.",
        "If the app still shows the Basic plan in a minute, refresh it. You were charged only "
        "if Stripe confirms the payment; Stripe e-mails its receipt.",
    )


@extend_schema(
    tags=["subscription"],
    summary="After canceling checkout (browser page)",
    description="Where Stripe Checkout sends a buyer who went back without paying.",
    responses={(200, "text/html"): _HTML},
)
class PaymentCancelPage(_Page):
    title = "Checkout canceled"
    paragraphs = (
        "You left the checkout before paying, so nothing was charged and your plan has not "
        "changed.",
        "You can subscribe to Pro again whenever you like from the app.",
    )


@extend_schema(
    tags=["subscription"],
    summary="Back from the billing portal (browser page)",
    description="Where Stripe's Billing Portal sends the user back (`STRIPE_PORTAL_RETURN_URL`).",
    responses={(200, "text/html"): _HTML},
)
class BillingPortalReturnPage(_Page):
    title = "You are back from the billing portal"
    paragraphs = (
        "Changes you made there, such as a new card or a cancellation, reach your account "
        "within a few seconds, once Stripe tells us.",
    )
