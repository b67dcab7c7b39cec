"""How the API writes instants: ISO 8601 in UTC with a `Z`."""

from __future__ import annotations

import datetime as dt


def iso_utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
