from django.urls import URLPattern, URLResolver, path

from billing.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("subscribe/pro", views.SubscribeProView.as_view(), name="subscribe-pro"),
    path("subscription/portal", views.BillingPortalView.as_view(), name="subscription-portal"),
    path("webhook/stripe", views.StripeWebhookView.as_view(), name="webhook-stripe"),
]
