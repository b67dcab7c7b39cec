from django.urls import URLPattern, URLResolver, path

from usage.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "subscription/status",
        views.SubscriptionStatusView.as_view(),
        name="subscription-status",
    ),
]
