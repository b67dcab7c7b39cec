from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core.middleware import json_error


@csrf_exempt
def api_not_found(request: HttpRequest, unmatched: str = "") -> JsonResponse:
    """Catch-all for `/api/...` paths no route matches (JSON even with DEBUG on)."""
    return json_error(404, "not_found", "No API route matches this path.")
