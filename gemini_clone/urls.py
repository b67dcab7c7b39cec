from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.api.urls import account_urlpatterns
from core.health import healthz, readyz, readyz_worker
from core.metrics import metrics_view
from core.request_context import UNMATCHED_URL_NAME
from core.views import api_not_found
from gemini_clone.account_deletion import account_delete_everything
from gemini_clone.account_export import AccountExportView
from gemini_clone.user_payload import user_payload


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema, built anew for each request (tens of milliseconds, and anyone may
    ask): on the slow threads (gemini_clone.asgi)."""

    slow_methods = frozenset({"GET"})


# Django tries the patterns in order and records each miss: the busiest paths come first.
api_patterns: list[URLPattern | URLResolver] = [
    path("", include("chatrooms.api.urls")),
    path("user/me/export", AccountExportView.as_view(), name="user-me-export"),
    path(
        "",
        include(
            account_urlpatterns(render_user=user_payload, delete_account=account_delete_everything)
        ),
    ),
    path("", include("billing.api.urls")),
    path("", include("usage.api.urls")),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

# The admin's "View site" link: this project's site is its API documentation.
admin.site.site_url = "/api/docs/"

urlpatterns = [
    path("api/", include(api_patterns)),
    path("", include("billing.pages_urls")),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("readyz/worker", readyz_worker, name="readyz-worker"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    re_path(r"^api(?:/(?P<unmatched>.*))?$", api_not_found, name=UNMATCHED_URL_NAME),
]
