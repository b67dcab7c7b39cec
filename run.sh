#!/usr/bin/env bash
# Runs the whole product: migrations, web server, Celery worker and beat.
# Starts an embedded PostgreSQL / Redis when DATABASE_URL / REDIS_URL are not set.
source "$(dirname "$0")/scripts/bootstrap.sh" requirements.txt
exec .venv/bin/python scripts/stack.py run
