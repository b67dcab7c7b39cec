"""The container health check: exit 0 when the web server answers `PATH` (default /healthz,
liveness) with 200, else 1. Standard library only.

    python scripts/healthcheck.py [PATH]

It asks with a Host header that `ALLOWED_HOSTS` accepts (its first entry; a leading-dot
entry as its bare domain, `*` as localhost): Django refuses any other host with 400 and
logs it, so a plain request to 127.0.0.1 would fail in the production posture.
"""

from __future__ import annotations

import http.client
import os
import sys


def allowed_host() -> str:
    first = os.environ.get("ALLOWED_HOSTS", "").split(",")[0].strip()
    if not first or first == "*":
        return "localhost"
    return first.lstrip(".")


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    port = int(os.environ.get("PORT", "8000"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        connection.request("GET", path, headers={"Host": allowed_host()})
        status = connection.getresponse().status
    except OSError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"unhealthy: {path} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
