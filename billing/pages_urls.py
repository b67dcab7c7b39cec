from django.urls import URLPattern, URLResolver, path

from billing import pages

urlpatterns: list[URLPattern | URLResolver] = [
    path("payment-success/stripe", pages.PaymentSuccessPage.as_view(), name="payment-success"),
    path("payment-cancel/stripe", pages.PaymentCancelPage.as_view(), name="payment-cancel"),
    path(
        "billing-portal-return/stripe",
        pages.BillingPortalReturnPage.as_view(),
        name="billing-portal-return",
    ),
]
