#!/usr/bin/env bash
# Runs the whole product: migrations, web server, Celery worker and beat.
# Starts an embedded PostgreSQL / Redis when DATABASE_URL / REDIS_URL are not set.
#   ./run.sh                           # the product
#   ./run.sh manage createsuperuser    # any manage.py command, on the same servers
source "$(dirname "$0")/scripts/bootstrap.sh" requirements.txt
if [ "${1:-}" = manage ]; then
  shift
  exec .venv/bin/python scripts/stack.py manage "$@"
fi
exec .venv/bin/python scripts/stack.py run
