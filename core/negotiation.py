"""The API speaks JSON whatever a client's Accept header asks for.

DRF's default negotiation answers 406 when Accept names no renderer we have: a browser opening
an API URL (`Accept: text/html…`) got 406 instead of, say, the 401 anyone else gets. The
contract promises its JSON shapes to everyone, so the view's first renderer always answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class FirstRenderer(DefaultContentNegotiation):
    """The view's first renderer; another only when the URL asks for it (`?format=json` on
    the schema, which renders YAML first)."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: Any = None
    ) -> tuple[BaseRenderer, str]:
        choices = list(renderers)
        wanted = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        chosen = next((r for r in choices if wanted and r.format == wanted), choices[0])
        return chosen, chosen.media_type
